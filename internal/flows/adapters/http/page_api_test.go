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

	"github.com/stockflow/stockflow/docs"
	"github.com/stockflow/stockflow/internal/contract"
	flowshttp "github.com/stockflow/stockflow/internal/flows/adapters/http"
	"github.com/stockflow/stockflow/internal/flows/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
)

// server serves the flows API over a journal holding an order's cart
// flow, an order_placed the warehouse gave up on, and a message on a
// channel the contract lacks.
func pageServer(t *testing.T) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "flows.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	doc := readContract(t)
	now := time.Now().UTC()
	for _, m := range []domain.Message{
		{ID: "m1", Channel: "cart_item_added", CorrelationID: "c1", OccurredAt: now, Producer: "orders",
			Payload: json.RawMessage(`{"orderid":"o1","customer":"ann","sku":"LAMP","qty":2,"colour":"red"}`)},
		{ID: "m2", Channel: "line_allocated", CorrelationID: "c1", CausationID: "m1", OccurredAt: now.Add(time.Millisecond), Producer: "allocation",
			Payload: json.RawMessage(`{"orderid":"o1","sku":"LAMP","qty":2,"batchref":"b1"}`)},
		{ID: "m3", Channel: "parcel_weighed", CorrelationID: "c2", OccurredAt: now.Add(time.Second), Producer: "warehouse",
			Payload: json.RawMessage(`{"batchref":"b1"}`)},
	} {
		m.Keys = domain.KeysOf(m.Payload)
		if err := st.RecordMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []domain.Handling{
		{MessageID: "m1", Service: "allocation", Handler: "allocation.reserve_cart_item", Outcome: domain.Handled, At: now},
		{MessageID: "m2", Service: "orders", Handler: "orders.line_allocated", Outcome: domain.Handled, At: now},
		{MessageID: "m2", Service: "crm", Handler: "crm/line_allocated", Outcome: domain.DeadLettered, At: now, Reason: "boom", Attempts: 2},
	} {
		if err := st.RecordHandling(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	(&flowshttp.API{Flows: service.NewHandlers(st, nil, doc), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// readContract reads docs/asyncapi.json as cmd/stockflow gives it to the
// flows service.
func readContract(t *testing.T) *service.Contract {
	t.Helper()
	doc, err := contract.ParseDocument(docs.AsyncAPI)
	if err != nil {
		t.Fatal(err)
	}
	c := &service.Contract{Check: func(party, channel string, payload []byte) ([]string, bool) {
		op, ok := doc.Find(party, contract.Send, channel)
		if !ok {
			return nil, false
		}
		return doc.CheckPayload(op, payload), true
	}}
	for _, op := range doc.Operations {
		c.Operations = append(c.Operations, service.Operation{Party: op.Party, Action: op.Action, Channel: op.Channel})
	}
	return c
}

func pageGet(t *testing.T, srv *httptest.Server, path string) (int, http.Header, []byte) {
	t.Helper()
	res, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

func TestPageRoutesBadInput(t *testing.T) {
	srv := pageServer(t)
	for _, c := range []struct {
		path string
		want int
		msg  string
	}{
		{"/flows/recent?limit=0", 400, "limit"},
		{"/flows/recent?limit=x", 400, "limit"},
		{"/flows/recent?limit=201", 400, "limit"},
		{"/flows/recent?match=", 400, "match"},
		{"/flows/recent?match=" + strings.Repeat("x", 300), 400, "match"},
		{"/flows/recent?colour=red", 400, "unknown parameter"},
		{"/flows/map?window=soon", 400, "window"},
		{"/flows/map?window=-1h", 400, "window"},
		{"/flows/map?window=1s", 400, "window"},
		{"/flows/map?window=800h", 400, "window"},
		{"/flows/map?colour=red", 400, "unknown parameter"},
		{"/flows?customer=ann&sku=LAMP", 400, "exactly one"},
		{"/flows?customer=nobody", 404, "customer nobody"},
		{"/flows?sku=NOTHING", 404, "sku NOTHING"},
		{"/ui/nothing.js", 404, "no such file"},
		{"/ui/index.html", 404, "no such file"},
	} {
		status, h, body := pageGet(t, srv, c.path)
		var m struct{ Message string }
		if status != c.want || h.Get("Content-Type") != "application/json" || json.Unmarshal(body, &m) != nil ||
			!strings.Contains(strings.ToLower(m.Message), strings.ToLower(c.msg)) {
			t.Errorf("GET %s: %d %s %s, want %d with a message naming %q", c.path, status, h.Get("Content-Type"), body, c.want, c.msg)
		}
	}
}

func TestRecent(t *testing.T) {
	srv := pageServer(t)
	status, _, body := pageGet(t, srv, "/flows/recent")
	var flows []domain.Flow
	if status != 200 || json.Unmarshal(body, &flows) != nil || len(flows) != 2 {
		t.Fatalf("GET /flows/recent: %d %s", status, body)
	}
	if f := flows[1]; f.CorrelationID != "c1" || f.Order != "o1" || f.Customer != "ann" || f.Messages != 2 || !f.Failed ||
		f.FirstChannel != "cart_item_added" || f.Producer != "orders" {
		t.Errorf("the cart's flow: %+v", f)
	}
	status, _, body = pageGet(t, srv, "/flows/recent?match=nobody")
	if status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("GET /flows/recent?match=nobody: %d %s, want 200 []", status, body)
	}
	status, _, body = pageGet(t, srv, "/flows/recent?match=ann&limit=1")
	if status != 200 || json.Unmarshal(body, &flows) != nil || len(flows) != 1 || flows[0].CorrelationID != "c1" {
		t.Errorf("GET /flows/recent?match=ann: %d %s", status, body)
	}
	// The trace of a customer, of a sku.
	for _, q := range []string{"customer=ann", "sku=LAMP"} {
		if status, _, body := pageGet(t, srv, "/flows?"+q); status != 200 || !strings.Contains(string(body), `"line_allocated"`) {
			t.Errorf("GET /flows?%s: %d %s", q, status, body)
		}
	}
}

func TestMap(t *testing.T) {
	srv := pageServer(t)
	status, _, body := pageGet(t, srv, "/flows/map?window=30m")
	var m service.Map
	if status != 200 || json.Unmarshal(body, &m) != nil {
		t.Fatalf("GET /flows/map: %d %s", status, body)
	}
	if !m.Contract || m.Window != "30m0s" {
		t.Errorf("map: contract %v, window %s", m.Contract, m.Window)
	}
	links := map[string]service.Link{}
	for _, c := range m.Channels {
		for _, l := range c.Links {
			links[l.From+" "+c.Channel+" "+l.To] = l
		}
	}
	if l := links["orders cart_item_added allocation"]; !l.Declared || l.Messages != 1 || l.Handled != 1 {
		t.Errorf("orders → cart_item_added → allocation: %+v", l)
	}
	if l := links["allocation line_allocated crm"]; l.Declared || l.DeadLettered != 1 {
		t.Errorf("allocation → line_allocated → crm, which the contract lacks: %+v", l)
	}
	diffs := map[string]string{}
	for _, d := range m.Differences {
		diffs[d.Kind+" "+d.Channel] = d.Detail
	}
	for _, want := range []string{
		"undeclared_channel parcel_weighed", "undeclared_receiver line_allocated", "undeclared_field cart_item_added",
		"unused_channel order_placed", "unused_channel allocate",
	} {
		if _, ok := diffs[want]; !ok {
			t.Errorf("no difference %s in %v", want, diffs)
		}
	}
	if d := diffs["undeclared_field cart_item_added"]; !strings.Contains(d, "colour") {
		t.Errorf("the undeclared field is not named: %s", d)
	}
	for k := range diffs {
		if strings.HasSuffix(k, " line_allocated") && !strings.HasPrefix(k, "undeclared_receiver") {
			t.Errorf("a difference the journal does not show: %s: %s", k, diffs[k])
		}
	}
	if !strings.Contains(strings.Join(m.Services, " "), "outside") {
		t.Errorf("services: %v", m.Services)
	}
}

func TestPage(t *testing.T) {
	srv := pageServer(t)
	status, h, body := pageGet(t, srv, "/")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `src="/ui/app.js"`) {
		t.Fatalf("GET /: %d %s", status, h.Get("Content-Type"))
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("the page's policy: %q", csp)
	}
	for path, ctype := range map[string]string{"/ui/app.js": "text/javascript", "/ui/style.css": "text/css"} {
		status, h, body := pageGet(t, srv, path)
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), ctype) || len(body) < 1000 {
			t.Errorf("GET %s: %d %s, %d bytes", path, status, h.Get("Content-Type"), len(body))
		}
		// Nothing is fetched from elsewhere.
		if strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
			if !strings.Contains(string(body), "http://www.w3.org/2000/svg") || strings.Count(string(body), "://") > 1 {
				t.Errorf("%s names another site", path)
			}
		}
	}
	if status, _, _ := pageGet(t, srv, "/nothing"); status != 404 {
		t.Errorf("GET /nothing: %d", status)
	}
}
