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

	"github.com/google/go-cmp/cmp"

	flowshttp "github.com/stockflow/stockflow/internal/flows/adapters/http"
	flowsqlite "github.com/stockflow/stockflow/internal/flows/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/messaging"
)

// recorder answers every trace with one node, and keeps the queries.
type recorder struct{ queries []service.Query }

func (r *recorder) Recent(context.Context, service.RecentQuery) ([]domain.Flow, error) {
	return nil, nil
}

func (r *recorder) Map(context.Context, time.Duration) (*service.Map, error) {
	return &service.Map{}, nil
}

func (r *recorder) Trace(_ context.Context, q service.Query) ([]*domain.Node, error) {
	r.queries = append(r.queries, q)
	return []*domain.Node{{Message: domain.Message{ID: "m1", Payload: json.RawMessage(`{}`)}, Handlings: []domain.Handling{}}}, nil
}

func server(t *testing.T, flows flowshttp.Flows) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	(&flowshttp.API{Flows: flows, Log: slog.New(slog.DiscardHandler)}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q, want JSON", path, ct)
	}
	return resp.StatusCode, body
}

func TestTraceParameters(t *testing.T) {
	tests := []struct {
		path string
		want service.Query
	}{
		{"/flows?order=o1", service.Query{Order: "o1"}},
		{"/flows?correlation=c1", service.Query{Correlation: "c1"}},
		{"/flows?message=m1", service.Query{Message: "m1"}},
		{"/flows?batch=b1", service.Query{Batch: "b1"}},
		{"/flows?order=o1&limit=5", service.Query{Order: "o1", Limit: 5}},
		{"/flows?batch=b1&limit=10000", service.Query{Batch: "b1", Limit: 10_000}},
		{"/flows?order=a%20b%2Fc", service.Query{Order: "a b/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := &recorder{}
			status, body := get(t, server(t, rec), tt.path)
			if status != http.StatusOK {
				t.Fatalf("GET %s = %d %s, want 200", tt.path, status, body)
			}
			if diff := cmp.Diff([]service.Query{tt.want}, rec.queries); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			var nodes []*domain.Node
			if err := json.Unmarshal(body, &nodes); err != nil || len(nodes) != 1 || nodes[0].ID != "m1" {
				t.Errorf("body %s (%v), want the trace", body, err)
			}
		})
	}
}

func TestTraceBadRequests(t *testing.T) {
	for _, path := range []string{
		"/flows",
		"/flows?order=",
		"/flows?limit=5",
		"/flows?order=o1&batch=b1",
		"/flows?message=m1&correlation=c1",
		"/flows?colour=red",
		"/flows?order=o1&colour=red",
		"/flows?order=o1&limit=0",
		"/flows?order=o1&limit=abc",
		"/flows?order=o1&limit=-1",
		"/flows?order=o1&limit=10001",
		"/flows?order=%20%20",
		"/flows?order=o%0A1",
		"/flows?message=" + strings.Repeat("x", 300),
	} {
		t.Run(path, func(t *testing.T) {
			rec := &recorder{}
			status, body := get(t, server(t, rec), path)
			if status != http.StatusBadRequest {
				t.Errorf("GET %s = %d %s, want 400", path, status, body)
			}
			var msg struct{ Message string }
			if err := json.Unmarshal(body, &msg); err != nil || msg.Message == "" {
				t.Errorf("GET %s body %s (%v), want {\"message\": ...}", path, body, err)
			}
			if len(rec.queries) != 0 {
				t.Errorf("GET %s traced %+v", path, rec.queries)
			}
		})
	}
}

