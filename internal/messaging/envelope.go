package messaging

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Envelope is a message as it is stored and transported: a payload on a
// channel, with the ids that tie it to the flow it belongs to.
type Envelope struct {
	// ID identifies the message; a redelivered message keeps it.
	ID string
	// Channel names the kind of message, and where it travels
	// ("line_allocated", "change_batch_quantity").
	Channel string
	// Key orders messages: those with the same key are delivered in the
	// order they were raised (the sku, for allocation messages).
	Key string
	// CorrelationID is shared by every message of one flow; the message that
	// starts a flow (an HTTP request, a message from outside) gives its own.
	CorrelationID string
	// CausationID is the id of the message whose handling raised this one.
	CausationID string
	// OccurredAt is when the message was raised.
	OccurredAt time.Time
	// Payload is the message body, a JSON object.
	Payload json.RawMessage
	// DeliverAt, when set and later than the commit, makes the message a
	// durable timer: it waits in the store (not on the broker) until then,
	// and is published when due, to whoever consumes its channel; the
	// service's own bus does not dispatch it locally. It does not travel
	// on the wire.
	DeliverAt time.Time
	// Dispatched stores the message as dispatched already: no local handler
	// is to handle it (a receipt, a dead letter); it is only published. It
	// does not travel on the wire.
	Dispatched bool
}

// DeliverAt returns r scheduled for at: a durable timer (see
// Envelope.DeliverAt).
func DeliverAt(r Raised, at time.Time) Raised {
	r.Envelope.DeliverAt = at.UTC()
	return r
}

// DeliverAfter returns r scheduled for d from now (see DeliverAt).
func DeliverAfter(r Raised, d time.Duration) Raised { return DeliverAt(r, time.Now().Add(d)) }

// Scheduled reports whether e is a timer not yet due at now.
func (e Envelope) Scheduled(now time.Time) bool {
	return !e.DeliverAt.IsZero() && e.DeliverAt.After(now)
}

// NewID returns a new message id: a UUID version 7, so that ids sort by the
// time they were made. Its 74 random bits come from math/rand/v2's
// ChaCha8 source: unpredictable enough for an id, and no system call.
func NewID() string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], nextStamp())
	binary.BigEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x70
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// lastStamp is the time and sequence of the latest id: the unix
// milliseconds in its top 48 bits, a counter in its low 12 (the UUID's
// version takes the 4 between).
var lastStamp atomic.Uint64

// nextStamp returns the first 8 bytes of a new id, greater than the
// process's previous one: ids made in the same millisecond sort in the
// order they were made (RFC 9562's method 1, a counter in rand_a).
func nextStamp() uint64 {
	for {
		last := lastStamp.Load()
		next := uint64(time.Now().UnixMilli()) << 16
		if next <= last {
			next = last + 1
			if next&0x0fff == 0 { // the counter ran out: borrow the next millisecond
				next = (next>>16 + 1) << 16
			}
		}
		if lastStamp.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Meta is what a context knows of the message being handled.
type Meta struct {
	MessageID     string
	CorrelationID string
	CausationID   string
	// Channel is the message's channel, when it came in on one; Key and
	// OccurredAt are its envelope's.
	Channel    string
	Key        string
	OccurredAt time.Time
	// Consumer names the handler that is handling the message, when it must
	// handle each message once: a unit of work records (Consumer, MessageID)
	// in its transaction and skips a message it already recorded.
	Consumer string
	// Replayed is true when the message will be handed again if its
	// handling is lost (an event kept in the outbox until dispatched, a
	// broker delivery until acknowledged): a unit of work that stores no
	// new messages then need not wait for the disk at commit.
	Replayed bool
	// Receipts: the handling records a receipt of the message (see
	// Receipt), when Consumer names it.
	Receipts bool
}

type metaKey struct{}

// WithMeta returns ctx carrying m.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// MetaFrom returns the meta ctx carries, or the zero Meta.
func MetaFrom(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey{}).(Meta)
	return m
}

// StartFlow returns ctx carrying a message id, and a correlation id that is
// correlationID when given, else the message id: the start of a flow.
func StartFlow(ctx context.Context, correlationID string) context.Context {
	id := NewID()
	if correlationID == "" {
		correlationID = id
	}
	return WithMeta(ctx, Meta{MessageID: id, CorrelationID: correlationID})
}

// metaOf returns the meta of a context handling env, for consumer.
func metaOf(env Envelope, consumer string) Meta {
	corr := env.CorrelationID
	if corr == "" {
		corr = env.ID
	}
	return Meta{MessageID: env.ID, CorrelationID: corr, CausationID: env.CausationID, Channel: env.Channel, Key: env.Key,
		OccurredAt: env.OccurredAt, Consumer: consumer}
}
