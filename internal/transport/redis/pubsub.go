// Package redis carries messages over Redis. PubSub is the book's transport
// (chapter 11): channels named after the messages, JSON bodies, at most once
// (a subscriber that is away misses what was published meanwhile).
package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/messaging"
)

// PubSub is the Redis pub/sub transport. A message travels as its JSON
// payload, with its ids added as the fields message_id, correlation_id,
// causation_id, message_key and occurred_at, so that the book's consumers
// read it as it is and stockflow's follow the flow.
type PubSub struct {
	client *redis.Client
	log    *slog.Logger
	// MaxAttempts bounds the deliveries of a message whose handler fails:
	// pub/sub cannot redeliver, so the subscriber retries in place
	// (default 10; handlers dead-letter before then).
	MaxAttempts int
}

// NewPubSub returns a pub/sub transport on the Redis at url
// (redis://[user:password@]host:port[/db], or rediss:// for TLS, with
// ca=, cert= and key= in its query: see options).
func NewPubSub(url string, log *slog.Logger) (*PubSub, error) {
	logClientTo(log)
	opts, err := options(url)
	if err != nil {
		return nil, err
	}
	opts.MaxRetries = -1   // none: the outbox relay retries, with backoff
	opts.DialerRetries = 1 // and the subscriber reconnects, with backoff
	opts.DialTimeout = 2 * time.Second
	return &PubSub{client: redis.NewClient(opts), log: log}, nil
}

// Client returns the Redis client.
func (p *PubSub) Client() *redis.Client { return p.client }

// Publish publishes the messages in order, in one round trip.
func (p *PubSub) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	if len(msgs) == 0 {
		return nil
	}
	pipe := p.client.Pipeline()
	for _, m := range msgs {
		pipe.Publish(ctx, m.Channel, withIDs(m))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis publish: %w", err)
	}
	return nil
}

// Subscribe hands each message published on channels to h until ctx is
// done, reconnecting (with backoff) whenever the connection is lost.
func (p *PubSub) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	backoff := time.Duration(0)
	lost := false
	for {
		err := p.subscribe(ctx, channels, h, func() {
			if lost {
				p.log.InfoContext(ctx, "redis subscription back", "channels", channels)
			}
			backoff, lost = 0, false
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		// One warning when the link is lost; the attempts to get it back
		// are debug lines.
		level := slog.LevelDebug
		if !lost {
			level, lost = slog.LevelWarn, true
		}
		p.log.Log(ctx, level, "redis subscription lost, reconnecting", "channels", channels, "err", err, "retry_in_ms", backoff.Milliseconds())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

func (p *PubSub) subscribe(ctx context.Context, channels []string, h messaging.Handler, connected func()) error {
	ps := p.client.Subscribe(ctx)
	defer ps.Close()
	// go-redis waits out a receive whatever the context: closing the
	// subscription is what ends the wait when ctx is done.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	if err := ps.Subscribe(ctx, channels...); err != nil {
		return err
	}
	// Wait for the confirmation: from here on, nothing published is missed.
	if _, err := ps.Receive(ctx); err != nil {
		return err
	}
	connected()
	p.log.InfoContext(ctx, "redis subscribed", "channels", channels)
	for {
		msg, err := ps.ReceiveTimeout(ctx, 30*time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var netErr interface{ Timeout() bool }
			if errors.As(err, &netErr) && netErr.Timeout() {
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue // subscription confirmations, pongs
		}
		p.deliver(ctx, h, envelopeOf(m.Channel, []byte(m.Payload)))
	}
}

func (p *PubSub) deliver(ctx context.Context, h messaging.Handler, env messaging.Envelope) {
	max := p.MaxAttempts
	if max <= 0 {
		max = 10
	}
	for attempt := 1; attempt <= max; attempt++ {
		err := h(ctx, messaging.Delivery{Envelope: env, Attempt: attempt})
		if err == nil {
			return
		}
		// Pub/sub cannot hand a message again: it is retried in place.
		select {
		case <-ctx.Done():
			return
		case <-time.After(messaging.RedeliveryDelay(err, attempt, messaging.Backoff{Initial: 20 * time.Millisecond, Max: time.Second})):
		}
	}
	p.log.ErrorContext(ctx, "message dropped: its handler failed every attempt", "channel", env.Channel, "message_id", env.ID)
}

// Close closes the client.
func (p *PubSub) Close() error { return p.client.Close() }

// withIDs returns m's payload with its ids added, when it is a JSON
// object.
func withIDs(m messaging.Envelope) []byte {
	body := bytes.TrimSpace(m.Payload)
	if len(body) < 2 || body[0] != '{' {
		return body
	}
	ids, _ := json.Marshal(wireIDs{m.ID, m.CorrelationID, m.CausationID, m.Key, m.OccurredAt.UTC().Format(time.RFC3339Nano)})
	out := make([]byte, 0, len(ids)+len(body)+1)
	out = append(out, ids[:len(ids)-1]...) // without its closing brace
	if rest := bytes.TrimSpace(body[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, body[1:]...)
}

type wireIDs struct {
	MessageID     string `json:"message_id"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	Key           string `json:"message_key,omitempty"`
	OccurredAt    string `json:"occurred_at"`
}

// envelopeOf reads a message from outside: any JSON body, with ids when
// stockflow or a well-behaved publisher sent it.
func envelopeOf(channel string, payload []byte) messaging.Envelope {
	env := messaging.Envelope{Channel: channel, Payload: payload}
	var ids wireIDs
	if json.Unmarshal(payload, &ids) == nil {
		env.ID, env.CorrelationID, env.CausationID, env.Key = ids.MessageID, ids.CorrelationID, ids.CausationID, ids.Key
		env.OccurredAt, _ = time.Parse(time.RFC3339Nano, ids.OccurredAt)
	}
	return env
}
