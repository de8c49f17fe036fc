// Package http is the warehouse's HTTP API: workers' stock reports, and
// what the warehouse knows of batches and shipments.
package http

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
	"github.com/stockflow/stockflow/internal/warehouse/service"
)

// Bus is the message bus the API sends commands to.
type Bus interface {
	Handle(ctx context.Context, cmd any) (any, error)
}

// Views reads what the warehouse knows.
type Views interface {
	Batch(ctx context.Context, ref string) (*domain.Batch, error)
	Shipment(ctx context.Context, orderID string) (*domain.Shipment, error)
}

// API serves the warehouse routes.
type API struct {
	Bus   Bus
	Views Views
	Log   *slog.Logger
}

// Register adds the warehouse routes to mux.
func (a *API) Register(mux httpx.Mux) {
	mux.HandleFunc("POST /warehouse/batches/{batchref}/count", a.report(domain.ReportCount))
	mux.HandleFunc("POST /warehouse/batches/{batchref}/damage", a.report(domain.ReportDamage))
	mux.HandleFunc("GET /warehouse/batches/{batchref}", a.batch)
	mux.HandleFunc("GET /warehouse/shipments/{orderid}", a.shipment)
}

// report answers 202: the report is recorded, and the allocation service
// will hear of the batch's new quantity.
func (a *API) report(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ref, err := httpx.PathRef(r, "batchref")
		if err != nil {
			httpx.Fail(w, r, a.Log, err)
			return
		}
		var b struct {
			Qty  int    `json:"qty"`
			Note string `json:"note"`
		}
		if err := httpx.Decode(r, &b, "qty"); err != nil {
			httpx.Fail(w, r, a.Log, err)
			return
		}
		res, err := a.Bus.Handle(r.Context(), service.ReportStock{BatchRef: ref, Kind: kind, Qty: b.Qty, Note: b.Note})
		if err != nil {
			httpx.Fail(w, r, a.Log, err)
			return
		}
		httpx.JSON(w, http.StatusAccepted, res)
	}
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	ref, err := httpx.PathRef(r, "batchref")
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	b, err := a.Views.Batch(r.Context(), ref)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, b)
}

func (a *API) shipment(w http.ResponseWriter, r *http.Request) {
	id, err := httpx.PathRef(r, "orderid")
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	s, err := a.Views.Shipment(r.Context(), id)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, struct {
		*domain.Shipment
		Status string `json:"status"`
	}{s, s.Status()})
}
