package transporttest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
	"github.com/stockflow/stockflow/internal/testenv"
)

// EndToEnd measures a transport end to end, as stockflow uses it: b.N
// messages stored in a SQLite outbox (in transactions of 100, as a busy
// service would), relayed to the transport, and consumed by a group whose
// handler commits, for each message, its inbox entry and its effect in a
// transaction of its own before acknowledging. It reports messages per
// second, from the first commit to the last handled, and the latency from
// a message's commit to its handler's commit (median and 99th percentile).
//
// With rate 0 the messages are committed as fast as they can be (the
// throughput; latencies then measure the queue); with a rate, one
// transaction of rate/100 messages every 100th of a second (the latency of
// a transport that keeps up).
//
//	go test -run '^$' -bench EndToEnd -benchtime 20000x ./internal/transport/...
func EndToEnd(b *testing.B, t messaging.Transport, rate int) { EndToEndWithTimers(b, t, rate, 0) }

// EndToEndWithTimers is EndToEnd with that many durable timers (messages
// scheduled an hour ahead) waiting in the store the whole time: what they
// cost the relay.
func EndToEndWithTimers(b *testing.B, t messaging.Transport, rate, timers int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	db, err := msqlite.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
		b.Fatal(err)
	}
	if _, err := db.W.Exec(`CREATE TABLE effects (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	channel := testenv.Name("bench")
	group := testenv.Name("bench_group")
	if err := scheduleTimers(ctx, db, channel, timers); err != nil {
		b.Fatal(err)
	}

	var handled atomic.Int64
	done := make(chan struct{})
	latencies := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	ready := make(chan struct{}, 1)
	handler := func(ctx context.Context, d messaging.Delivery) error {
		if isProbe(d) {
			select {
			case ready <- struct{}{}:
			default:
			}
			return nil
		}
		tx, err := db.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		claimed, err := tx.Claim(ctx, group, d.ID)
		if err != nil || !claimed {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO effects (id, n) VALUES (?, 1)`, d.ID); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		lat := time.Since(d.OccurredAt)
		mu.Lock()
		latencies = append(latencies, lat)
		mu.Unlock()
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}
	subDone := make(chan error, 1)
	go func() { subDone <- t.Subscribe(ctx, group, []string{channel}, handler) }()
	waitReady(b, ctx, t, channel, ready)

	relay := messaging.NewRelay(msqlite.NewOutbox(db), t, log)
	relay.Batch = 1000
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()

	b.ResetTimer()
	start := time.Now()
	keys := 64
	per := 100
	var tick *time.Ticker
	if rate > 0 {
		per = max(rate/100, 1)
		tick = time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
	}
	for i := 0; i < b.N; i += per {
		if tick != nil {
			<-tick.C
		}
		tx, err := db.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		envs := make([]messaging.Envelope, 0, per)
		now := time.Now()
		for j := i; j < min(i+per, b.N); j++ {
			envs = append(envs, messaging.Envelope{
				ID: messaging.NewID(), Channel: channel, Key: fmt.Sprint("key-", j%keys),
				CorrelationID: "bench", OccurredAt: now, Payload: []byte(fmt.Sprintf(`{"seq":%d}`, j)),
			})
		}
		if err := tx.AppendOutbox(ctx, envs); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		relay.Notify()
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d messages handled after 5 minutes", handled.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-subDone
	<-relayDone

	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// waitReady publishes probes until the subscription receives one, for
// transports that drop what is published before a subscriber is there.
func waitReady(b *testing.B, ctx context.Context, t messaging.Transport, channel string, ready <-chan struct{}) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := t.Publish(ctx, probe(channel)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-ready:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.Fatal("the subscription never received a probe")
}

// scheduleTimers stores n messages on channel due an hour from now.
func scheduleTimers(ctx context.Context, db *msqlite.DB, channel string, n int) error {
	at := time.Now().Add(time.Hour)
	for i := 0; i < n; i += 1000 {
		tx, err := db.Begin(ctx)
		if err != nil {
			return err
		}
		envs := make([]messaging.Envelope, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			envs = append(envs, messaging.Envelope{ID: messaging.NewID(), Channel: channel, Key: fmt.Sprint("timer-", j),
				OccurredAt: time.Now(), Payload: []byte(`{}`), DeliverAt: at})
		}
		if err := tx.AppendOutbox(ctx, envs); err != nil {
			tx.Rollback(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}
