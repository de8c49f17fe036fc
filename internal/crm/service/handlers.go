package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/stockflow/stockflow/internal/crm/domain"
	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// kind is the document kind customers are kept as.
const kind = "customer"

// Segments of customers, which the documents are indexed by (and
// Customers lists).
const (
	SegmentAll     = ""
	SegmentVIP     = "vip"
	SegmentRegular = "regular"
)

// Bounds of a list of customers.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// segmentOf returns the segment of c, the index of their document.
func segmentOf(c *domain.Customer) string {
	if c.VIP {
		return SegmentVIP
	}
	return SegmentRegular
}

// Handlers handles the events the CRM service follows, and answers
// queries of its customers.
type Handlers struct {
	store    docstore.Store
	registry *messaging.Registry
}

// NewHandlers returns the handlers over store.
func NewHandlers(store docstore.Store, registry *messaging.Registry) *Handlers {
	return &Handlers{store: store, registry: registry}
}

// NewBus wires the handlers to a message bus.
func NewBus(h *Handlers, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus {
	b := messaging.NewBus(log, dispatched)
	messaging.HandleEvent(b, "crm.order_placed", h.OrderPlaced)
	messaging.HandleEvent(b, "crm.order_status_changed", h.OrderStatusChanged)
	return b
}

// Customer returns the customer id.
func (h *Handlers) Customer(ctx context.Context, id string) (*domain.Customer, error) {
	d, err := h.store.Get(ctx, kind, id)
	if errors.Is(err, fail.NotFound) {
		return nil, fail.Errorf(fail.NotFound, "no customer %s", id)
	} else if err != nil {
		return nil, fmt.Errorf("reading customer %s: %w", id, err)
	}
	c, err := docstore.Decode[*domain.Customer]([]docstore.Doc{d})
	if err != nil {
		return nil, err
	}
	return c[0], nil
}

// Customers lists up to limit customers of segment (SegmentAll, SegmentVIP
// or SegmentRegular), by id.
func (h *Handlers) Customers(ctx context.Context, segment string, limit int) ([]*domain.Customer, error) {
	switch {
	case segment != SegmentAll && segment != SegmentVIP && segment != SegmentRegular:
		return nil, fail.Errorf(fail.Invalid, "no segment of customers %q", segment)
	case limit < 1 || limit > MaxLimit:
		return nil, fail.Errorf(fail.Invalid, "limit must be between 1 and %d, got %d", MaxLimit, limit)
	}
	docs, err := h.store.Find(ctx, docstore.Query{Kind: kind, Index: segment, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("listing customers: %w", err)
	}
	return docstore.Decode[*domain.Customer](docs)
}

// OrderPlaced follows a customer's placing an order; their third makes
// them a VIP.
func (h *Handlers) OrderPlaced(ctx context.Context, e OrderPlaced) ([]messaging.Raised, error) {
	lines := make([]domain.Line, len(e.Lines))
	for i, l := range e.Lines {
		lines[i] = domain.Line(l)
	}
	p := domain.Placement{OrderID: e.OrderID, Email: e.Email, Lines: lines, PlacedAt: e.PlacedAt}
	return h.change(ctx, e.Customer, func(c *domain.Customer) error { return c.OrderPlaced(p) })
}

// OrderStatusChanged follows an entry of the history of a customer's order.
func (h *Handlers) OrderStatusChanged(ctx context.Context, e OrderStatusChanged) ([]messaging.Raised, error) {
	entry := domain.Entry{Seq: e.Seq, At: e.At, Event: e.Event, Detail: e.Detail, Status: e.Status}
	return h.change(ctx, e.Customer, func(c *domain.Customer) error { return c.StatusChanged(e.OrderID, entry) })
}

// change applies fn to the customer id, new or stored, and stores them.
func (h *Handlers) change(ctx context.Context, id string, fn func(*domain.Customer) error) ([]messaging.Raised, error) {
	raised, err := messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		c, version, err := docstore.Load[*domain.Customer](ctx, tx, kind, id)
		if errors.Is(err, fail.NotFound) {
			c, err = domain.NewCustomer(id)
		}
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		return h.save(ctx, tx, c, version)
	}))
	if err != nil {
		return nil, fmt.Errorf("customer %s: %w", id, err)
	}
	return raised, nil
}

// save stores the customer, if they changed, with the events they raised.
func (h *Handlers) save(ctx context.Context, tx docstore.Tx, c *domain.Customer, version int64) error {
	if !c.Changed() {
		return nil
	}
	if err := docstore.Save(ctx, tx, kind, c.ID, version, segmentOf(c), c); err != nil {
		return err
	}
	for _, ev := range c.Events() {
		env, err := h.registry.Envelope(ctx, ev)
		if err != nil {
			return err
		}
		tx.Raise(messaging.Raised{Envelope: env, Event: ev})
	}
	return nil
}
