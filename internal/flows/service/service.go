// Package service is the flows service layer: it follows every channel,
// the receipts and the dead letters as its own consumer group, keeps the
// journal in its store, and answers traces.
package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/valid"
)

// Store keeps the journal. Every write is idempotent: a message or a
// handling recorded again changes nothing, so that the flows service needs
// no inbox.
type Store interface {
	// RecordMessage keeps m, unless it is kept already.
	RecordMessage(ctx context.Context, m domain.Message) error
	// RecordHandling keeps h, unless it is kept already.
	RecordHandling(ctx context.Context, h domain.Handling) error
	// Messages returns the messages q selects, oldest first, and their
	// handlings.
	Messages(ctx context.Context, q Query) ([]domain.Message, []domain.Handling, error)
	// Recent returns the flows q selects, the latest active first.
	Recent(ctx context.Context, q RecentQuery) ([]domain.Flow, error)
	// Traffic returns what went over each channel since a time, by
	// producer and consuming service.
	Traffic(ctx context.Context, since time.Time) ([]domain.Traffic, error)
	// Latest returns the message of channel seen last; nil when the
	// journal has none.
	Latest(ctx context.Context, channel string) (*domain.Message, error)
	// Prune forgets the messages seen before, and their handlings; it
	// returns how many messages it forgot.
	Prune(ctx context.Context, before time.Time) (int, error)
}

// Query selects the flows a trace shows: those of a message, of a
// correlation id, or every flow a message of an order, a customer, a sku
// or a batch took part in (a damage report on an order's batch starts a
// flow of its own, which moves the order's line). Exactly one is set.
type Query struct {
	Message, Correlation, Order, Customer, SKU, Batch string
	// Limit bounds the messages returned, the earliest kept.
	Limit int
}

// DefaultLimit bounds a trace's messages when the query names no limit.
const DefaultLimit = 1000

// Validate reports what is wrong with q.
func (q Query) Validate() error {
	n := 0
	for _, v := range []string{q.Message, q.Correlation, q.Order, q.Customer, q.SKU, q.Batch} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fail.Errorf(fail.Invalid, "name exactly one of message, correlation, order, customer, sku or batch")
	}
	for field, v := range map[string]string{"message": q.Message, "correlation": q.Correlation, "order": q.Order,
		"customer": q.Customer, "sku": q.SKU, "batch": q.Batch} {
		if v != "" {
			if err := valid.Ref(field, v); err != nil {
				return err
			}
		}
	}
	if q.Limit < 0 || q.Limit > 10_000 {
		return fail.Errorf(fail.Invalid, "limit must be between 1 and 10000, got %d", q.Limit)
	}
	return nil
}

// Observed is a message of any channel, as the flows service reads it:
// its payload, whatever it holds (a message no service could read is
// journaled too).
type Observed struct{ Payload json.RawMessage }

// Handlers records what the flows service follows, and answers traces.
type Handlers struct {
	store Store
	// producers names the service that raises the messages of each channel.
	producers map[string]string
	// contract is what the service map checks the journal against; nil
	// for none.
	contract *Contract
}

// NewHandlers returns the handlers over store; producers names the
// service that raises each channel's messages, and doc, when not nil, is
// the contract the service map checks what runs against.
func NewHandlers(store Store, producers map[string]string, doc *Contract) *Handlers {
	return &Handlers{store: store, producers: producers, contract: doc}
}

