package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// Consumer feeds deliveries from a transport to a bus, as one consumer
// group. Whatever the transport, each delivery goes through the same
// pipeline of small steps (Handle):
//
//	observe     log and count how the message ended (metrics)
//	settle      dead-letter it, or ask the transport to hand it again
//	recovered   a panic is a failed attempt like any error (PanicError)
//	dispatch    decode, validate, hand to the bus under the consumer's name
//
// settle decides with the error taxonomy: nil or an outcome
// (fail.IsSettled: out of stock, told by the events raised) is handled; an
// error no retry mends (IsPermanent: an undecodable or invalid message, one
// naming what does not exist, a conflict) goes to the dead letters at once;
// any other is retried, the transport handing the message again after the
// Backoff's delay (Redeliver), and dead-lettered after MaxAttempts. A
// dead letter is acknowledged only once it is kept. The units of work skip
// a message the consumer already handled (the inbox).
//
// Commands go to Bus.Handle, events to Bus.Dispatch's handlers.
type Consumer struct {
	// Name is the consumer group, and names the inbox entries: "allocation".
	Name        string
	Registry    *Registry
	Bus         *Bus
	DeadLetters DeadLetters
	Log         *slog.Logger
	// MaxAttempts bounds the deliveries of a failing message (default 5).
	MaxAttempts int
	// Backoff spaces the deliveries of a failing message (default
	// DefaultBackoff).
	Backoff Backoff
	Metrics ConsumerMetrics

	failing sync.Map // message id -> when it first failed, while it is retried
}

// ConsumerMetrics observes a consumer.
type ConsumerMetrics interface {
	Consumed(channel string, err error)
	DeadLettered(channel string)
}

// Run subscribes to the registered channels that carry messages the bus
// handles, until ctx is done.
func (c *Consumer) Run(ctx context.Context, sub Subscriber, channels ...string) error {
	return sub.Subscribe(ctx, c.Name, channels, c.Handle)
}

// Handle handles one delivery through the pipeline; it returns an error
// only when the message must be delivered again (see Redeliver).
func (c *Consumer) Handle(ctx context.Context, d Delivery) error {
	if d.ID == "" {
		d.ID = NewID() // a message from outside that carries no id: it starts a flow
	}
	m := metaOf(d.Envelope, c.Name+"/"+d.Channel)
	m.Receipts = c.Bus.receipts
	ctx = WithMeta(ctx, m)
	return c.observe(ctx, d, c.settle(ctx, d, recovered(func() error { return c.dispatch(ctx, d) })))
}

// dispatch decodes the message, checks it and hands it to the bus.
func (c *Consumer) dispatch(ctx context.Context, d Delivery) error {
	msg, err := c.Registry.Decode(d.Envelope)
	if err != nil {
		return Permanent(fmt.Errorf("undecodable message: %w", err))
	}
	if v, ok := msg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return Permanent(err)
		}
	}
	if c.Bus.IsCommand(msg) {
		_, err = c.Bus.Handle(ctx, msg)
		return err
	}
	return c.Bus.dispatchEvents(ctx, []Raised{{Envelope: d.Envelope, Event: msg}}, false)
}

// settle turns the handler's error into the delivery's end: nil when the
// message is handled or kept as a dead letter, a Redeliver error when the
// transport must hand it again.
func (c *Consumer) settle(ctx context.Context, d Delivery, err error) error {
	switch {
	case err == nil, fail.IsSettled(err):
		if d.Attempt > 1 {
			c.failing.Delete(d.ID)
		}
		return nil
	case IsPermanent(err):
		return c.deadLetter(ctx, d, err)
	case d.Attempt >= c.maxAttempts():
		return c.deadLetter(ctx, d, fmt.Errorf("gave up after %d attempts: %w", d.Attempt, err))
	}
	c.failing.LoadOrStore(d.ID, time.Now().UTC())
	return Redeliver(err, c.backoff().Delay(d.Attempt))
}

