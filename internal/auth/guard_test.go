package auth_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/stockflow/stockflow/internal/auth"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/testenv"
)

// A guarded mux: a route per group, behind Guard, with API keys of each
// role and JWTs of an identity provider.
func TestGuard(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys.json")
	keyOf := map[auth.Role]string{}
	for _, r := range auth.Roles {
		k, err := auth.AddKey(file, "key-"+string(r), []auth.Role{r})
		if err != nil {
			t.Fatal(err)
		}
		keyOf[r] = k
	}
	keys, err := auth.LoadKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	p := newIDP(t)
	j, err := auth.NewJWKS(auth.JWTConfig{JWKSURL: p.url, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	var mu sync.Mutex
	refused := map[string]int{}
	g := &auth.Guard{
		Keys: keys, JWT: j,
		Policy: auth.Policy{
			Routes: map[string]auth.Role{
				"POST /orders": auth.Shop, "GET /orders/{id}": auth.Shop,
				"POST /add_batch": auth.Stock, "GET /batches/{ref}": auth.Stock,
				"GET /dead_letters": auth.Ops,
			},
			Open: map[string]bool{"GET /healthz": true},
		},
		Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Refused: func(reason string) {
			mu.Lock()
			refused[reason]++
			mu.Unlock()
		},
	}
	mux := http.NewServeMux()
	for _, pattern := range []string{"POST /orders", "GET /orders/{id}", "POST /add_batch", "GET /batches/{ref}", "GET /dead_letters", "GET /customers", "POST /unmapped", "GET /healthz"} {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			pr, _ := auth.From(r.Context())
			httpx.JSON(w, http.StatusOK, map[string]string{"caller": pr.Name})
		})
	}
	srv := httptest.NewServer(httpx.Handler(mux, slog.New(slog.NewTextHandler(&logs, nil)), nil, g.Layer))
	t.Cleanup(srv.Close)

	routes := []struct{ method, path string }{
		{"POST", "/orders"}, {"GET", "/orders/o1"}, {"POST", "/add_batch"}, {"GET", "/batches/b1"},
		{"GET", "/dead_letters"}, {"GET", "/customers"}, {"POST", "/unmapped"},
	}
	jwtOf := func(roles ...string) string {
		return sign(t, jose.ES256, p.ec, "ec-1", with(claims(), "roles", roles))
	}
	// want: the status of each route, in the order of routes.
	tests := []struct {
		name string
		cred string
		want []int
	}{
		{"no credential", "", []int{401, 401, 401, 401, 401, 401, 401}},
		{"unknown key", auth.KeyPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []int{401, 401, 401, 401, 401, 401, 401}},
		{"shop key", keyOf[auth.Shop], []int{200, 200, 403, 403, 403, 403, 403}},
		{"stock key", keyOf[auth.Stock], []int{403, 403, 200, 200, 403, 403, 403}},
		{"ops key", keyOf[auth.Ops], []int{403, 403, 403, 403, 200, 403, 403}},
		{"read key", keyOf[auth.Read], []int{403, 200, 403, 200, 200, 200, 403}},
		{"jwt shop", jwtOf("shop"), []int{200, 200, 403, 403, 403, 403, 403}},
		{"jwt stock, read", jwtOf("stock", "read"), []int{403, 200, 200, 200, 200, 200, 403}},
		{"jwt without a role", jwtOf(), []int{403, 403, 403, 403, 403, 403, 403}},
		{"jwt expired", sign(t, jose.ES256, p.ec, "ec-1", with(claims(), "exp", time.Now().Add(-time.Hour).Unix())), []int{401, 401, 401, 401, 401, 401, 401}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, rt := range routes {
				req, _ := http.NewRequest(rt.method, srv.URL+rt.path, strings.NewReader(`{}`))
				if tt.cred != "" {
					req.Header.Set("Authorization", "Bearer "+tt.cred)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body httpx.Message
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != tt.want[i] {
					t.Errorf("%s %s: %d %q, want %d", rt.method, rt.path, resp.StatusCode, body.Message, tt.want[i])
				}
				if resp.StatusCode >= 400 && body.Message == "" {
					t.Errorf("%s %s: %d without a JSON message", rt.method, rt.path, resp.StatusCode)
				}
				if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s: 401 without WWW-Authenticate", rt.method, rt.path)
				}
			}
		})
	}

	// Open routes need nothing; unknown routes need a credential, then 404.
	for _, c := range []struct {
		path, cred string
		want       int
	}{
		{"/healthz", "", 200},
		{"/healthz", "garbage", 200},
		{"/nope", "", 401},
		{"/nope", keyOf[auth.Shop], 404},
	} {
		req, _ := http.NewRequest("GET", srv.URL+c.path, nil)
		if c.cred != "" {
			req.Header.Set("Authorization", "Bearer "+c.cred)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s (credential %v): %d, want %d", c.path, c.cred != "", resp.StatusCode, c.want)
		}
	}
	for _, h := range []string{"Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", keyOf[auth.Shop]} {
		req, _ := http.NewRequest("GET", srv.URL+"/customers", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %.12q...: %d, want 401", h, resp.StatusCode)
		}
	}

	// Each refusal counted by reason, and logged, never with a credential.
	mu.Lock()
	for _, reason := range []string{"missing", "unknown_key", "forbidden", "expired_token", "malformed"} {
		if refused[reason] == 0 {
			t.Errorf("no refusal counted as %s: %v", reason, refused)
		}
	}
	mu.Unlock()
	out := logs.String()
	if n := strings.Count(out, `"msg":"request refused"`); n == 0 {
		t.Errorf("no refusal logged:\n%s", out)
	}
	for _, k := range keyOf {
		if strings.Contains(out, k) || strings.Contains(out, strings.TrimPrefix(k, auth.KeyPrefix)) {
			t.Fatalf("a key appears in the logs:\n%s", out)
		}
	}
	for _, tt := range tests {
		if tt.cred == "" {
			continue
		}
		// A JWT's signature is its secret part; its claims are not secret,
		// but the logs hold none of it.
		parts := strings.Split(tt.cred, ".")
		if strings.Contains(out, parts[len(parts)-1]) || strings.Contains(out, tt.cred) {
			t.Fatalf("the credential of %q appears in the logs:\n%s", tt.name, out)
		}
	}
}
