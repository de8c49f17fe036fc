package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/orders/domain"
	"github.com/stockflow/stockflow/internal/valid"
)

// kind is the document kind orders are kept as.
const kind = "order"

// View is an order as the API shows it: the order and its status.
type View struct {
	*domain.Order
	Status string `json:"status"`
}

func view(o *domain.Order) View { return View{o, o.Status()} }

// DefaultReservationTTL is how long a cart's reservations last unless
// the service is told otherwise.
const DefaultReservationTTL = 30 * time.Minute

// Handlers handles the orders service's commands and the events it
// follows.
type Handlers struct {
	store    docstore.Store
	registry *messaging.Registry
	ttl      time.Duration
	// Now tells the time (tests set it).
	Now func() time.Time
}

// NewHandlers returns the handlers over store; a cart's reservations last
// ttl (DefaultReservationTTL when 0) unless it is placed.
func NewHandlers(store docstore.Store, registry *messaging.Registry, ttl time.Duration) *Handlers {
	if ttl <= 0 {
		ttl = DefaultReservationTTL
	}
	return &Handlers{store: store, registry: registry, ttl: ttl, Now: func() time.Time { return time.Now().UTC() }}
}

// NewBus wires the handlers to a message bus.
func NewBus(h *Handlers, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus {
	b := messaging.NewBus(log, dispatched)
	messaging.HandleCommand(b, h.CreateOrder)
	messaging.HandleCommand(b, h.AddItem)
	messaging.HandleCommand(b, h.PlaceOrder)
	messaging.HandleCommand(b, h.CancelOrder)
	messaging.HandleEvent(b, "orders.line_allocated", h.LineAllocated)
	messaging.HandleEvent(b, "orders.line_deallocated", h.LineDeallocated)
	messaging.HandleEvent(b, "orders.out_of_stock", h.OutOfStock)
	messaging.HandleEvent(b, "orders.goods_dispatched", h.GoodsDispatched)
	messaging.HandleEvent(b, "orders.backorder_cancelled", h.BackorderCancelled)
	messaging.HandleEvent(b, "orders.reservation_timeout", h.ReservationTimeout)
	return b
}

// Order returns the order id.
func (h *Handlers) Order(ctx context.Context, id string) (View, error) {
	d, err := h.store.Get(ctx, kind, id)
	if errors.Is(err, fail.NotFound) {
		return View{}, fail.Errorf(fail.NotFound, "no order %s", id)
	} else if err != nil {
		return View{}, err
	}
	o, err := docstore.Decode[domain.Order]([]docstore.Doc{d})
	if err != nil {
		return View{}, err
	}
	return view(&o[0]), nil
}

// Bounds of a page of orders.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Orders returns a page of orders, newest first: the customer's, or
// everyone's when customer is empty; after, when set, is the last order
// id of the page before.
func (h *Handlers) Orders(ctx context.Context, customer, after string, limit int) ([]View, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, fail.Errorf(fail.Invalid, "limit must be between 1 and %d, got %d", MaxLimit, limit)
	}
	docs, err := h.store.Find(ctx, docstore.Query{Kind: kind, Index: customer, After: after, Limit: limit, NewestFirst: true})
	if err != nil {
		return nil, fmt.Errorf("listing orders: %w", err)
	}
	orders, err := docstore.Decode[*domain.Order](docs)
	if err != nil {
		return nil, err
	}
	views := make([]View, len(orders))
	for i, o := range orders {
		views[i] = view(o)
	}
	return views, nil
}

// CreateOrder opens a cart and returns it.
func (h *Handlers) CreateOrder(ctx context.Context, c domain.CreateOrder) (any, []messaging.Raised, error) {
	o, err := domain.NewOrder(messaging.NewID(), c.Customer, c.Email, h.Now())
	if err != nil {
		return nil, nil, err
	}
	raised, err := h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return h.save(ctx, tx, o, 0)
	})
	if err != nil {
		return nil, nil, err
	}
	return view(o), raised, nil
}

// AddItem puts an item in a cart; the allocation service reserves its
// stock.
func (h *Handlers) AddItem(ctx context.Context, c domain.AddItem) (any, []messaging.Raised, error) {
	return h.command(ctx, c.OrderID, func(o *domain.Order) error { return o.AddItem(c.SKU, c.Qty, h.ttl, h.Now()) })
}

// PlaceOrder places an order.
func (h *Handlers) PlaceOrder(ctx context.Context, c domain.PlaceOrder) (any, []messaging.Raised, error) {
	return h.command(ctx, c.OrderID, func(o *domain.Order) error { return o.Place(h.Now()) })
}