// journal returns the handlers over a journal holding order o1's journey.
func journal(t *testing.T) (*service.Handlers, *flowsqlite.Store) {
	t.Helper()
	st, err := flowsqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flows.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	h := service.NewHandlers(st, map[string]string{"order_placed": "orders", "allocated": "allocation"}, nil)
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, m := range []struct {
		meta    messaging.Meta
		payload string
	}{
		{messaging.Meta{MessageID: "m1", Channel: "order_placed", Key: "o1", CorrelationID: "m1", OccurredAt: at},
			`{"orderid":"o1","lines":[{"sku":"LAMP","qty":1}]}`},
		{messaging.Meta{MessageID: "m2", Channel: "allocated", Key: "o1", CorrelationID: "m1", CausationID: "m1", OccurredAt: at.Add(4 * time.Millisecond)},
			`{"orderid":"o1","sku":"LAMP","qty":1,"batchref":"b1"}`},
	} {
		if _, err := h.Message(messaging.WithMeta(context.Background(), m.meta), service.Observed{Payload: json.RawMessage(m.payload)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = h.Receipt(context.Background(), messaging.Receipt{MessageID: "m1", Handler: "allocation.allocate",
		Outcome: messaging.OutcomeHandled, Raised: []string{"m2"}, At: at.Add(3 * time.Millisecond), DurationMS: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	return h, st
}

func TestTraceOfTheJournal(t *testing.T) {
	h, _ := journal(t)
	srv := server(t, h)
	for _, path := range []string{"/flows?order=o1", "/flows?correlation=m1", "/flows?message=m2", "/flows?batch=b1"} {
		status, body := get(t, srv, path)
		if status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, status, body)
		}
		var nodes []*domain.Node
		if err := json.Unmarshal(body, &nodes); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
		if len(nodes) != 1 || nodes[0].ID != "m1" || nodes[0].Producer != "orders" || nodes[0].Order != "o1" ||
			len(nodes[0].Handlings) != 1 || nodes[0].Handlings[0].Service != "allocation" ||
			len(nodes[0].Children) != 1 || nodes[0].Children[0].ID != "m2" || nodes[0].Children[0].HopMS != 4 ||
			nodes[0].Children[0].Batch != "b1" {
			t.Errorf("GET %s = %s, want m1 handled by allocation, m2 under it", path, body)
		}
	}
	status, body := get(t, srv, "/flows?order=o1&limit=1")
	var nodes []*domain.Node
	if err := json.Unmarshal(body, &nodes); status != http.StatusOK || err != nil || len(nodes) != 1 || len(nodes[0].Children) != 0 {
		t.Errorf("GET with limit=1 = %d %s, want m1 alone", status, body)
	}
}

func TestTraceNotFound(t *testing.T) {
	h, _ := journal(t)
	srv := server(t, h)
	for _, path := range []string{"/flows?order=nope", "/flows?message=nope", "/flows?correlation=nope", "/flows?batch=nope"} {
		status, body := get(t, srv, path)
		if status != http.StatusNotFound {
			t.Errorf("GET %s = %d %s, want 404", path, status, body)
		}
		var msg struct{ Message string }
		if err := json.Unmarshal(body, &msg); err != nil || !strings.Contains(msg.Message, "nope") {
			t.Errorf("GET %s body %s (%v), want {\"message\": ...} naming nope", path, body, err)
		}
	}
}

// A message journaled with a payload that is not JSON (a broker carries
// any bytes) still reads as JSON in its trace.
func TestTraceOfAnUnreadableMessage(t *testing.T) {
	h, _ := journal(t)
	ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "m3", Channel: "order_placed", Key: "o1",
		CorrelationID: "m1", CausationID: "m2", OccurredAt: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)})
	if _, err := h.Message(ctx, service.Observed{Payload: json.RawMessage("not json {")}); err != nil {
		t.Fatal(err)
	}
	status, body := get(t, server(t, h), "/flows?correlation=m1")
	var nodes []*domain.Node
	if err := json.Unmarshal(body, &nodes); status != http.StatusOK || err != nil || len(nodes) != 1 {
		t.Errorf("GET /flows?correlation=m1 = %d %q (%v), want the trace as JSON", status, body, err)
	}
}
