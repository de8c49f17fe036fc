package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/valid"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
)

// Document kinds.
const (
	kindShipment = "shipment"
	kindBatch    = "batch"
)

// ReportStock is a worker's report on a batch: a count (the units there
// are) or damage (the units lost).
type ReportStock struct {
	BatchRef string
	Kind     string // domain.ReportCount or domain.ReportDamage
	Qty      int
	Note     string
}

// Handlers handles the warehouse's commands and the events it follows.
type Handlers struct {
	store    docstore.Store
	registry *messaging.Registry
	// Now tells the time (tests set it).
	Now func() time.Time
}

// NewHandlers returns the handlers over store.
func NewHandlers(store docstore.Store, registry *messaging.Registry) *Handlers {
	return &Handlers{store: store, registry: registry, Now: func() time.Time { return time.Now().UTC() }}
}

// NewBus wires the handlers to a message bus.
func NewBus(h *Handlers, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus {
	b := messaging.NewBus(log, dispatched)
	messaging.HandleCommand(b, h.ReportStock)
	messaging.HandleEvent(b, "warehouse.order_placed", h.OrderPlaced)
	messaging.HandleEvent(b, "warehouse.order_cancelled", h.OrderCancelled)
	messaging.HandleEvent(b, "warehouse.line_allocated", h.LineAllocated)
	messaging.HandleEvent(b, "warehouse.line_deallocated", h.LineDeallocated)
	messaging.HandleEvent(b, "warehouse.batch_created", h.BatchCreated)
	messaging.HandleEvent(b, "warehouse.batch_quantity_changed", h.BatchQuantityChanged)
	return b
}

// IsPermanent reports whether err is the message's fault.
func IsPermanent(err error) bool { return errors.Is(err, valid.ErrInvalid) }

// ReportStock records a worker's report, and announces the batch's new
// quantity on change_batch_quantity; it returns the batch.
func (h *Handlers) ReportStock(ctx context.Context, c ReportStock) (any, []messaging.Raised, error) {
	if err := valid.Ref("batchref", c.BatchRef); err != nil {
		return nil, nil, err
	}
	var out *domain.Batch
	raised, err := h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		b, version, err := docstore.Load[*domain.Batch](ctx, tx, kindBatch, c.BatchRef)
		if errors.Is(err, docstore.ErrNotFound) {
			return valid.NotFound("the warehouse knows no batch %s", c.BatchRef)
		} else if err != nil {
			return err
		}
		switch c.Kind {
		case domain.ReportCount:
			err = b.Count(c.Qty, c.Note, h.Now())
		case domain.ReportDamage:
			err = b.Damage(c.Qty, c.Note, h.Now())
		default:
			err = valid.Invalid("unknown report %q", c.Kind)
		}
		if err != nil {
			return err
		}
		out = b
		return h.save(ctx, tx, kindBatch, b.Ref, version, b.SKU, b)
	})
	if err != nil {
		return nil, nil, err
	}
	return out, raised, nil
}

// Shipment returns the shipment of an order.
func (h *Handlers) Shipment(ctx context.Context, orderID string) (*domain.Shipment, error) {
	return get[domain.Shipment](ctx, h.store, kindShipment, orderID, "the warehouse knows no order %s")
}

// Batch returns a batch as the warehouse knows it.
func (h *Handlers) Batch(ctx context.Context, ref string) (*domain.Batch, error) {
	return get[domain.Batch](ctx, h.store, kindBatch, ref, "the warehouse knows no batch %s")
}

func get[T any](ctx context.Context, store docstore.Store, kind, id, notFound string) (*T, error) {
	d, err := store.Get(ctx, kind, id)
	if errors.Is(err, docstore.ErrNotFound) {
		return nil, valid.NotFound(notFound, id)
	} else if err != nil {
		return nil, err
	}
	v, err := docstore.Decode[T]([]docstore.Doc{d})
	if err != nil {
		return nil, err
	}
	return &v[0], nil
}

// OrderPlaced records a placed order's lines, and dispatches it when they
// are all allocated.
func (h *Handlers) OrderPlaced(ctx context.Context, e OrderPlaced) ([]messaging.Raised, error) {
	lines := make([]domain.ShipLine, len(e.Lines))
	for i, l := range e.Lines {
		lines[i] = domain.ShipLine{SKU: l.SKU, Qty: l.Qty}
	}
	return h.shipment(ctx, e.OrderID, func(s *domain.Shipment) { s.Place(e.Customer, lines, h.Now()) })
}

// OrderCancelled stops an order from being dispatched.
func (h *Handlers) OrderCancelled(ctx context.Context, e OrderCancelled) ([]messaging.Raised, error) {
	return h.shipment(ctx, e.OrderID, (*domain.Shipment).Cancel)
}

// LineAllocated records where a line's goods are, and dispatches its order
// when it was the last one missing.
func (h *Handlers) LineAllocated(ctx context.Context, e LineAllocated) ([]messaging.Raised, error) {
	return h.shipment(ctx, e.OrderID, func(s *domain.Shipment) { s.LineAllocated(e.SKU, e.BatchRef, h.Now()) })
}

// LineDeallocated records that a line's goods are no longer in a batch.
func (h *Handlers) LineDeallocated(ctx context.Context, e LineDeallocated) ([]messaging.Raised, error) {
	return h.shipment(ctx, e.OrderID, func(s *domain.Shipment) { s.LineDeallocated(e.SKU, e.BatchRef) })
}

// BatchCreated starts counting a new batch.
func (h *Handlers) BatchCreated(ctx context.Context, e BatchCreated) ([]messaging.Raised, error) {
	return h.batch(ctx, e.Ref, e.SKU, e.Qty)
}

// BatchQuantityChanged follows a batch's quantity.
func (h *Handlers) BatchQuantityChanged(ctx context.Context, e BatchQuantityChanged) ([]messaging.Raised, error) {
	return h.batch(ctx, e.BatchRef, e.SKU, e.Qty)
}

func (h *Handlers) batch(ctx context.Context, ref, sku string, qty int) ([]messaging.Raised, error) {
	return platform.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		b, version, err := docstore.Load[*domain.Batch](ctx, tx, kindBatch, ref)
		if errors.Is(err, docstore.ErrNotFound) {
			b, err = domain.NewBatch(ref, sku), nil
		}
		if err != nil {
			return err
		}
		b.Announced(qty)
		if version == 0 && !b.Changed() { // a new batch of nothing
			return docstore.Save(ctx, tx, kindBatch, ref, 0, sku, b)
		}
		return h.save(ctx, tx, kindBatch, ref, version, sku, b)
	}))
}

// shipment changes the shipment of an order with fn, creating it when the
// warehouse first hears of the order.
func (h *Handlers) shipment(ctx context.Context, orderID string, fn func(*domain.Shipment)) ([]messaging.Raised, error) {
	return platform.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		s, version, err := docstore.Load[*domain.Shipment](ctx, tx, kindShipment, orderID)
		if errors.Is(err, docstore.ErrNotFound) {
			s, err = domain.NewShipment(orderID), nil
		}
		if err != nil {
			return err
		}
		fn(s)
		return h.save(ctx, tx, kindShipment, orderID, version, s.Status(), s)
	}))
}

// save stores an aggregate, if it changed, with the events it raised.
func (h *Handlers) save(ctx context.Context, tx docstore.Tx, kind, id string, version int64, index string, a platform.Aggregate) error {
	return platform.Save(ctx, tx, h.registry, kind, id, version, index, a)
}
