package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stockflow/stockflow/internal/httpx"
)

func TestNewCORS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		origins string
		ok      bool
	}{
		{"https://shop.example", true},
		{"https://shop.example, http://localhost:3000", true},
		{"*", true},
		{"", false},
		{"shop.example", false},
		{"https://shop.example/path", false},
		{"ftp://shop.example", false},
		{"*,https://shop.example", false},
	}
	for _, tt := range tests {
		if _, err := httpx.NewCORS(tt.origins); (err == nil) != tt.ok {
			t.Errorf("NewCORS(%q): %v, want ok %v", tt.origins, err, tt.ok)
		}
	}
}

// A preflight of an allowed origin is answered before the route (and its
// authentication); other requests of it get the headers that let the page
// read the answer; an origin not allowed gets none.
func TestCORS(t *testing.T) {
	t.Parallel()
	cors, err := httpx.NewCORS("https://shop.example")
	if err != nil {
		t.Fatal(err)
	}
	refuse := httpx.Layer(func(next http.Handler, pattern string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httpx.Error(w, http.StatusUnauthorized, "no credential")
		})
	})
	srv := edgeServer(t, cors.Layer, refuse)
	tests := []struct {
		name, method, origin string
		preflight            bool
		status               int
		allow                string
	}{
		{"preflight", http.MethodOptions, "https://shop.example", true, http.StatusNoContent, "https://shop.example"},
		{"preflight, origin not allowed", http.MethodOptions, "https://evil.example", true, http.StatusUnauthorized, ""},
		{"request", http.MethodPost, "https://shop.example", false, http.StatusUnauthorized, "https://shop.example"},
		{"request, origin not allowed", http.MethodPost, "https://evil.example", false, http.StatusUnauthorized, ""},
		{"no origin", http.MethodPost, "", false, http.StatusUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, srv.URL+"/decode", nil)
			req.RequestURI = ""
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Access-Control-Allow-Origin") != tt.allow {
				t.Errorf("%d, Allow-Origin %q; want %d, %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), tt.status, tt.allow)
			}
			if tt.preflight && tt.allow != "" {
				if h := resp.Header.Get("Access-Control-Allow-Headers"); h == "" || resp.Header.Get("Access-Control-Allow-Methods") == "" {
					t.Errorf("preflight answer lacks Allow-Headers or Allow-Methods: %v", resp.Header)
				}
			}
		})
	}
}