// CancelOrder cancels an order not yet dispatched.
func (h *Handlers) CancelOrder(ctx context.Context, c domain.CancelOrder) (any, []messaging.Raised, error) {
	return h.command(ctx, c.OrderID, func(o *domain.Order) error { return o.Cancel(h.Now()) })
}

// LineAllocated follows the allocation of an order's line.
func (h *Handlers) LineAllocated(ctx context.Context, e LineAllocated) ([]messaging.Raised, error) {
	return h.follow(ctx, e.OrderID, func(o *domain.Order) { o.LineAllocated(e.SKU, e.BatchRef, e.Version, e.Backorder, h.Now()) })
}

// LineDeallocated follows a line losing its batch.
func (h *Handlers) LineDeallocated(ctx context.Context, e LineDeallocated) ([]messaging.Raised, error) {
	return h.follow(ctx, e.OrderID, func(o *domain.Order) { o.LineDeallocated(e.SKU, e.BatchRef, e.Reason, e.Version, h.Now()) })
}

// OutOfStock follows a line no batch could take.
func (h *Handlers) OutOfStock(ctx context.Context, e OutOfStock) ([]messaging.Raised, error) {
	if e.OrderID == "" {
		return nil, nil
	}
	return h.follow(ctx, e.OrderID, func(o *domain.Order) { o.OutOfStock(e.SKU, e.Version, e.UnknownSKU, e.Waiting, h.Now()) })
}

// BackorderCancelled follows a line leaving the waiting list.
func (h *Handlers) BackorderCancelled(ctx context.Context, e BackorderCancelled) ([]messaging.Raised, error) {
	return h.follow(ctx, e.OrderID, func(o *domain.Order) { o.BackorderCancelled(e.SKU, e.Version, h.Now()) })
}

// GoodsDispatched follows the dispatch of an order.
func (h *Handlers) GoodsDispatched(ctx context.Context, e GoodsDispatched) ([]messaging.Raised, error) {
	from := make(map[string]string, len(e.Lines))
	for _, l := range e.Lines {
		from[l.SKU] = l.BatchRef
	}
	return h.follow(ctx, e.OrderID, func(o *domain.Order) { o.GoodsDispatched(from, h.Now()) })
}

// ReservationTimeout handles a cart's timer, due: the cart expires if its
// clock still runs (see domain.Order.Expire).
func (h *Handlers) ReservationTimeout(ctx context.Context, e domain.ReservationTimeout) ([]messaging.Raised, error) {
	return h.follow(ctx, e.OrderID, func(o *domain.Order) { o.Expire(e.ExpiresAt, h.ttl, h.Now()) })
}

// command changes the order id with fn, and returns its view.
func (h *Handlers) command(ctx context.Context, id string, fn func(*domain.Order) error) (any, []messaging.Raised, error) {
	if err := valid.Ref("orderid", id); err != nil {
		return nil, nil, err
	}
	var v View
	raised, err := h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		o, version, err := docstore.Load[*domain.Order](ctx, tx, kind, id)
		if errors.Is(err, fail.NotFound) {
			return fail.Errorf(fail.NotFound, "no order %s", id)
		} else if err != nil {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
		v = view(o)
		return h.save(ctx, tx, o, version)
	})
	if err != nil {
		return nil, nil, err
	}
	return v, raised, nil
}

// follow applies news of another service to the order id, if there is one
// (allocations of lines that are no order's concern are announced too).
func (h *Handlers) follow(ctx context.Context, id string, fn func(*domain.Order)) ([]messaging.Raised, error) {
	// Most lines allocated are no cart's (POST /allocate, the allocate
	// channel): a read tells, without a write transaction and an inbox
	// entry for each. Orders are made here, before any news of them.
	if _, err := h.store.Get(ctx, kind, id); errors.Is(err, fail.NotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		o, version, err := docstore.Load[*domain.Order](ctx, tx, kind, id)
		if errors.Is(err, fail.NotFound) {
			return nil
		} else if err != nil {
			return err
		}
		fn(o)
		return h.save(ctx, tx, o, version)
	}))
}

// save stores the order, if it changed, with the events it raised (its
// timers, messaging.Timer, wait in the store until due); orders are found
// by customer.
func (h *Handlers) save(ctx context.Context, tx docstore.Tx, o *domain.Order, version int64) error {
	return docstore.SaveAggregate(ctx, tx, h.registry, kind, o.ID, version, o.Customer, o)
}
