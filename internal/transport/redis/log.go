package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/secure"
)

// clientLog is where the Redis client's own lines go ("redis: ...
// pool.go: failed to dial"): through the process's slog logger, so that
// they are JSON in JSON mode like every other line. The client has one
// logger for the process; the latest transport opened sets it.
var clientLog atomic.Pointer[slog.Logger]

func init() { redis.SetLogger(slogPrinter{}) }

// logClientTo sends the Redis client's lines to log.
func logClientTo(log *slog.Logger) {
	if log != nil {
		clientLog.Store(log)
	}
}

type slogPrinter struct{}

func (slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	log := clientLog.Load()
	if log == nil {
		log = slog.Default()
	}
	// Debug: the transports report an outage themselves, once.
	log.DebugContext(ctx, "redis client: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Ping reports whether Redis answers; a server certificate refused says
// why (secure.Explain).
func (p *PubSub) Ping(ctx context.Context) error { return secure.Explain(p.client.Ping(ctx).Err()) }

// Ping reports whether Redis answers; a server certificate refused says
// why (secure.Explain).
func (s *Streams) Ping(ctx context.Context) error { return secure.Explain(s.client.Ping(ctx).Err()) }
