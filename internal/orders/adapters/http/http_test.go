package http_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/httpx"
	ordershttp "github.com/stockflow/stockflow/internal/orders/adapters/http"
	"github.com/stockflow/stockflow/internal/orders/domain"
	"github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/testenv"
)

const ttl = 5 * time.Minute

// server serves the orders routes over a store of its own; now is the
// handlers' time, which the test moves (it starts at the real time, so
// that the carts' timers wait in the store).
func server(t *testing.T) (*httptest.Server, *service.Handlers, *time.Time) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "orders.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	h := service.NewHandlers(store, service.Messages(), ttl)
	now := time.Now().UTC().Truncate(time.Second)
	h.Now = func() time.Time { return now }
	log := testenv.Logger(t, slog.LevelError)
	mux := http.NewServeMux()
	(&ordershttp.API{Bus: service.NewBus(h, log, nil), Orders: h, Log: log}).Register(mux)
	srv := httptest.NewServer(httpx.Handler(mux, log, nil))
	t.Cleanup(srv.Close)
	return srv, h, &now
}

// call answers method path with body: its status and JSON body.
func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
	}
	return resp.StatusCode, v
}

func TestAnExpiredCart(t *testing.T) {
	srv, h, now := server(t)
	_, o := call(t, srv, "POST", "/orders", `{"customer": "alice", "email": "alice@example.com"}`)
	id, _ := o["orderid"].(string)
	if _, v := call(t, srv, "GET", "/orders/"+id, ""); v["expires_at"] != nil {
		t.Errorf("an empty cart expires at %v: its clock starts with its first item", v["expires_at"])
	}
	if code, _ := call(t, srv, "POST", "/orders/"+id+"/items", `{"sku": "LAMP", "qty": 1}`); code != http.StatusAccepted {
		t.Fatalf("adding an item: %d", code)
	}
	due := now.Add(ttl)
	_, v := call(t, srv, "GET", "/orders/"+id, "")
	if at, err := time.Parse(time.RFC3339, v["expires_at"].(string)); err != nil || !at.Equal(due) {
		t.Fatalf("expires_at %v (%v), want %s", v["expires_at"], err, due.Format(time.RFC3339))
	}

	*now = due
	if _, err := h.ReservationTimeout(context.Background(), domain.ReservationTimeout{OrderID: id, ExpiresAt: due}); err != nil {
		t.Fatal(err)
	}
	_, v = call(t, srv, "GET", "/orders/"+id, "")
	if v["status"] != domain.StatusExpired || v["expires_at"] != nil || v["expired_at"] == nil {
		t.Errorf("after the timeout: status %v, expires_at %v, expired_at %v; want expired, no clock", v["status"], v["expires_at"], v["expired_at"])
	}
	code, v := call(t, srv, "POST", "/orders/"+id+"/place", "")
	if msg, _ := v["message"].(string); code != http.StatusConflict || !strings.Contains(msg, "expired") || !strings.Contains(msg, "add an item") {
		t.Errorf("placing the expired cart: %d %v, want 409 saying it expired and how to reserve again", code, v)
	}
	if code, _ := call(t, srv, "POST", "/orders/"+id+"/items", `{"sku": "LAMP", "qty": 1}`); code != http.StatusAccepted {
		t.Fatalf("adding an item to the expired cart: %d", code)
	}
	if code, v := call(t, srv, "POST", "/orders/"+id+"/place", ""); code != http.StatusOK || v["placed_at"] == nil || v["expires_at"] != nil {
		t.Errorf("placing the reopened cart: %d %v, want 200, placed, no clock", code, v)
	}
}
