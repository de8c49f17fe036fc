// Package http is the allocation service's HTTP API: the book's Flask
// routes, kept compatible, plus deallocation and health.
package http

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/httpx"
)

// Bus is the message bus the API sends commands to.
type Bus interface {
	Handle(ctx context.Context, cmd any) (any, error)
}

// Views answers queries: the read model's allocations, a batch, and a
// product with its waiting list.
type Views interface {
	Allocations(ctx context.Context, orderID string) ([]service.AllocationView, error)
	Batch(ctx context.Context, ref string) (service.BatchView, error)
	Product(ctx context.Context, sku string) (service.ProductView, error)
}

// API serves the allocation routes.
type API struct {
	Bus   Bus
	Views Views
	Log   *slog.Logger
}

// Register adds the allocation routes to mux.
func (a *API) Register(mux httpx.Mux) {
	mux.HandleFunc("POST /add_batch", a.addBatch)
	mux.HandleFunc("POST /allocate", a.allocate)
	mux.HandleFunc("POST /change_batch_quantity", a.changeBatchQuantity)
	mux.HandleFunc("POST /deallocate", a.deallocate)
	mux.HandleFunc("GET /allocations/{orderid}", a.allocations)
	mux.HandleFunc("GET /batches/{batchref}", a.batch)
	mux.HandleFunc("GET /products/{sku}", a.product)
}

type batchBody struct {
	Ref string      `json:"ref"`
	SKU string      `json:"sku"`
	Qty int         `json:"qty"`
	ETA domain.Date `json:"eta"`
}

func (a *API) addBatch(w http.ResponseWriter, r *http.Request) {
	var b batchBody
	if err := httpx.Decode(r, &b, "ref", "sku", "qty"); err != nil {
		httpx.DecodeError(w, err)
		return
	}
	cmd := domain.CreateBatch{Ref: b.Ref, SKU: b.SKU, Qty: b.Qty, ETA: b.ETA.Time}
	if _, err := a.Bus.Handle(r.Context(), cmd); err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, b)
}

type lineBody struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

type batchRefBody struct {
	BatchRef string `json:"batchref"`
}

func (a *API) allocate(w http.ResponseWriter, r *http.Request) {
	var l lineBody
	if err := httpx.Decode(r, &l, "orderid", "sku", "qty"); err != nil {
		httpx.DecodeError(w, err)
		return
	}
	res, err := a.Bus.Handle(r.Context(), domain.Allocate{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty})
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, batchRefBody{res.(string)})
}

func (a *API) changeBatchQuantity(w http.ResponseWriter, r *http.Request) {
	var b struct {
		BatchRef string `json:"batchref"`
		Qty      int    `json:"qty"`
	}
	if err := httpx.Decode(r, &b, "batchref", "qty"); err != nil {
		httpx.DecodeError(w, err)
		return
	}
	if _, err := a.Bus.Handle(r.Context(), domain.ChangeBatchQuantity{Ref: b.BatchRef, Qty: b.Qty}); err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, b)
}

func (a *API) deallocate(w http.ResponseWriter, r *http.Request) {
	var l lineBody
	if err := httpx.Decode(r, &l, "orderid", "sku", "qty"); err != nil {
		httpx.DecodeError(w, err)
		return
	}
	res, err := a.Bus.Handle(r.Context(), domain.Deallocate{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty})
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, batchRefBody{res.(string)})
}

func (a *API) allocations(w http.ResponseWriter, r *http.Request) {
	orderID := r.PathValue("orderid")
	if err := domain.ValidateRef("orderid", orderID); err != nil {
		httpx.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	views, err := a.Views.Allocations(r.Context(), orderID)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	if len(views) == 0 {
		httpx.Error(w, http.StatusNotFound, fmt.Sprintf("No allocations for order %s", orderID))
		return
	}
	httpx.JSON(w, http.StatusOK, views)
}

func (a *API) product(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	if err := domain.ValidateRef("sku", sku); err != nil {
		httpx.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := a.Views.Product(r.Context(), sku)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, v)
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("batchref")
	if err := domain.ValidateRef("batchref", ref); err != nil {
		httpx.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := a.Views.Batch(r.Context(), ref)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, v)
}
