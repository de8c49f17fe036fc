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
	"github.com/stockflow/stockflow/internal/notifications/domain"
)

// kind is the document kind notifications are kept as, indexed by their
// status.
const kind = "notification"

// Bounds of a list of notifications.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Handlers turns the events the notifications service follows into
// notifications, and answers queries of them.
type Handlers struct {
	store     docstore.Store
	stockTeam []string
	sender    *Sender
	// Now tells the time (tests set it).
	Now func() time.Time
}

// NewHandlers returns the handlers over store. Out-of-stock alerts go to
// stockTeam. The notifications are sent by sender, woken for each; with
// a nil sender (no mail server) they are only recorded.
func NewHandlers(store docstore.Store, stockTeam []string, sender *Sender) *Handlers {
	return &Handlers{store: store, stockTeam: stockTeam, sender: sender, Now: func() time.Time { return time.Now().UTC() }}
}

// Sender returns the sender the handlers wake; nil without a mail server.
func (h *Handlers) Sender() *Sender { return h.sender }

// NewBus wires the handlers to a message bus.
func NewBus(h *Handlers, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus {
	b := messaging.NewBus(log, dispatched)
	messaging.HandleEvent(b, "notifications.out_of_stock", h.OutOfStock)
	messaging.HandleEvent(b, "notifications.customer_became_vip", h.CustomerBecameVIP)
	messaging.HandleEvent(b, "notifications.backorder_filled", h.BackorderFilled)
	return b
}

// Notification returns the notification id.
func (h *Handlers) Notification(ctx context.Context, id string) (*domain.Notification, error) {
	d, err := h.store.Get(ctx, kind, id)
	if errors.Is(err, fail.NotFound) {
		return nil, fail.Errorf(fail.NotFound, "no notification %s", id)
	} else if err != nil {
		return nil, fmt.Errorf("reading notification %s: %w", id, err)
	}
	n, err := docstore.Decode[*domain.Notification]([]docstore.Doc{d})
	if err != nil {
		return nil, err
	}
	return n[0], nil
}

// Notifications lists the latest limit notifications, newest first.
func (h *Handlers) Notifications(ctx context.Context, limit int) ([]*domain.Notification, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, fail.Errorf(fail.Invalid, "limit must be between 1 and %d, got %d", MaxLimit, limit)
	}
	docs, err := h.store.Find(ctx, docstore.Query{Kind: kind, Limit: limit, NewestFirst: true})
	if err != nil {
		return nil, fmt.Errorf("listing notifications: %w", err)
	}
	return docstore.Decode[*domain.Notification](docs)
}

// OutOfStock alerts the stock team that no batch could take a line.
func (h *Handlers) OutOfStock(ctx context.Context, e OutOfStock) ([]messaging.Raised, error) {
	c, err := domain.OutOfStock(e.SKU, e.OrderID, e.Qty, e.UnknownSKU, h.stockTeam)
	if err != nil {
		return nil, err
	}
	return nil, h.record(ctx, c)
}

// CustomerBecameVIP welcomes a new VIP.
func (h *Handlers) CustomerBecameVIP(ctx context.Context, e CustomerBecameVIP) ([]messaging.Raised, error) {
	c, err := domain.VIPWelcome(e.Customer, e.Email, e.Orders)
	if err != nil {
		return nil, err
	}
	return nil, h.record(ctx, c)
}

// BackorderFilled tells a customer that what they waited for is in stock.
func (h *Handlers) BackorderFilled(ctx context.Context, e BackorderFilled) ([]messaging.Raised, error) {
	c, err := domain.BackorderFilled(e.Customer, e.Email, e.OrderID, e.SKU, e.Qty, e.Placed)
	if err != nil {
		return nil, err
	}
	return nil, h.record(ctx, c)
}

// record stores the notification of c about the message ctx carries, and
// wakes the sender if it is to send. Its id is the message's, so that the
// message handled again (past the inbox: after the inbox forgot it, say)
// finds its notification stored already.
func (h *Handlers) record(ctx context.Context, c domain.Content) error {
	msg := messaging.MetaFrom(ctx).MessageID
	id := msg
	if id == "" {
		id = messaging.NewID()
	}
	var n *domain.Notification
	_, err := messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		n = nil
		if _, err := tx.Get(ctx, kind, id); err == nil {
			return nil // stored already
		} else if !errors.Is(err, fail.NotFound) {
			return err
		}
		n = domain.New(id, msg, c, h.sender != nil, h.Now())
		return docstore.Save(ctx, tx, kind, id, 0, n.Status, n)
	}))
	if err != nil {
		return fmt.Errorf("recording the %s notification %s: %w", c.Kind, id, err)
	}
	if n != nil && n.Status == domain.StatusPending {
		h.sender.Wake()
	}
	return nil
}
