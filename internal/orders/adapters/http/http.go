// Package http is the orders service's HTTP API: carts, orders and their
// history.
package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/orders/domain"
	"github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/valid"
)

// Bus is the message bus the API sends commands to.
type Bus interface {
	Handle(ctx context.Context, cmd any) (any, error)
}

// Orders reads orders.
type Orders interface {
	Order(ctx context.Context, id string) (service.View, error)
	Orders(ctx context.Context, customer, after string, limit int) ([]service.View, error)
}

// API serves the orders routes.
type API struct {
	Bus    Bus
	Orders Orders
	Log    *slog.Logger
}

// Register adds the orders routes to mux.
func (a *API) Register(mux httpx.Mux) {
	mux.HandleFunc("POST /orders", a.create)
	mux.HandleFunc("GET /orders", a.list)
	mux.HandleFunc("GET /orders/{orderid}", a.get)
	mux.HandleFunc("POST /orders/{orderid}/items", a.addItem)
	mux.HandleFunc("POST /orders/{orderid}/place", a.command(func(id string) any { return domain.PlaceOrder{OrderID: id} }))
	mux.HandleFunc("POST /orders/{orderid}/cancel", a.command(func(id string) any { return domain.CancelOrder{OrderID: id} }))
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Customer string `json:"customer"`
		Email    string `json:"email"`
	}
	if err := httpx.Decode(r, &b, "customer", "email"); err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	res, err := a.Bus.Handle(r.Context(), domain.CreateOrder{Customer: b.Customer, Email: b.Email})
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	v := res.(service.View)
	w.Header().Set("Location", "/orders/"+v.ID)
	httpx.JSON(w, http.StatusCreated, v)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpx.PathRef(r, "orderid")
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	v, err := a.Orders.Order(r.Context(), id)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, v)
}

// list answers a page of orders, newest first: ?customer=ID the
// customer's only, ?limit=N at most N (service.DefaultLimit unless
// given), ?after=ORDERID those after the page that ended with ORDERID. A
// full page links the next one (Link: <...>; rel="next").
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	customer, after := q.Get("customer"), q.Get("after")
	limit, err := httpx.QueryInt(r, "limit", service.DefaultLimit)
	if err == nil && customer != "" {
		err = valid.Ref("customer", customer)
	}
	if err == nil && after != "" {
		err = valid.Ref("after", after)
	}
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	list, err := a.Orders.Orders(r.Context(), customer, after, limit)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	if len(list) == limit {
		next := url.Values{"limit": {strconv.Itoa(limit)}, "after": {list[len(list)-1].ID}}
		if customer != "" {
			next.Set("customer", customer)
		}
		w.Header().Set("Link", "</orders?"+next.Encode()+`>; rel="next"`)
	}
	httpx.JSON(w, http.StatusOK, list)
}

// addItem answers 202: the item is in the cart, and its stock is being
// reserved; the order's lines show the outcome.
func (a *API) addItem(w http.ResponseWriter, r *http.Request) {
	id, err := httpx.PathRef(r, "orderid")
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	var b struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	if err := httpx.Decode(r, &b, "sku", "qty"); err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	res, err := a.Bus.Handle(r.Context(), domain.AddItem{OrderID: id, SKU: b.SKU, Qty: b.Qty})
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusAccepted, res)
}

func (a *API) command(cmd func(id string) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := httpx.PathRef(r, "orderid")
		if err != nil {
			httpx.Fail(w, r, a.Log, err)
			return
		}
		res, err := a.Bus.Handle(r.Context(), cmd(id))
		if err != nil {
			httpx.Fail(w, r, a.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, res)
	}
}
