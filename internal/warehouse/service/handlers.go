package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
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
	messaging.HandleEvent(b, "warehouse.batch_arrived", h.BatchArrived)
	return b
}

// ReportStock records a worker's report, and announces it on
// stock_reported for the allocation service; it returns the batch. A
// count that finds more than the warehouse reckoned tries the orders held
// for the batch's goods again.
func (h *Handlers) ReportStock(ctx context.Context, c ReportStock) (any, []messaging.Raised, error) {
	if err := valid.Ref("batchref", c.BatchRef); err != nil {
		return nil, nil, err
	}
	var out *domain.Batch
	raised, err := h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		u := h.unit(tx)
		b, err := u.batch(ctx, c.BatchRef)
		if err != nil {
			return err
		}
		if b == nil {
			return fail.Errorf(fail.NotFound, "the warehouse knows no batch %s", c.BatchRef)
		}
		before := b.Qty
		switch c.Kind {
		case domain.ReportCount:
			err = b.Count(c.Qty, c.Note, h.Now())
		case domain.ReportDamage:
			err = b.Damage(c.Qty, c.Note, h.Now())
		default:
			err = fail.Errorf(fail.Invalid, "unknown report %q", c.Kind)
		}
		if err != nil {
			return err
		}
		out = b
		if b.Qty > before {
			if err := u.retryHeld(ctx, b); err != nil {
				return err
			}
		}
		return u.save(ctx)
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
	b, err := get[domain.Batch](ctx, h.store, kindBatch, ref, "the warehouse knows no batch %s")
	if err == nil {
		b.Loaded()
	}
	return b, err
}

func get[T any](ctx context.Context, store docstore.Store, kind, id, notFound string) (*T, error) {
	d, err := store.Get(ctx, kind, id)
	if errors.Is(err, fail.NotFound) {
		return nil, fail.Errorf(fail.NotFound, notFound, id)
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
// are all allocated and on the shelf.
func (h *Handlers) OrderPlaced(ctx context.Context, e OrderPlaced) ([]messaging.Raised, error) {
	lines := make([]domain.ShipLine, len(e.Lines))
	for i, l := range e.Lines {
		lines[i] = domain.ShipLine{SKU: l.SKU, Qty: l.Qty}
	}
	return h.shipment(ctx, e.OrderID, func(s *domain.Shipment) { s.Place(e.Customer, lines) })
}

// OrderCancelled stops an order from being dispatched.
func (h *Handlers) OrderCancelled(ctx context.Context, e OrderCancelled) ([]messaging.Raised, error) {
	return h.shipment(ctx, e.OrderID, (*domain.Shipment).Cancel)
}

// LineAllocated records where a line's goods are, and dispatches its order
// when it was the last one missing.
func (h *Handlers) LineAllocated(ctx context.Context, e LineAllocated) ([]messaging.Raised, error) {
	return h.shipment(ctx, e.OrderID, func(s *domain.Shipment) { s.LineAllocated(e.SKU, e.BatchRef, e.Version) })
}

// LineDeallocated records that a line's goods are no longer in a batch.
func (h *Handlers) LineDeallocated(ctx context.Context, e LineDeallocated) ([]messaging.Raised, error) {
	return h.shipment(ctx, e.OrderID, func(s *domain.Shipment) { s.LineDeallocated(e.SKU, e.BatchRef, e.Version) })
}

// BatchCreated starts following a new batch; one on its way is not on the
// shelf before the day it comes in.
func (h *Handlers) BatchCreated(ctx context.Context, e BatchCreated) ([]messaging.Raised, error) {
	eta, err := e.Arrives()
	if err != nil {
		return nil, err
	}
	return h.announced(ctx, e.Ref, e.SKU, domain.Announcement{Qty: e.Qty, Version: e.Version}, func(b *domain.Batch) { b.Expect(eta, h.Now()) })
}

// BatchArrived tries the orders held for a batch's goods again on the day
// the batch comes in (the warehouse's timer, BatchArrivalDue).
func (h *Handlers) BatchArrived(ctx context.Context, e domain.BatchArrivalDue) ([]messaging.Raised, error) {
	return messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		u := h.unit(tx)
		b, err := u.batch(ctx, e.BatchRef)
		if err != nil || b == nil {
			return err
		}
		if err := u.retryHeld(ctx, b); err != nil {
			return err
		}
		return u.save(ctx)
	}))
}

// BatchQuantityChanged follows a batch's quantity.
func (h *Handlers) BatchQuantityChanged(ctx context.Context, e BatchQuantityChanged) ([]messaging.Raised, error) {
	return h.announced(ctx, e.BatchRef, e.SKU, domain.Announcement{Qty: e.Qty, Dispatched: e.Dispatched, ReportSeq: e.ReportSeq, Version: e.Version})
}

// announced records the allocation service's announcement of a batch, and
// tries the orders held for its goods again when it has more of them;
// also, when given, are applied to the batch first.
func (h *Handlers) announced(ctx context.Context, ref, sku string, a domain.Announcement, also ...func(*domain.Batch)) ([]messaging.Raised, error) {
	return messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		u := h.unit(tx)
		b, err := u.batch(ctx, ref)
		if err != nil {
			return err
		}
		if b == nil {
			b = u.newBatch(ref, sku)
		}
		for _, f := range also {
			f(b)
		}
		if b.Announce(a) {
			if err := u.retryHeld(ctx, b); err != nil {
				return err
			}
		}
		return u.save(ctx)
	}))
}

