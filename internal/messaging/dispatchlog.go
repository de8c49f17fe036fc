package messaging

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// BufferedDispatchLog records dispatched events in batches, in the
// background, instead of once per message handled. Losing a batch in a
// crash only means those events are handed to their handlers again, which
// skip them (the inbox).
type BufferedDispatchLog struct {
	next  DispatchLog
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	ids  []string
	full chan struct{}
}

// NewBufferedDispatchLog returns a buffer in front of next that flushes
// every interval, or sooner when 1,024 ids wait. Run must run.
func NewBufferedDispatchLog(next DispatchLog, interval time.Duration, log *slog.Logger) *BufferedDispatchLog {
	return &BufferedDispatchLog{next: next, log: log, every: interval, full: make(chan struct{}, 1)}
}

// MarkDispatched queues ids.
func (b *BufferedDispatchLog) MarkDispatched(_ context.Context, ids []string) error {
	b.mu.Lock()
	b.ids = append(b.ids, ids...)
	n := len(b.ids)
	b.mu.Unlock()
	if n >= 1024 {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
	return nil
}

// Take removes from the queue those of ids it holds, and returns them: the
// caller records them dispatched instead.
func (b *BufferedDispatchLog) Take(ids []string) []string {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var taken []string
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.ids[:0]
	for _, id := range b.ids {
		if want[id] {
			taken = append(taken, id)
		} else {
			kept = append(kept, id)
		}
	}
	clear(b.ids[len(kept):])
	b.ids = kept
	return taken
}

// Put queues ids again (taken, and not recorded).
func (b *BufferedDispatchLog) Put(ids []string) {
	b.mu.Lock()
	b.ids = append(b.ids, ids...)
	b.mu.Unlock()
}

// Run flushes until ctx is done, then flushes what is left. A flush under
// way when ctx ends is not cut short: its ids would be dispatched again at
// the next start.
func (b *BufferedDispatchLog) Run(ctx context.Context) error {
	t := time.NewTicker(b.every)
	defer t.Stop()
	flush := func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		b.Flush(fctx)
	}
	for {
		select {
		case <-ctx.Done():
			flush()
			return ctx.Err()
		case <-t.C:
		case <-b.full:
		}
		flush()
	}
}

// Flush records the queued ids now.
func (b *BufferedDispatchLog) Flush(ctx context.Context) {
	b.mu.Lock()
	ids := b.ids
	b.ids = nil
	b.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := b.next.MarkDispatched(ctx, ids); err != nil {
		// Not lost: the events stay undispatched and are handed again.
		b.log.WarnContext(ctx, "recording dispatched events", "err", err, "count", len(ids))
	}
}
