package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Messages used across the package's tests.

// placeOrder is a command.
type placeOrder struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// Validate makes placeOrder refuse a non-positive quantity (the consumer
// dead-letters it).
func (p placeOrder) Validate() error {
	if p.Qty <= 0 {
		return fmt.Errorf("qty must be positive, got %d", p.Qty)
	}
	return nil
}

// orderPlaced, stockReserved and orderShipped are events.
type orderPlaced struct {
	SKU string `json:"sku"`
	N   int    `json:"n"`
}

type stockReserved struct {
	SKU string `json:"sku"`
	N   int    `json:"n"`
}

type orderShipped struct {
	SKU string `json:"sku"`
	N   int    `json:"n"`
}

// unregistered is a message no registry knows.
type unregistered struct{ X int }

func newRegistry() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, "place_order", func(c placeOrder) string { return c.SKU }, nil)
	messaging.Register(r, "order_placed", func(e orderPlaced) string { return e.SKU }, nil)
	messaging.Register(r, "stock_reserved", func(e stockReserved) string { return e.SKU }, nil)
	messaging.Register(r, "order_shipped", func(e orderShipped) string { return e.SKU }, nil)
	return r
}

// raise wraps ev in an envelope raised under ctx, as a unit of work does.
func raise(t *testing.T, ctx context.Context, reg *messaging.Registry, ev any) messaging.Raised {
	t.Helper()
	env, err := reg.Envelope(ctx, ev)
	if err != nil {
		t.Fatalf("Envelope(%T): %v", ev, err)
	}
	return messaging.Raised{Envelope: env, Event: ev}
}

// logRecord is one record a recordingHandler kept.
type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// recordingHandler is a slog.Handler that keeps every record.
type recordingHandler struct {
	mu   sync.Mutex
	recs []logRecord
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve().String()
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) records() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recs)
}

// find returns the records with message msg.
func (h *recordingHandler) find(msg string) []logRecord {
	var out []logRecord
	for _, r := range h.records() {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

func newRecordingLogger() (*slog.Logger, *recordingHandler) {
	h := &recordingHandler{}
	return slog.New(h), h
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// dispatchLog is a DispatchLog that records what it is told.
type dispatchLog struct {
	mu    sync.Mutex
	calls [][]string
	err   error
	ctxOK []bool // whether the ctx of each call was still live
}

func (d *dispatchLog) MarkDispatched(ctx context.Context, ids []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, slices.Clone(ids))
	d.ctxOK = append(d.ctxOK, ctx.Err() == nil)
	return d.err
}

func (d *dispatchLog) ids() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, c := range d.calls {
		out = append(out, c...)
	}
	return out
}

// deadLetters is an in-memory DeadLetters.
type deadLetters struct {
	mu   sync.Mutex
	list []messaging.DeadLetter
	err  error
}

func (d *deadLetters) AddDeadLetter(ctx context.Context, dl messaging.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	for i, old := range d.list {
		if old.Consumer == dl.Consumer && old.MessageID == dl.MessageID && dl.MessageID != "" {
			// The same message failing again: the same dead letter.
			dl.ID, dl.Failures, dl.Retried = old.ID, old.Failures+1, old.Retried
			dl.Attempts += old.Attempts
			d.list[i] = dl
			return nil
		}
	}
	dl.ID, dl.Failures = int64(len(d.list)+1), 1
	d.list = append(d.list, dl)
	return nil
}

func (d *deadLetters) DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.list)
	slices.Reverse(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (d *deadLetters) all() []messaging.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.list)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

var errBoom = errors.New("boom")
