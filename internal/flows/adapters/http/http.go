// Package http is the flows service's HTTP API: the traces of the
// journal as JSON and as a live stream, the recent flows, the service
// map, and the page at / that draws them.
package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/httpx"
)

// Flows answers traces, recent flows and the service map.
type Flows interface {
	Trace(ctx context.Context, q service.Query) ([]*domain.Node, error)
	Recent(ctx context.Context, q service.RecentQuery) ([]domain.Flow, error)
	Map(ctx context.Context, window time.Duration) (*service.Map, error)
}

// API serves the flows routes.
type API struct {
	Flows Flows
	Log   *slog.Logger
	// Poll is how often a live stream looks for what joined its flows
	// (default half a second).
	Poll time.Duration
}

// Register adds the flows routes to mux.
func (a *API) Register(mux httpx.Mux) {
	mux.HandleFunc("GET /flows", a.trace)
	mux.HandleFunc("GET /flows/stream", a.stream)
	mux.HandleFunc("GET /flows/recent", a.recent)
	mux.HandleFunc("GET /flows/map", a.serviceMap)
	mux.Handle("GET /{$}", page())
	mux.Handle("GET /ui/{file}", assets())
}

// recent answers GET /flows/recent[?match=][&limit=]: the latest active
// flows first, each with its first message, its order and customer, when
// it ran, how many messages it counts and whether one failed; with match,
// those a message of which has it as its id, correlation id, order,
// customer, sku or batch.
func (a *API) recent(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := only(v, "match", "limit"); err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	q := service.RecentQuery{Match: v.Get("match")}
	if v.Has("match") && q.Match == "" {
		httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "match must not be empty"))
		return
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "limit must be a positive number, got %q", s))
			return
		}
		q.Limit = n
	}
	flows, err := a.Flows.Recent(r.Context(), q)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, flows)
}

// serviceMap answers GET /flows/map[?window=]: the services and the
// channels between them as docs/asyncapi.json declares them, the
// messages each link carried over the window (default an hour), and
// every difference between the two.
func (a *API) serviceMap(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := only(v, "window"); err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	var window time.Duration
	if s := v.Get("window"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "window must be a duration such as 15m or 1h, got %q", s))
			return
		}
		if d <= 0 {
			httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "window must be positive, got %q", s))
			return
		}
		window = d
	}
	m, err := a.Flows.Map(r.Context(), window)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, m)
}

// only refuses the parameters of v not among names.
func only(v url.Values, names ...string) error {
	for name := range v {
		if !slices.Contains(names, name) {
			return fail.Errorf(fail.Invalid, "unknown parameter %q: the parameters are %s", name, strings.Join(names, ", "))
		}
	}
	return nil
}

// trace answers GET /flows?order=|customer=|sku=|correlation=|message=|batch=[&limit=]:
// the causal tree of the flows named, roots first, each message with
// what each handler did with it and the messages it caused.
func (a *API) trace(w http.ResponseWriter, r *http.Request) {
	q, err := query(r)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	nodes, err := a.Flows.Trace(r.Context(), q)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, nodes)
}

// query reads the trace's query from r's URL.
func query(r *http.Request) (service.Query, error) {
	v := r.URL.Query()
	q := service.Query{Message: v.Get("message"), Correlation: v.Get("correlation"), Order: v.Get("order"),
		Customer: v.Get("customer"), SKU: v.Get("sku"), Batch: v.Get("batch")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fail.Errorf(fail.Invalid, "limit must be a positive number, got %q", s)
		}
		q.Limit = n
	}
	for name := range v {
		switch name {
		case "message", "correlation", "order", "customer", "sku", "batch", "limit":
		default:
			return q, fail.Errorf(fail.Invalid, "unknown parameter %q: name one of message, correlation, order, customer, sku or batch", name)
		}
	}
	return q, q.Validate()
}

// Event is an event of a live stream: a message that joined the flows
// watched, or what a handler did with one, with its depth in the tree.
type Event struct {
	Depth int `json:"depth"`
	// HopMS is the time from the message's cause to it.
	HopMS    float64          `json:"hop_ms,omitempty"`
	Message  *domain.Message  `json:"message,omitempty"`
	Handling *domain.Handling `json:"handling,omitempty"`
}

// stream answers GET /flows/stream?order=|correlation=|message=|batch=
// as Server-Sent Events: first every message of the flows and what was
// done with it, then what joins them, as it joins, until the client goes
// or the server shuts down.
// A flow not in the journal yet is waited for.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	q, err := query(r)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives the server's write timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	if err := rc.Flush(); err != nil {
		return // the client went, or nothing here can stream
	}
	poll := a.Poll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	seen := map[string]bool{}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		nodes, err := a.Flows.Trace(r.Context(), q)
		switch {
		case err == nil:
			for _, e := range fresh(nodes, seen) {
				b, _ := json.Marshal(e)
				kind := "message"
				if e.Handling != nil {
					kind = "handling"
				}
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", kind, b)
			}
		case errors.Is(err, fail.NotFound):
		case r.Context().Err() == nil:
			a.Log.WarnContext(r.Context(), "flows stream", "err", err)
		}
		fmt.Fprint(w, ": keep-alive\n\n")
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-httpx.Closing(r.Context()):
			return // the server shuts down: the client follows again elsewhere
		case <-tick.C:
		}
	}
}

// fresh returns the events of nodes not in seen, in tree order, and adds
// them to it.
func fresh(nodes []*domain.Node, seen map[string]bool) []Event {
	var out []Event
	var walk func(ns []*domain.Node, depth int)
	walk = func(ns []*domain.Node, depth int) {
		for _, n := range ns {
			if !seen[n.ID] {
				seen[n.ID] = true
				m := n.Message
				out = append(out, Event{Depth: depth, HopMS: n.HopMS, Message: &m})
			}
			for _, h := range n.Handlings {
				k := n.ID + " " + h.Handler + " " + h.Outcome + " " + h.At.String()
				if !seen[k] {
					seen[k] = true
					out = append(out, Event{Depth: depth, Handling: &h})
				}
			}
			walk(n.Children, depth+1)
		}
	}
	walk(nodes, 0)
	return out
}
