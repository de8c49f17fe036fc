// Package inproc is the in-process transport of the embedded default: a
// published message is handed to every subscribed group before Publish
// returns, so the outbox keeps it until every group acknowledged it (or
// dead-lettered it). Nothing is kept in memory between messages, and a
// crash loses nothing that the outbox holds.
package inproc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Transport is the in-process transport.
type Transport struct {
	// Retry is the wait before delivering again a message whose handler
	// failed without naming one (messaging.Redeliver names it); it doubles
	// with each attempt (default 10ms).
	Retry time.Duration
	// MaxAttempts bounds deliveries of one message to one group; a handler
	// is expected to dead-letter before then (default 10).
	MaxAttempts int

	mu     sync.RWMutex
	subs   map[string][]*subscription // by channel
	closed bool
	// held, while not nil, makes Publish wait until it is closed (Hold).
	held chan struct{}
	// subscribed is closed and renewed each time a group subscribes.
	subscribed chan struct{}
}

type subscription struct {
	group string
	h     messaging.Handler
	ctx   context.Context
	mu    sync.Mutex // one delivery at a time per group, as a broker's partition
}

// New returns an in-process transport.
func New() *Transport {
	return &Transport{subs: map[string][]*subscription{}, subscribed: make(chan struct{})}
}

// Hold makes Publish wait until Release. The transport keeps nothing, so
// a group that subscribes after a message was published never sees it: a
// process that starts several services on one transport holds their
// messages until every group subscribed.
func (t *Transport) Hold() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held == nil {
		t.held = make(chan struct{})
	}
}

// Release lets Publish go on.
func (t *Transport) Release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held != nil {
		close(t.held)
		t.held = nil
	}
}

// AwaitGroups waits until each of groups has subscribed, or ctx is done.
func (t *Transport) AwaitGroups(ctx context.Context, groups ...string) error {
	for {
		t.mu.RLock()
		missing := false
		for _, g := range groups {
			if !t.hasGroup(g) {
				missing = true
				break
			}
		}
		next := t.subscribed
		t.mu.RUnlock()
		if !missing {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next:
		}
	}
}

// hasGroup reports whether group subscribed; t.mu must be held.
func (t *Transport) hasGroup(group string) bool {
	for _, list := range t.subs {
		for _, s := range list {
			if s.group == group {
				return true
			}
		}
	}
	return false
}

var errClosed = errors.New("inproc: transport closed")

// Publish hands each message, in order, to every group subscribed to its
// channel, and returns when each has acknowledged it.
func (t *Transport) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	t.mu.RLock()
	held := t.held
	t.mu.RUnlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, m := range msgs {
		t.mu.RLock()
		if t.closed {
			t.mu.RUnlock()
			return errClosed
		}
		subs := t.subs[m.Channel]
		t.mu.RUnlock()
		for _, s := range subs {
			if err := t.deliver(ctx, s, m); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *Transport) deliver(ctx context.Context, s *subscription, m messaging.Envelope) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fallback, max := messaging.Backoff{Initial: t.Retry, Max: time.Second}, t.MaxAttempts
	if fallback.Initial <= 0 {
		fallback.Initial = 10 * time.Millisecond
	}
	if max <= 0 {
		max = 10
	}
	var err error
	for attempt := 1; attempt <= max; attempt++ {
		if s.ctx.Err() != nil {
			return nil // the group left; it will not see the message
		}
		if err = s.h(s.ctx, messaging.Delivery{Envelope: m, Attempt: attempt}); err == nil {
			return nil
		}
		if attempt == max {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return nil // the group left; it will not see the message
		case <-time.After(messaging.RedeliveryDelay(err, attempt, fallback)):
		}
	}
	return fmt.Errorf("inproc: group %s did not take message %s after %d attempts: %w", s.group, m.ID, max, err)
}

// Subscribe hands messages on channels to h until ctx is done.
func (t *Transport) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	s := &subscription{group: group, h: h, ctx: ctx}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errClosed
	}
	for _, c := range channels {
		t.subs[c] = append(t.subs[c], s)
	}
	close(t.subscribed)
	t.subscribed = make(chan struct{})
	t.mu.Unlock()
	<-ctx.Done()
	t.mu.Lock()
	for _, c := range channels {
		list := t.subs[c]
		for i, x := range list {
			if x == s {
				t.subs[c] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	}
	t.mu.Unlock()
	return ctx.Err()
}

// Close stops the transport.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	return nil
}
