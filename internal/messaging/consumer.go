package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Consumer feeds deliveries from a transport to a bus, as one consumer
// group:
//   - a message that cannot be decoded, or that its handler refuses for good
//     (a Permanent error, or one Consumer.Permanent recognises), goes to the
//     dead letters with its reason, and is acknowledged;
//   - a message whose handler fails otherwise is delivered again, and after
//     MaxAttempts deliveries goes to the dead letters;
//   - each message is handled under the consumer's name, so that units of
//     work skip a message they already handled (the inbox);
//   - a handler (or decoder) that panics fails that attempt like any error
//     (see PanicError): the process goes on, whatever the transport.
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
	// Permanent reports whether a handler's error is the message's fault.
	Permanent func(error) bool
	// Outcome reports whether a handler's error is an outcome rather than a
	// failure (out of stock, say: the events tell whoever sent the
	// message): the message is handled.
	Outcome func(error) bool
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

// Handle handles one delivery; it returns an error only when the message
// must be delivered again.
func (c *Consumer) Handle(ctx context.Context, d Delivery) (err error) {
	if d.ID == "" {
		d.ID = NewID() // a message from outside that carries no id: it starts a flow
	}
	ctx = WithMeta(ctx, metaOf(d.Envelope, c.Name+"/"+d.Channel))
	defer func() {
		if c.Metrics != nil {
			c.Metrics.Consumed(d.Channel, err)
		}
	}()
	var msg any
	err = recovered(func() (err error) { msg, err = c.Registry.Decode(d.Envelope); return err })
	if err != nil {
		return c.deadLetter(ctx, d, fmt.Errorf("undecodable message: %w", err))
	}
	if v, ok := msg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return c.deadLetter(ctx, d, err)
		}
	}
	if c.Bus.IsCommand(msg) {
		_, err = c.Bus.Handle(ctx, msg)
	} else {
		err = c.Bus.dispatchEvents(ctx, []Raised{{Envelope: d.Envelope, Event: msg}}, false)
	}
	switch {
	case err == nil, c.Outcome != nil && c.Outcome(err):
		if d.Attempt > 1 {
			c.failing.Delete(d.ID)
		}
		return nil
	case IsPermanent(err) || (c.Permanent != nil && c.Permanent(err)):
		return c.deadLetter(ctx, d, err)
	case d.Attempt >= c.maxAttempts():
		return c.deadLetter(ctx, d, fmt.Errorf("gave up after %d attempts: %w", d.Attempt, err))
	}
	c.failing.LoadOrStore(d.ID, time.Now().UTC())
	c.Log.WarnContext(ctx, "message failed, will be delivered again", "channel", d.Channel, "message_id", d.ID, "attempt", d.Attempt, "err", err)
	return err
}

func (c *Consumer) maxAttempts() int {
	if c.MaxAttempts > 0 {
		return c.MaxAttempts
	}
	return 5
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
		Attempts:      max(d.Attempt, 1),
		FirstFailedAt: &first,
		FailedAt:      now,
	})
	if err != nil {
		return errors.Join(fmt.Errorf("keeping dead letter: %w", err), reason)
	}
	return nil
}

// storable returns s as text any database keeps: valid UTF-8, without NUL
// bytes (a poison message may be neither).
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
