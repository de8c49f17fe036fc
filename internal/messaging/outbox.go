package messaging

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Outbox is the transactional outbox as the relay sees it: messages stored
// in the transaction that raised them, waiting to be published.
type Outbox interface {
	// Unpublished returns up to limit messages not yet published, oldest
	// first. A store that several processes share hands them to one relay
	// at a time.
	Unpublished(ctx context.Context, limit int) ([]Envelope, error)
	// MarkPublished records that the messages were published.
	MarkPublished(ctx context.Context, ids []string) error
}

// Scheduler is an outbox that keeps durable timers (Envelope.DeliverAt)
// apart until they are due.
type Scheduler interface {
	// PromoteDue moves up to limit timers due at now into the outbox, to
	// be published like any message (not dispatched locally), and reports
	// how many it moved.
	PromoteDue(ctx context.Context, now time.Time, limit int) (int, error)
	// Scheduled counts the timers not yet due.
	Scheduled(ctx context.Context) (int, error)
}

// RelayMetrics observes a relay.
type RelayMetrics interface {
	Relayed(n int, oldest time.Time)
	RelayFailed()
}

// Relay hands outbox messages to a publisher, oldest first, until they are
// taken. When the publisher fails it keeps the messages and tries again
// with backoff, so a broker outage delays messages and loses none.
type Relay struct {
	Outbox    Outbox
	Publisher Publisher
	Log       *slog.Logger
	Metrics   RelayMetrics
	// Batch is how many messages one round publishes (default 256).
	Batch int
	// Poll is how long the relay sleeps when nothing woke it (default 1s).
	Poll time.Duration
	// MaxBackoff caps the wait between failed rounds (default 5s).
	MaxBackoff time.Duration
	// Linger is how long the relay lets messages gather after a round
	// that published some, so that under load each round publishes many
	// (default 5ms).
	Linger time.Duration

	wake     chan struct{}
	promoted time.Time // when the relay last looked for due timers
}

// NewRelay returns a relay from outbox to pub.
func NewRelay(outbox Outbox, pub Publisher, log *slog.Logger) *Relay {
	return &Relay{Outbox: outbox, Publisher: pub, Log: log, wake: make(chan struct{}, 1)}
}

// Notify wakes the relay: new messages are waiting.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is done.
func (r *Relay) Run(ctx context.Context) error {
	batch, poll, maxBackoff := r.Batch, r.Poll, r.MaxBackoff
	if batch <= 0 {
		batch = 256
	}
	if poll <= 0 {
		poll = time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	linger := r.Linger
	if linger <= 0 {
		linger = 5 * time.Millisecond
	}
	backoff := time.Duration(0)
	for {
		n, err := r.round(ctx, batch)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			// One warning when publishing starts failing, one line when it
			// works again; the retries between are debug lines.
			level := slog.LevelDebug
			if backoff == 0 {
				level = slog.LevelWarn
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), maxBackoff)
			if r.Metrics != nil {
				r.Metrics.RelayFailed()
			}
			r.Log.Log(ctx, level, "relay: publishing failed, will retry", "err", err, "retry_in_ms", backoff.Milliseconds())
			if !sleep(ctx, backoff, nil) {
				return ctx.Err()
			}
			continue
		}
		if backoff > 0 {
			r.Log.InfoContext(ctx, "relay: publishing again")
			backoff = 0
		}
		switch {
		case n == batch:
			continue // more waiting
		case n > 0:
			if !sleep(ctx, linger, nil) {
				return ctx.Err()
			}
		default:
			if !sleep(ctx, poll, r.wake) {
				return ctx.Err()
			}
		}
	}
}

func (r *Relay) round(ctx context.Context, limit int) (int, error) {
	if err := r.promoteDue(ctx, limit); err != nil {
		return 0, err
	}
	msgs, err := r.Outbox.Unpublished(ctx, limit)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	if err := r.Publisher.Publish(ctx, msgs...); err != nil {
		return 0, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if err := r.Outbox.MarkPublished(context.WithoutCancel(ctx), ids); err != nil {
		return 0, err
	}
	if r.Metrics != nil {
		r.Metrics.Relayed(len(msgs), msgs[0].OccurredAt)
	}
	return len(msgs), nil
}

// promoteInterval spaces the relay's looks for due timers: a timer is
// published within a second of being due, and a busy relay's rounds (every
// few milliseconds) do not each pay for a look.
const promoteInterval = 200 * time.Millisecond

// promoteDue moves the timers now due into the outbox, when the outbox
// keeps timers and the last look is promoteInterval old.
func (r *Relay) promoteDue(ctx context.Context, limit int) error {
	s, ok := r.Outbox.(interface {
		PromoteDue(ctx context.Context, now time.Time, limit int) (int, error)
	})
	now := time.Now()
	if !ok || now.Sub(r.promoted) < promoteInterval {
		return nil
	}
	if _, err := s.PromoteDue(ctx, now, limit); err != nil {
		return fmt.Errorf("promoting due timers: %w", err)
	}
	r.promoted = now
	return nil
}

// sleep waits d, or until wake fires; it reports false when ctx is done.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}
