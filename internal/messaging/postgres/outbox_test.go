package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/messaging/deadlettertest"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	"github.com/stockflow/stockflow/internal/messaging/postgres/pgtest"
	"github.com/stockflow/stockflow/internal/messaging/timertest"
)

// newOutbox returns the outbox of a schema of its own, holding n messages.
func newOutbox(t *testing.T, n int) (*mpostgres.Outbox, *pgxpool.Pool, []string) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t, "test_outbox")
	if err := mpostgres.Migrate(ctx, pool, "messaging", mpostgres.Migrations()); err != nil {
		t.Fatal(err)
	}
	envs := make([]messaging.Envelope, n)
	ids := make([]string, n)
	for i := range envs {
		ids[i] = fmt.Sprintf("ev-%04d", i)
		envs[i] = messaging.Envelope{ID: ids[i], Channel: "line_allocated", Key: "LAMP", CorrelationID: ids[i],
			CausationID: ids[i], OccurredAt: time.Now().UTC(), Payload: json.RawMessage(`{}`)}
	}
	b := &pgx.Batch{}
	mpostgres.QueueOutbox(b, envs)
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	ob := mpostgres.NewOutbox(pool, "test")
	t.Cleanup(ob.Close)
	return ob, pool, ids
}

func rows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A message leaves the outbox once published and dispatched, in either
// order, or at once when marked done.
func TestMarks(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		marks     string // p: published, d: dispatched, x: done
		wantRow   bool
		wantUnpub bool
	}{
		{"", true, true},
		{"p", true, false},
		{"d", true, true},
		{"pd", false, false},
		{"dp", false, false},
		{"pp", true, false},
		{"ddp", false, false},
		{"x", false, false},
		{"px", false, false},
		{"xd", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.marks, func(t *testing.T) {
			ob, pool, ids := newOutbox(t, 3)
			target := ids[1:2]
			for _, m := range tt.marks {
				mark := map[rune]func(context.Context, []string) error{'p': ob.MarkPublished, 'd': ob.MarkDispatched, 'x': ob.MarkDone}[m]
				if err := mark(ctx, target); err != nil {
					t.Fatalf("mark %c: %v", m, err)
				}
			}
			if got := rows(t, pool); got != 2+map[bool]int{true: 1}[tt.wantRow] {
				t.Errorf("%d rows, want the target kept: %v", got, tt.wantRow)
			}
			unpub, err := ob.Unpublished(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, e := range unpub {
				got = got || e.ID == target[0]
			}
			if got != tt.wantUnpub {
				t.Errorf("unpublished: %v, want %v", got, tt.wantUnpub)
			}
		})
	}
}

// The relay and the dispatch log mark the same messages at once, in
// chunks of any size: every message leaves, none stays behind.
func TestMarksRacing(t *testing.T) {
	const n = 400
	ob, pool, ids := newOutbox(t, n)
	ctx := context.Background()
	var wg sync.WaitGroup
	errc := make(chan error, 2*n)
	for _, mark := range []func(context.Context, []string) error{ob.MarkPublished, ob.MarkDispatched} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rest := ids; len(rest) > 0; {
				k := min(len(rest), 1+rand.IntN(8))
				errc <- mark(ctx, rest[:k])
				rest = rest[k:]
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := rows(t, pool); got != 0 {
		t.Errorf("%d messages left in the outbox, want none", got)
	}
}

func TestTimers(t *testing.T) {
	timertest.Run(t, func(t *testing.T) (timertest.Store, func(envs ...messaging.Envelope)) {
		ob, pool, _ := newOutbox(t, 0)
		return ob, func(envs ...messaging.Envelope) {
			b := &pgx.Batch{}
			mpostgres.QueueOutbox(b, envs)
			if err := pool.SendBatch(context.Background(), b).Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestDeadLetterContract(t *testing.T) {
	pools := map[messaging.DeadLetterStore]*pgxpool.Pool{}
	deadlettertest.Run(t, func(t *testing.T) messaging.DeadLetterStore {
		ob, pool, _ := newOutbox(t, 0)
		pools[ob] = pool
		return ob
	}, func(t *testing.T, s messaging.DeadLetterStore, d messaging.DeadLetter) {
		// As the previous version wrote it: no fingerprint, state or counts.
		if _, err := pools[s].Exec(context.Background(), `INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at,
				msg_key, correlation_id, causation_id, attempts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, d.Consumer, d.Channel, d.MessageID, d.Payload, d.Reason, d.FailedAt,
			d.Key, d.CorrelationID, d.CausationID, d.Attempts); err != nil {
			t.Fatal(err)
		}
	})
}