// shipment changes the shipment of an order with fn, creating it when the
// warehouse first hears of the order, and dispatches it if it is ready.
func (h *Handlers) shipment(ctx context.Context, orderID string, fn func(*domain.Shipment)) ([]messaging.Raised, error) {
	return messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		u := h.unit(tx)
		s, err := u.shipment(ctx, orderID)
		if err != nil {
			return err
		}
		fn(s)
		if err := u.dispatch(ctx, s); err != nil {
			return err
		}
		return u.save(ctx)
	}))
}

// unitOfWork is the shipments and batches one transaction loaded, each
// once, saved together at the end.
type unitOfWork struct {
	h         *Handlers
	tx        docstore.Tx
	shipments map[string]*loaded[*domain.Shipment]
	batches   map[string]*loaded[*domain.Batch]
	order     []func(context.Context) error // saves, in the order loaded
}

type loaded[T docstore.Aggregate] struct {
	v       T
	version int64
}

func (h *Handlers) unit(tx docstore.Tx) *unitOfWork {
	return &unitOfWork{h: h, tx: tx, shipments: map[string]*loaded[*domain.Shipment]{}, batches: map[string]*loaded[*domain.Batch]{}}
}

// shipment loads the shipment of orderID, or a new one.
func (u *unitOfWork) shipment(ctx context.Context, orderID string) (*domain.Shipment, error) {
	if l, ok := u.shipments[orderID]; ok {
		return l.v, nil
	}
	s, version, err := docstore.Load[*domain.Shipment](ctx, u.tx, kindShipment, orderID)
	if errors.Is(err, fail.NotFound) {
		s, err = domain.NewShipment(orderID), nil
	}
	if err != nil {
		return nil, err
	}
	l := &loaded[*domain.Shipment]{s, version}
	u.shipments[orderID] = l
	u.order = append(u.order, func(ctx context.Context) error {
		return u.h.save(ctx, u.tx, kindShipment, orderID, l.version, l.v.Status(), l.v)
	})
	return s, nil
}

// batch loads the batch ref; nil when the warehouse has not heard of it.
func (u *unitOfWork) batch(ctx context.Context, ref string) (*domain.Batch, error) {
	if l, ok := u.batches[ref]; ok {
		return l.v, nil
	}
	b, version, err := docstore.Load[*domain.Batch](ctx, u.tx, kindBatch, ref)
	if errors.Is(err, fail.NotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	b.Loaded()
	u.keepBatch(b, version)
	return b, nil
}

// newBatch starts a batch the warehouse hears of for the first time.
func (u *unitOfWork) newBatch(ref, sku string) *domain.Batch {
	b := domain.NewBatch(ref, sku)
	u.keepBatch(b, 0)
	return b
}

func (u *unitOfWork) keepBatch(b *domain.Batch, version int64) {
	l := &loaded[*domain.Batch]{b, version}
	u.batches[b.Ref] = l
	u.order = append(u.order, func(ctx context.Context) error {
		if l.version == 0 && !l.v.Changed() { // a new batch of nothing
			return docstore.Save(ctx, u.tx, kindBatch, l.v.Ref, 0, l.v.SKU, l.v)
		}
		return u.h.save(ctx, u.tx, kindBatch, l.v.Ref, l.version, l.v.SKU, l.v)
	})
}

// dispatch ships s if it is ready and its goods are on the shelf (see
// domain.Shipment.Dispatch).
func (u *unitOfWork) dispatch(ctx context.Context, s *domain.Shipment) error {
	lines := s.Ready()
	if lines == nil {
		return nil
	}
	batches := make(map[string]*domain.Batch, len(lines))
	for _, l := range lines {
		b, err := u.batch(ctx, l.BatchRef)
		if err != nil {
			return err
		}
		if b == nil { // allocated before the warehouse heard of the batch
			b = u.newBatch(l.BatchRef, l.SKU)
		}
		batches[l.BatchRef] = b
	}
	s.Dispatch(batches, u.h.Now())
	return nil
}

// retryHeld tries again to dispatch the orders b held.
func (u *unitOfWork) retryHeld(ctx context.Context, b *domain.Batch) error {
	for _, id := range b.TakeHeld() {
		s, err := u.shipment(ctx, id)
		if err != nil {
			return err
		}
		if err := u.dispatch(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// save stores what the unit of work loaded and changed, with the events
// each raised.
func (u *unitOfWork) save(ctx context.Context) error {
	for _, save := range u.order {
		if err := save(ctx); err != nil {
			return err
		}
	}
	return nil
}

// save stores an aggregate, if it changed, with the events it raised.
func (h *Handlers) save(ctx context.Context, tx docstore.Tx, kind, id string, version int64, index string, a docstore.Aggregate) error {
	return docstore.SaveAggregate(ctx, tx, h.registry, kind, id, version, index, a)
}