// observe logs and counts how the delivery ended.
func (c *Consumer) observe(ctx context.Context, d Delivery, err error) error {
	switch {
	case stopping(ctx, err):
		c.Log.InfoContext(ctx, "stopped while handling a message; it will be delivered again", "channel", d.Channel, "message_id", d.ID)
	case err != nil:
		c.Log.WarnContext(ctx, "message failed, will be delivered again", "channel", d.Channel, "message_id", d.ID,
			"attempt", d.Attempt, "retry_in_ms", RedeliveryDelay(err, d.Attempt, Backoff{}).Milliseconds(), "err", err)
	}
	if c.Metrics != nil {
		c.Metrics.Consumed(d.Channel, err)
	}
	return err
}

func (c *Consumer) maxAttempts() int {
	if c.MaxAttempts > 0 {
		return c.MaxAttempts
	}
	return 5
}

func (c *Consumer) backoff() Backoff {
	if c.Backoff.Initial > 0 {
		return c.Backoff
	}
	return DefaultBackoff
}

// deadLetter keeps d with reason; the message is acknowledged only once it
// is kept.
func (c *Consumer) deadLetter(ctx context.Context, d Delivery, reason error) error {
	c.Log.WarnContext(ctx, "message dead-lettered", "channel", d.Channel, "message_id", d.ID, "reason", reason.Error())
	if c.Metrics != nil {
		c.Metrics.DeadLettered(d.Channel)
	}
	now := time.Now().UTC()
	first := now
	if at, ok := c.failing.LoadAndDelete(d.ID); ok {
		first = at.(time.Time)
	}
	var occurred *time.Time
	if !d.OccurredAt.IsZero() {
		at := d.OccurredAt.UTC()
		occurred = &at
	}
	err := c.DeadLetters.AddDeadLetter(context.WithoutCancel(ctx), DeadLetter{
		Consumer:      c.Name,
		Channel:       d.Channel,
		MessageID:     d.ID,
		Key:           d.Key,
		CorrelationID: d.CorrelationID,
		CausationID:   d.CausationID,
		OccurredAt:    occurred,
		Payload:       storable(string(d.Payload)),
		Reason:        storable(reason.Error()),
		Fingerprint:   storable(FingerprintOf(reason)),
		Attempts:      max(d.Attempt, 1),
		FirstFailedAt: &first,
		FailedAt:      now,
	})
	if err != nil {
		return Redeliver(errors.Join(fmt.Errorf("keeping dead letter: %w", err), reason), c.backoff().Delay(d.Attempt))
	}
	return nil
}

// storable returns s as text any database keeps: valid UTF-8, without NUL
// bytes (a poison message may be neither).
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Redrive hands the dead letter d to the pipeline again, in this process,
// as the message it was (its id, key, correlation and causation): the
// transport is not asked, so no other consumer group sees it again. It
// is one attempt: a failure (but an outcome) keeps it again as a dead
// letter, the same one, its failures raised, and is returned.
func (c *Consumer) Redrive(ctx context.Context, dl DeadLetter) error {
	d := Delivery{Envelope: Envelope{ID: dl.MessageID, Channel: dl.Channel, Key: dl.Key, CorrelationID: dl.CorrelationID,
		CausationID: dl.CausationID, Payload: []byte(dl.Payload)}, Attempt: 1}
	if dl.OccurredAt != nil {
		d.OccurredAt = *dl.OccurredAt
	}
	if d.ID == "" {
		return fail.Errorf(fail.Invalid, "dead letter %d keeps no message id: it cannot be sent again as the message it was", dl.ID)
	}
	m := metaOf(d.Envelope, c.Name+"/"+d.Channel)
	m.Receipts = c.Bus.receipts
	ctx = WithMeta(ctx, m)
	err := recovered(func() error { return c.dispatch(ctx, d) })
	if c.Metrics != nil {
		c.Metrics.Consumed(d.Channel, err)
	}
	if err == nil || fail.IsSettled(err) {
		return nil
	}
	if kept := c.deadLetter(ctx, d, err); kept != nil {
		return errors.Join(err, kept)
	}
	return err
}
