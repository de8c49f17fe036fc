package sqlite_test

import (
	"context"
	"log/slog"
	"sync"

	"github.com/stockflow/stockflow/internal/messaging"
)

// recordingPublisher keeps what it is given.
type recordingPublisher struct {
	mu  sync.Mutex
	got []messaging.Envelope
}

func (p *recordingPublisher) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, msgs...)
	return nil
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
