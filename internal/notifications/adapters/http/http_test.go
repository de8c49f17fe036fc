package http_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	notificationshttp "github.com/stockflow/stockflow/internal/notifications/adapters/http"
	"github.com/stockflow/stockflow/internal/notifications/service"
	"github.com/stockflow/stockflow/internal/testenv"
)

// server serves the notifications routes over a store that holds the
// notifications of the out-of-stock messages ids (recorded: no mail
// server).
func server(t *testing.T, ids ...string) *httptest.Server {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "notifications.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	h := service.NewHandlers(store, []string{"stock@example.com"}, nil)
	for _, id := range ids {
		ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: id, Consumer: "notifications.out_of_stock"})
		if _, err := h.OutOfStock(ctx, service.OutOfStock{SKU: "SKU-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	log := testenv.Logger(t, slog.LevelInfo)
	mux := http.NewServeMux()
	(&notificationshttp.API{Notifications: h, Log: log}).Register(mux)
	srv := httptest.NewServer(httpx.Handler(mux, log, nil))
	t.Cleanup(srv.Close)
	return srv
}

// get answers GET path: its status and JSON body.
func get(t *testing.T, srv *httptest.Server, path string) (int, json.RawMessage) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	var body json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, body
}

type notification struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	To        []string  `json:"to"`
	Subject   string    `json:"subject"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	MessageID string    `json:"message_id"`
}

func TestGetNotification(t *testing.T) {
	srv := server(t, "m1")
	status, body := get(t, srv, "/notifications/m1")
	var n notification
	if err := json.Unmarshal(body, &n); err != nil || status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if n.ID != "m1" || n.Kind != "out_of_stock" || !slices.Equal(n.To, []string{"stock@example.com"}) ||
		n.Subject != "Out of stock for SKU-m1" || n.Status != "recorded" || n.CreatedAt.IsZero() || n.MessageID != "m1" {
		t.Fatalf("notification %s", body)
	}
}

func TestListNotifications(t *testing.T) {
	tests := []struct {
		name  string
		ids   []string
		query string
		want  []string
	}{
		{"none", nil, "", []string{}},
		{"newest first", []string{"m1", "m2", "m3"}, "", []string{"m3", "m2", "m1"}},
		{"limited", []string{"m1", "m2", "m3"}, "?limit=2", []string{"m3", "m2"}},
		{"max", []string{"m1"}, "?limit=1000", []string{"m1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := server(t, tt.ids...)
			status, body := get(t, srv, "/notifications"+tt.query)
			var list []notification
			if err := json.Unmarshal(body, &list); err != nil || status != http.StatusOK || list == nil {
				t.Fatalf("status %d: %s", status, body)
			}
			got := []string{}
			for _, n := range list {
				got = append(got, n.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ids %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	srv := server(t, "m1")
	tests := []struct {
		path   string
		status int
	}{
		{"/notifications/nope", http.StatusNotFound},
		{"/notifications/%20", http.StatusBadRequest},
		{"/notifications/a%0Ab", http.StatusBadRequest},
		{"/notifications?limit=ten", http.StatusBadRequest},
		{"/notifications?limit=", http.StatusBadRequest},
		{"/notifications?limit=0", http.StatusBadRequest},
		{"/notifications?limit=-5", http.StatusBadRequest},
		{"/notifications?limit=1001", http.StatusBadRequest},
		{"/notifications?limit=1e3", http.StatusBadRequest},
	}
	for _, tt := range tests {
		status, body := get(t, srv, tt.path)
		var msg httpx.Message
		if err := json.Unmarshal(body, &msg); err != nil || msg.Message == "" {
			t.Errorf("GET %s: body %s, want a JSON message", tt.path, body)
		}
		if status != tt.status {
			t.Errorf("GET %s: status %d (%s), want %d", tt.path, status, msg.Message, tt.status)
		}
	}
}