// NewBus wires the handlers to a message bus. Every handler is
// idempotent: the journal's writes are.
func NewBus(h *Handlers, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus {
	b := messaging.NewBus(log, dispatched)
	messaging.HandleIdempotentEvent(b, "flows.message", h.Message)
	messaging.HandleIdempotentEvent(b, "flows.receipt", h.Receipt)
	messaging.HandleIdempotentEvent(b, "flows.dead_letter", h.DeadLetter)
	return b
}

// Message journals a message of any channel.
func (h *Handlers) Message(ctx context.Context, o Observed) ([]messaging.Raised, error) {
	m := messaging.MetaFrom(ctx)
	return nil, h.store.RecordMessage(ctx, domain.Message{
		ID: m.MessageID, Channel: m.Channel, Key: m.Key, CorrelationID: m.CorrelationID, CausationID: m.CausationID,
		OccurredAt: m.OccurredAt.UTC(), Payload: asJSON(o.Payload), Producer: h.producers[m.Channel], Keys: domain.KeysOf(o.Payload),
	})
}

// asJSON returns payload, or, when it is not JSON (a broker delivers any
// bytes), the JSON string of it: a trace is JSON.
func asJSON(payload []byte) json.RawMessage {
	if json.Valid(payload) {
		return payload
	}
	b, _ := json.Marshal(string(payload))
	return b
}

// Receipt journals what a handler did with a message.
func (h *Handlers) Receipt(ctx context.Context, r messaging.Receipt) ([]messaging.Raised, error) {
	h2 := domain.Handling{
		MessageID: r.MessageID, Service: domain.ServiceOf(r.Handler), Handler: r.Handler, Outcome: r.Outcome,
		At: r.At.UTC(), DurationMS: r.DurationMS, Raised: r.Raised,
	}
	for _, t := range r.Timers {
		h2.Timers = append(h2.Timers, domain.Timer{ID: t.ID, Channel: t.Channel, DueAt: t.DueAt.UTC()})
	}
	return nil, h.store.RecordHandling(ctx, h2)
}

// DeadLetter journals a message a service gave up on, with the reason,
// and the message itself (it may have come from outside, unreadable).
func (h *Handlers) DeadLetter(ctx context.Context, d messaging.DeadLetter) ([]messaging.Raised, error) {
	if d.MessageID == "" {
		return nil, nil
	}
	m := domain.Message{ID: d.MessageID, Channel: d.Channel, Key: d.Key, CorrelationID: d.CorrelationID, CausationID: d.CausationID,
		Payload: asJSON([]byte(d.Payload)), Producer: h.producers[d.Channel], Keys: domain.KeysOf([]byte(d.Payload))}
	if d.OccurredAt != nil {
		m.OccurredAt = d.OccurredAt.UTC()
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.ID
	}
	if err := h.store.RecordMessage(ctx, m); err != nil {
		return nil, err
	}
	return nil, h.store.RecordHandling(ctx, domain.Handling{
		MessageID: d.MessageID, Service: domain.ServiceOf(d.Consumer), Handler: d.Consumer, Outcome: domain.DeadLettered,
		At: d.FailedAt.UTC(), Reason: d.Reason, Attempts: d.Attempts,
	})
}

// Trace returns the causal tree of the flows q selects; fail.NotFound
// when the journal has none.
func (h *Handlers) Trace(ctx context.Context, q Query) ([]*domain.Node, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	msgs, hs, err := h.store.Messages(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("reading the journal: %w", err)
	}
	if len(msgs) == 0 {
		return nil, fail.Errorf(fail.NotFound, "No flow of %s in the journal", q.describe())
	}
	return domain.Tree(msgs, hs), nil
}

func (q Query) describe() string {
	switch {
	case q.Message != "":
		return "message " + q.Message
	case q.Correlation != "":
		return "correlation " + q.Correlation
	case q.Order != "":
		return "order " + q.Order
	case q.Customer != "":
		return "customer " + q.Customer
	case q.SKU != "":
		return "sku " + q.SKU
	}
	return "batch " + q.Batch
}

// RecentQuery selects recent flows: every flow, or those a message of
// which has Match as its id, correlation id, order, customer, sku or
// batch.
type RecentQuery struct {
	Match string
	// Limit bounds the flows returned (DefaultRecent if zero).
	Limit int
}

// DefaultRecent and MaxRecent bound the flows Recent returns.
const (
	DefaultRecent = 20
	MaxRecent     = 200
)

// Validate reports what is wrong with q.
func (q RecentQuery) Validate() error {
	if q.Match != "" {
		if err := valid.Ref("match", q.Match); err != nil {
			return err
		}
	}
	if q.Limit < 0 || q.Limit > MaxRecent {
		return fail.Errorf(fail.Invalid, "limit must be between 1 and %d, got %d", MaxRecent, q.Limit)
	}
	return nil
}

// Recent returns the flows q selects, the latest active first; an empty
// list when none is journaled.
func (h *Handlers) Recent(ctx context.Context, q RecentQuery) ([]domain.Flow, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = DefaultRecent
	}
	flows, err := h.store.Recent(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("reading the journal: %w", err)
	}
	if flows == nil {
		flows = []domain.Flow{}
	}
	return flows, nil
}

// Registry returns the registry of what the flows service consumes: every
// channel of channels as Observed, the receipts and the dead letters.
func Registry(channels []string) *messaging.Registry {
	r := messaging.NewRegistry()
	observed := func(b json.RawMessage) (Observed, error) { return Observed{Payload: b}, nil }
	for _, c := range channels {
		messaging.Register(r, c, func(Observed) string { return "" }, observed)
	}
	messaging.Register(r, messaging.ChannelReceipts, func(r messaging.Receipt) string { return r.MessageID }, nil)
	messaging.Register(r, messaging.DeadLetterChannel, func(d messaging.DeadLetter) string { return d.Channel }, nil)
	return r
}
