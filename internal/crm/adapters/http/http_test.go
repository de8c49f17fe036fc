package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	crmhttp "github.com/stockflow/stockflow/internal/crm/adapters/http"
	"github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
)

// server serves the CRM routes over a store where alice is a VIP (three
// orders) and bob is not (one).
func server(t *testing.T) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crm.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	h := service.NewHandlers(store, service.Messages())
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for who, orders := range map[string]int{"alice": 3, "bob": 1} {
		for i := range orders {
			id := fmt.Sprintf("%s-%d", who, i)
			ctx := messaging.WithMeta(ctx, messaging.Meta{MessageID: id, Consumer: "crm.order_placed"})
			e := service.OrderPlaced{OrderID: id, Customer: who, Email: who + "@example.com", PlacedAt: at.Add(time.Duration(i) * time.Hour)}
			if _, err := h.OrderPlaced(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := testenv.Logger(t, slog.LevelInfo)
	mux := http.NewServeMux()
	(&crmhttp.API{Customers: h, Log: log}).Register(mux)
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

func TestGetCustomer(t *testing.T) {
	srv := server(t)
	status, body := get(t, srv, "/customers/alice")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var c struct {
		Customer string `json:"customer"`
		Email    string `json:"email"`
		VIP      bool   `json:"vip"`
		VIPSince string `json:"vip_since"`
		Orders   []struct {
			OrderID  string `json:"orderid"`
			PlacedAt string `json:"placed_at"`
		} `json:"orders"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Customer != "alice" || c.Email != "alice@example.com" || !c.VIP || c.VIPSince != "2026-03-01T11:00:00Z" ||
		len(c.Orders) != 3 || c.Orders[0].OrderID != "alice-0" || c.Orders[0].PlacedAt != "2026-03-01T09:00:00Z" {
		t.Fatalf("customer %s", body)
	}
}

func TestListCustomers(t *testing.T) {
	srv := server(t)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"alice", "bob"}},
		{"?vip=true", []string{"alice"}},
		{"?vip=false", []string{"bob"}},
		{"?limit=1", []string{"alice"}},
		{"?vip=false&limit=1000", []string{"bob"}},
	}
	for _, tt := range tests {
		status, body := get(t, srv, "/customers"+tt.query)
		if status != http.StatusOK {
			t.Errorf("GET /customers%s: status %d: %s", tt.query, status, body)
			continue
		}
		var list []struct {
			Customer string `json:"customer"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range list {
			got = append(got, c.Customer)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("GET /customers%s = %v, want %v", tt.query, got, tt.want)
		}
	}
}

func TestBadRequests(t *testing.T) {
	srv := server(t)
	tests := []struct {
		path   string
		status int
	}{
		{"/customers/nobody", http.StatusNotFound},
		{"/customers/%20", http.StatusBadRequest},
		{"/customers/a%01b", http.StatusBadRequest},
		{"/customers?vip=yes", http.StatusBadRequest},
		{"/customers?vip=", http.StatusBadRequest},
		{"/customers?limit=ten", http.StatusBadRequest},
		{"/customers?limit=", http.StatusBadRequest},
		{"/customers?limit=0", http.StatusBadRequest},
		{"/customers?limit=-1", http.StatusBadRequest},
		{"/customers?limit=1001", http.StatusBadRequest},
		{"/customers?limit=99999999999999999999", http.StatusBadRequest},
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
