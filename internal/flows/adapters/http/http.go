// Package http is the flows service's HTTP API: the traces of the
// journal, as JSON.
package http

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/httpx"
)

// Flows answers traces.
type Flows interface {
	Trace(ctx context.Context, q service.Query) ([]*domain.Node, error)
}

// API serves the flows routes.
type API struct {
	Flows Flows
	Log   *slog.Logger
}

// Register adds the flows routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /flows", a.trace)
}

// trace answers GET /flows?order=|correlation=|message=|batch=[&limit=]:
// the causal tree of the flows named, roots first, each message with
// what each handler did with it and the messages it caused.
func (a *API) trace(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := service.Query{Message: v.Get("message"), Correlation: v.Get("correlation"), Order: v.Get("order"), Batch: v.Get("batch")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "limit must be a positive number, got %q", s))
			return
		}
		q.Limit = n
	}
	for name := range v {
		switch name {
		case "message", "correlation", "order", "batch", "limit":
		default:
			httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "unknown parameter %q: name one of message, correlation, order or batch", name))
			return
		}
	}
	nodes, err := a.Flows.Trace(r.Context(), q)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, nodes)
}
