// Package http is the CRM service's HTTP API: customers, their orders, and
// who is a VIP.
package http

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/stockflow/stockflow/internal/crm/domain"
	"github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/httpx"
)

// Customers reads customers.
type Customers interface {
	Customer(ctx context.Context, id string) (*domain.Customer, error)
	Customers(ctx context.Context, segment string, limit int) ([]*domain.Customer, error)
}

// API serves the CRM routes.
type API struct {
	Customers Customers
	Log       *slog.Logger
}

// Register adds the CRM routes to mux.
func (a *API) Register(mux httpx.Mux) {
	mux.HandleFunc("GET /customers", a.list)
	mux.HandleFunc("GET /customers/{customer}", a.get)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpx.PathRef(r, "customer")
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	c, err := a.Customers.Customer(r.Context(), id)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, c)
}

// list answers the customers, by id: ?vip=true the VIPs, ?vip=false the
// others, neither all of them; ?limit=N at most N (service.DefaultLimit
// unless given).
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	segment := service.SegmentAll
	switch vip := q.Get("vip"); {
	case !q.Has("vip"):
	case vip == "true":
		segment = service.SegmentVIP
	case vip == "false":
		segment = service.SegmentRegular
	default:
		httpx.Fail(w, r, a.Log, fail.Errorf(fail.Invalid, "vip must be true or false, got %q", vip))
		return
	}
	limit, err := httpx.QueryInt(r, "limit", service.DefaultLimit)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	list, err := a.Customers.Customers(r.Context(), segment, limit)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, list)
}
