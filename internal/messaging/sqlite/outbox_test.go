package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"io/fs"
	"testing/fstest"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/messaging/deadlettertest"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
	"github.com/stockflow/stockflow/internal/messaging/timertest"
)

// append stores envs in the outbox in one committed transaction.
func appendOutbox(t *testing.T, db *msqlite.DB, envs ...messaging.Envelope) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := tx.AppendOutbox(ctx, envs); err != nil {
		t.Fatalf("AppendOutbox: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

var berlin = time.FixedZone("CET", 3600)

// event returns envelope i, raised at a time with nanoseconds in a zone
// other than UTC.
func event(i int, at time.Time) messaging.Envelope {
	return messaging.Envelope{
		ID:            fmt.Sprintf("ev-%03d", i),
		Channel:       "line_allocated",
		Key:           fmt.Sprintf("SKU-%d", i%3),
		CorrelationID: fmt.Sprintf("corr-%d", i),
		CausationID:   fmt.Sprintf("cause-%d", i),
		OccurredAt:    at,
		Payload:       json.RawMessage(fmt.Sprintf(`{"sku":"SKU-%d","qty":%d,"note":"ünïcødé \"quoted\""}`, i%3, i)),
	}
}

// stored is env as the outbox gives it back: its time to the microsecond,
// in UTC.
func stored(env messaging.Envelope) messaging.Envelope {
	env.OccurredAt = env.OccurredAt.Truncate(time.Microsecond).UTC()
	return env
}

func storedAll(envs []messaging.Envelope) []messaging.Envelope {
	out := make([]messaging.Envelope, len(envs))
	for i, e := range envs {
		out[i] = stored(e)
	}
	return out
}

// oldEvents returns n events raised an hour ago, a second apart.
func oldEvents(n, from int) []messaging.Envelope {
	base := time.Now().Add(-time.Hour).In(berlin).Add(123456789 * time.Nanosecond)
	out := make([]messaging.Envelope, n)
	for i := range out {
		out[i] = event(from+i, base.Add(time.Duration(from+i)*time.Second))
	}
	return out
}

func ids(envs []messaging.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

func countRows(t *testing.T, db *msqlite.DB, table string) int {
	t.Helper()
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// attempts returns the dispatch attempts of each row, by id.
func attempts(t *testing.T, db *msqlite.DB) map[string]int {
	t.Helper()
	rows, err := db.R.Query(`SELECT id, dispatch_attempts FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

func TestAppendOutboxAndUnpublished(t *testing.T) {
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	ctx := context.Background()

	first := oldEvents(3, 0)
	second := oldEvents(2, 3)
	// Raised out of time order: the outbox keeps the order they were stored.
	second[1].OccurredAt = first[0].OccurredAt.Add(-time.Minute)
	empty := messaging.Envelope{ID: "ev-empty", Channel: "c", OccurredAt: time.Unix(0, 999), Payload: json.RawMessage(`{}`)}
	appendOutbox(t, db, first...)
	appendOutbox(t, db, second...)
	appendOutbox(t, db, empty)
	appendOutbox(t, db) // nothing

	all := append(append(slices.Clone(first), second...), empty)
	got, err := ob.Unpublished(ctx, 100)
	if err != nil {
		t.Fatalf("Unpublished: %v", err)
	}
	if diff := cmp.Diff(storedAll(all), got); diff != "" {
		t.Errorf("Unpublished (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if e.OccurredAt.Location() != time.UTC {
			t.Errorf("%s OccurredAt in %v, want UTC", e.ID, e.OccurredAt.Location())
		}
		if e.OccurredAt.Nanosecond()%1000 != 0 {
			t.Errorf("%s OccurredAt %v finer than a microsecond", e.ID, e.OccurredAt)
		}
	}

	for _, limit := range []int{1, 2, 5, 6, 7} {
		got, err := ob.Unpublished(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(all[:min(limit, len(all))]), ids(got)); diff != "" {
			t.Errorf("Unpublished(%d) (-want +got):\n%s", limit, diff)
		}
	}
}

func TestAppendOutboxTransaction(t *testing.T) {
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	ctx := context.Background()

	t.Run("invisible until committed", func(t *testing.T) {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if err := msqlite.AppendOutbox(ctx, tx, oldEvents(1, 0)); err != nil {
			t.Fatal(err)
		}
		if got, err := ob.Unpublished(ctx, 10); err != nil || len(got) != 0 {
			t.Errorf("Unpublished during the tx = %v, %v; want nothing", ids(got), err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got, _ := ob.Unpublished(ctx, 10); len(got) != 1 {
			t.Errorf("Unpublished after commit = %v, want ev-000", ids(got))
		}
	})
	t.Run("rolled back", func(t *testing.T) {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := msqlite.AppendOutbox(ctx, tx, oldEvents(2, 10)); err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
		if got, _ := ob.Unpublished(ctx, 10); len(got) != 1 {
			t.Errorf("Unpublished after rollback = %v, want only ev-000", ids(got))
		}
	})
	t.Run("duplicate id", func(t *testing.T) {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		err = msqlite.AppendOutbox(ctx, tx, oldEvents(1, 0))
		if err == nil {
			t.Fatal("AppendOutbox of a stored id = nil error")
		}
		if !msqlite.IsUniqueViolation(err) {
			t.Errorf("IsUniqueViolation(%v) = false", err)
		}
	})
	t.Run("duplicate in one batch", func(t *testing.T) {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		e := oldEvents(1, 20)
		if err := msqlite.AppendOutbox(ctx, tx, append(e, e...)); !msqlite.IsUniqueViolation(err) {
			t.Errorf("AppendOutbox of one id twice = %v, want a unique violation", err)
		}
	})
	t.Run("done tx", func(t *testing.T) {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
		if err := msqlite.AppendOutbox(ctx, tx, oldEvents(1, 30)); err == nil {
			t.Errorf("AppendOutbox in a finished tx = nil error")
		}
	})
}

func TestMarkPublishedAndDispatched(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		marks      []string // "p" or "d", in order
		wantRow    bool
		wantUnpub  bool
		wantUndisp bool
	}{
		{"neither", nil, true, true, true},
		{"published only", []string{"p"}, true, false, true},
		{"dispatched only", []string{"d"}, true, true, false},
		{"published then dispatched", []string{"p", "d"}, false, false, false},
		{"dispatched then published", []string{"d", "p"}, false, false, false},
		{"published twice", []string{"p", "p"}, true, false, true},
		{"dispatched twice, then published", []string{"d", "d", "p"}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := migratedDB(t)
			ob := msqlite.NewOutbox(db)
			evs := oldEvents(3, 0)
			appendOutbox(t, db, evs...)
			target := []string{evs[1].ID}
			for _, m := range tt.marks {
				var err error
				if m == "p" {
					err = ob.MarkPublished(ctx, target)
				} else {
					err = ob.MarkDispatched(ctx, target)
				}
				if err != nil {
					t.Fatalf("mark %s: %v", m, err)
				}
			}
			if _, kept := attempts(t, db)[evs[1].ID]; kept != tt.wantRow {
				t.Errorf("row kept = %v, want %v", kept, tt.wantRow)
			}
			unpub, err := ob.Unpublished(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(ids(unpub), evs[1].ID); got != tt.wantUnpub {
				t.Errorf("in Unpublished = %v, want %v", got, tt.wantUnpub)
			}
			undisp, err := ob.Undispatched(ctx, time.Minute, 10, 100)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(ids(undisp), evs[1].ID); got != tt.wantUndisp {
				t.Errorf("in Undispatched = %v, want %v", got, tt.wantUndisp)
			}
			// The others are untouched.
			if !slices.Contains(ids(unpub), evs[0].ID) || !slices.Contains(ids(unpub), evs[2].ID) {
				t.Errorf("other rows changed: unpublished %v", ids(unpub))
			}
		})
	}
}

func TestMarkEdgeCases(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	appendOutbox(t, db, oldEvents(2, 0)...)
	for _, ids := range [][]string{nil, {}, {"no-such-id"}} {
		if err := ob.MarkPublished(ctx, ids); err != nil {
			t.Errorf("MarkPublished(%v) = %v", ids, err)
		}
		if err := ob.MarkDispatched(ctx, ids); err != nil {
			t.Errorf("MarkDispatched(%v) = %v", ids, err)
		}
	}
	if n := countRows(t, db, "outbox"); n != 2 {
		t.Errorf("outbox has %d rows, want 2", n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ob.MarkPublished(cctx, []string{"ev-000"}); err == nil {
		t.Errorf("MarkPublished with a cancelled ctx = nil error")
	}
}

func TestMarkManyIDs(t *testing.T) {
	// More ids than one statement takes (500).
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	evs := oldEvents(1201, 0)
	appendOutbox(t, db, evs...)
	if err := ob.MarkPublished(ctx, ids(evs)); err != nil {
		t.Fatal(err)
	}
	if got, _ := ob.Unpublished(ctx, 2000); len(got) != 0 {
		t.Errorf("%d unpublished after MarkPublished of all", len(got))
	}
	if err := ob.MarkDispatched(ctx, ids(evs[:1000])); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "outbox"); n != 201 {
		t.Errorf("outbox has %d rows, want 201", n)
	}
	if err := ob.MarkDispatched(ctx, ids(evs)); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "outbox"); n != 0 {
		t.Errorf("outbox has %d rows, want 0", n)
	}
}

func TestUndispatched(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	old := oldEvents(3, 0)
	recent := event(9, time.Now())
	appendOutbox(t, db, old...)
	appendOutbox(t, db, recent)

	steps := []struct {
		name      string
		olderThan time.Duration
		limit     int
		before    func()
		want      []messaging.Envelope
		attempts  map[string]int
	}{
		{
			name: "limit", olderThan: time.Minute, limit: 2,
			want:     old[:2],
			attempts: map[string]int{"ev-000": 1, "ev-001": 1, "ev-002": 0, "ev-009": 0},
		},
		{
			name: "all old", olderThan: time.Minute, limit: 10,
			want:     old,
			attempts: map[string]int{"ev-000": 2, "ev-001": 2, "ev-002": 1, "ev-009": 0},
		},
		{
			name: "dispatched ones leave", olderThan: time.Minute, limit: 10,
			before:   func() { ob.MarkDispatched(ctx, []string{"ev-001"}) },
			want:     []messaging.Envelope{old[0], old[2]},
			attempts: map[string]int{"ev-000": 3, "ev-001": 2, "ev-002": 2, "ev-009": 0},
		},
		{
			name: "published ones stay", olderThan: time.Minute, limit: 10,
			before:   func() { ob.MarkPublished(ctx, []string{"ev-000", "ev-009"}) },
			want:     []messaging.Envelope{old[0], old[2]},
			attempts: map[string]int{"ev-000": 4, "ev-001": 2, "ev-002": 3, "ev-009": 0},
		},
		{
			name: "recent ones too", olderThan: 0, limit: 10,
			want:     []messaging.Envelope{old[0], old[2], recent},
			attempts: map[string]int{"ev-000": 5, "ev-001": 2, "ev-002": 4, "ev-009": 1},
		},
		{
			name: "nothing older than a day", olderThan: 24 * time.Hour, limit: 10,
			want:     nil,
			attempts: map[string]int{"ev-000": 5, "ev-001": 2, "ev-002": 4, "ev-009": 1},
		},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		got, err := ob.Undispatched(ctx, s.olderThan, s.limit, 100)
		if err != nil {
			t.Fatalf("%s: Undispatched: %v", s.name, err)
		}
		if diff := cmp.Diff(storedAll(s.want), got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: Undispatched (-want +got):\n%s", s.name, diff)
		}
		if diff := cmp.Diff(s.attempts, attempts(t, db)); diff != "" {
			t.Errorf("%s: attempts (-want +got):\n%s", s.name, diff)
		}
	}
	if n := countRows(t, db, "dead_letters"); n != 0 {
		t.Errorf("%d dead letters, want none below max attempts", n)
	}
}

func TestUndispatchedOrder(t *testing.T) {
	// Oldest first means in the order they were stored, whatever RETURNING
	// gives; many rows make a scrambled order likelier.
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	evs := oldEvents(300, 0)
	// Store them in batches, in an order that differs from their ids.
	for _, chunk := range [][]messaging.Envelope{evs[200:], evs[:100], evs[100:200]} {
		appendOutbox(t, db, chunk...)
	}
	want := append(append(slices.Clone(evs[200:]), evs[:100]...), evs[100:200]...)
	got, err := ob.Undispatched(ctx, time.Minute, 1000, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
		t.Errorf("Undispatched order (-want +got):\n%s", diff)
	}
	got, err = ob.Undispatched(ctx, time.Minute, 50, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(want[:50]), ids(got)); diff != "" {
		t.Errorf("Undispatched(limit 50) (-want +got):\n%s", diff)
	}
}

func TestUndispatchedDeadLetters(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	evs := oldEvents(3, 0)
	appendOutbox(t, db, evs...)
	const maxAttempts = 3
	ob.MarkPublished(ctx, []string{evs[0].ID}) // published: leaves when dead-lettered
	ob.MarkDispatched(ctx, []string{evs[2].ID})

	// Handed maxAttempts times...
	for i := range maxAttempts {
		got, err := ob.Undispatched(ctx, time.Minute, 10, maxAttempts)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(evs[:2]), ids(got)); diff != "" {
			t.Fatalf("round %d: (-want +got):\n%s", i+1, diff)
		}
	}
	if n := countRows(t, db, "dead_letters"); n != 0 {
		t.Fatalf("dead-lettered before max attempts: %d", n)
	}
	// ...then dead-lettered, and marked dispatched.
	start := time.Now()
	got, err := ob.Undispatched(ctx, time.Minute, 10, maxAttempts)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("Undispatched after max attempts = %v, want none", ids(got))
	}
	dead, err := ob.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(dead, func(a, b messaging.DeadLetter) int { return int(a.ID - b.ID) })
	var want []messaging.DeadLetter
	for i, e := range evs[:2] {
		at := e.OccurredAt.UTC().Truncate(time.Microsecond)
		want = append(want, messaging.DeadLetter{
			ID:            int64(i + 1),
			Consumer:      "local",
			Channel:       e.Channel,
			MessageID:     e.ID,
			Key:           e.Key,
			CorrelationID: e.CorrelationID,
			CausationID:   e.CausationID,
			OccurredAt:    &at,
			Payload:       string(e.Payload),
			Reason:        "local event handlers failed 3 times",
			Attempts:      3,
		})
	}
	if diff := cmp.Diff(want, dead, cmpopts.IgnoreFields(messaging.DeadLetter{}, "FailedAt"), consoleFields); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	for _, d := range dead {
		if d.FailedAt.Before(start.Add(-time.Second)) || d.FailedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("dead letter %d FailedAt %v, want about now", d.ID, d.FailedAt)
		}
	}
	// ev-000 was published: it left; ev-001 waits to be published; ev-002
	// waits too (dispatched, not published).
	if diff := cmp.Diff(map[string]int{"ev-001": 3, "ev-002": 0}, attempts(t, db)); diff != "" {
		t.Errorf("outbox rows (-want +got):\n%s", diff)
	}
	unpub, _ := ob.Unpublished(ctx, 10)
	if diff := cmp.Diff([]string{"ev-001", "ev-002"}, ids(unpub)); diff != "" {
		t.Errorf("Unpublished (-want +got):\n%s", diff)
	}
	// Nothing more happens on later rounds.
	for range 2 {
		if got, err := ob.Undispatched(ctx, time.Minute, 10, maxAttempts); err != nil || len(got) != 0 {
			t.Errorf("later Undispatched = %v, %v", ids(got), err)
		}
	}
	if n := countRows(t, db, "dead_letters"); n != 2 {
		t.Errorf("%d dead letters, want 2: each dead-lettered once", n)
	}
	// Publishing the dead-lettered one removes it.
	ob.MarkPublished(ctx, []string{"ev-001"})
	if diff := cmp.Diff(map[string]int{"ev-002": 0}, attempts(t, db)); diff != "" {
		t.Errorf("outbox rows (-want +got):\n%s", diff)
	}
}

func TestUndispatchedCancelled(t *testing.T) {
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ob.Undispatched(ctx, 0, 10, 5); err == nil {
		t.Errorf("Undispatched with a cancelled ctx = nil error")
	}
}

func TestInbox(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	inTx := func(f func(tx msqlite.Tx) error) error {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := f(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	// handled reports whether the inbox has the message, claiming it in a
	// transaction rolled back.
	handled := func(consumer, id string) bool {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		claimed, err := tx.Claim(ctx, consumer, id)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		return !claimed
	}

	// Recorded in the unit of work's transaction, seen in it and after.
	err := inTx(func(tx msqlite.Tx) error {
		if c, err := tx.Claim(ctx, "allocation", "m1"); err != nil || !c {
			t.Errorf("first Claim = %v, %v; want true", c, err)
		}
		if c, err := tx.Claim(ctx, "allocation", "m1"); err != nil || c {
			t.Errorf("Claim in the tx after claiming = %v, %v; want false", c, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		consumer, id string
		want         bool
	}{
		{"allocation", "m1", true},
		{"allocation", "m2", false},
		{"other", "m1", false},
		{"Allocation", "m1", false},
	}
	for _, tt := range tests {
		if got := handled(tt.consumer, tt.id); got != tt.want {
			t.Errorf("handled(%s, %s) = %v, want %v", tt.consumer, tt.id, got, tt.want)
		}
	}

	// The same message for another consumer is fine.
	if err := inTx(func(tx msqlite.Tx) error {
		c, err := tx.Claim(ctx, "other", "m1")
		if !c {
			t.Errorf("Claim for another consumer = false")
		}
		return err
	}); err != nil {
		t.Errorf("Claim for another consumer: %v", err)
	}
	// A rolled-back claim is forgotten.
	tx, _ := db.Begin(ctx)
	if _, err := tx.Claim(ctx, "allocation", "m3"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	if handled("allocation", "m3") {
		t.Errorf("rolled-back claim kept")
	}
	// In a finished tx it fails.
	if _, err := tx.Claim(ctx, "a", "b"); err == nil {
		t.Errorf("Claim in a finished tx = nil error")
	}
}

func TestForgetHandled(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	tx, _ := db.Begin(ctx)
	for _, id := range []string{"old", "older", "new"} {
		if _, err := tx.Claim(ctx, "c", id); err != nil {
			t.Fatal(err)
		}
	}
	tx.Commit(ctx)
	ages := map[string]time.Duration{"old": 25 * time.Hour, "older": 30 * 24 * time.Hour}
	for id, age := range ages {
		if _, err := db.W.Exec(`UPDATE inbox SET handled_at = ? WHERE message_id = ?`, time.Now().Add(-age).UnixMicro(), id); err != nil {
			t.Fatal(err)
		}
	}
	left := func() []string {
		rows, err := db.R.Query(`SELECT message_id FROM inbox ORDER BY message_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	steps := []struct {
		age  time.Duration
		want []string
	}{
		{60 * 24 * time.Hour, []string{"new", "old", "older"}},
		{7 * 24 * time.Hour, []string{"new", "old"}},
		{24 * time.Hour, []string{"new"}},
		{time.Hour, []string{"new"}},
	}
	for _, s := range steps {
		if err := ob.ForgetHandled(ctx, s.age); err != nil {
			t.Fatalf("ForgetHandled(%v): %v", s.age, err)
		}
		if diff := cmp.Diff(s.want, left()); diff != "" {
			t.Errorf("after ForgetHandled(%v) (-want +got):\n%s", s.age, diff)
		}
	}
}

func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)

	if got, err := ob.DeadLetters(ctx, 10); err != nil || len(got) != 0 {
		t.Errorf("DeadLetters of an empty table = %v, %v", got, err)
	}
	at := time.Date(2024, 3, 4, 5, 6, 7, 891234567, berlin)
	var in []messaging.DeadLetter
	for i := range 4 {
		in = append(in, messaging.DeadLetter{
			ID:        999, // ignored: the store numbers them
			Consumer:  "allocation",
			Channel:   fmt.Sprintf("ch-%d", i),
			MessageID: fmt.Sprintf("m-%d", i),
			Payload:   fmt.Sprintf(`{"n":%d}`, i),
			Reason:    fmt.Sprintf("reason %d", i),
			FailedAt:  at.Add(time.Duration(i) * time.Minute),
		})
	}
	in[3].MessageID = "" // a message that came without an id
	for _, d := range in {
		if err := ob.AddDeadLetter(ctx, d); err != nil {
			t.Fatalf("AddDeadLetter: %v", err)
		}
	}
	want := func(n int) []messaging.DeadLetter {
		var out []messaging.DeadLetter
		for i := len(in) - 1; i >= 0 && len(out) < n; i-- {
			d := in[i]
			d.ID = int64(i + 1)
			d.FailedAt = d.FailedAt.Truncate(time.Microsecond).UTC()
			out = append(out, d)
		}
		return out
	}
	for _, limit := range []int{1, 2, 4, 10} {
		got, err := ob.DeadLetters(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want(limit), got, consoleFields); diff != "" {
			t.Errorf("DeadLetters(%d) (-want +got):\n%s", limit, diff)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ob.AddDeadLetter(cctx, in[0]); err == nil {
		t.Errorf("AddDeadLetter with a cancelled ctx = nil error")
	}
	if _, err := ob.DeadLetters(cctx, 1); err == nil {
		t.Errorf("DeadLetters with a cancelled ctx = nil error")
	}
}

func TestDepth(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)

	n, oldest, err := ob.Depth(ctx)
	if err != nil || n != 0 || !oldest.IsZero() {
		t.Errorf("Depth of an empty outbox = %d, %v, %v; want 0, zero time", n, oldest, err)
	}
	evs := oldEvents(3, 0)
	// The oldest by time is stored last.
	evs[2].OccurredAt = evs[0].OccurredAt.Add(-time.Hour)
	appendOutbox(t, db, evs...)
	steps := []struct {
		publish    []string
		wantN      int
		wantOldest time.Time
	}{
		{nil, 3, evs[2].OccurredAt},
		{[]string{"ev-002"}, 2, evs[0].OccurredAt},
		{[]string{"ev-000"}, 1, evs[1].OccurredAt},
		{[]string{"ev-001"}, 0, time.Time{}},
	}
	for _, s := range steps {
		if err := ob.MarkPublished(ctx, s.publish); err != nil {
			t.Fatal(err)
		}
		n, oldest, err := ob.Depth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := s.wantOldest
		if !want.IsZero() {
			want = want.Truncate(time.Microsecond)
		}
		if n != s.wantN || !oldest.Equal(want) {
			t.Errorf("after publishing %v: Depth = %d, %v; want %d, %v", s.publish, n, oldest, s.wantN, want)
		}
	}
}

// TestOutboxWithRelayAndBus plays the outbox's part in a service: the relay
// publishes what a unit of work stored, the bus records what its handlers
// handled, and rows leave once both happened.
func TestOutboxWithRelayAndBus(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	ob := msqlite.NewOutbox(db)
	evs := oldEvents(600, 0)
	appendOutbox(t, db, evs...)

	pub := &recordingPublisher{}
	relay := messaging.NewRelay(ob, pub, slogDiscard())
	rctx, stop := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if d, _, _ := ob.Depth(ctx); d == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay did not publish everything within 10s")
		}
	}
	stop()
	<-relayDone
	if diff := cmp.Diff(storedAll(evs), pub.got); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	if d, _, _ := ob.Depth(ctx); d != 0 {
		t.Errorf("Depth after relaying = %d", d)
	}
	if n := countRows(t, db, "outbox"); n != 600 {
		t.Errorf("outbox rows after publishing = %d, want 600 (not yet dispatched)", n)
	}

	type ev struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	reg := messaging.NewRegistry()
	messaging.Register(reg, "line_allocated", func(e ev) string { return e.SKU }, nil)
	bus := messaging.NewBus(slogDiscard(), ob)
	var mu sync.Mutex
	handled := 0
	messaging.HandleEvent(bus, "count", func(ctx context.Context, e ev) ([]messaging.Raised, error) {
		mu.Lock()
		defer mu.Unlock()
		handled++
		if e.Qty == 7 {
			return nil, fmt.Errorf("fails")
		}
		return nil, nil
	})
	for {
		envs, err := ob.Undispatched(ctx, time.Minute, 256, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == 0 {
			break
		}
		bus.Redispatch(ctx, reg, envs)
	}
	// 599 handled once, the failing one twice, then dead-lettered.
	if handled != 601 {
		t.Errorf("handled %d times, want 601", handled)
	}
	if n := countRows(t, db, "outbox"); n != 0 {
		t.Errorf("outbox rows = %d, want 0", n)
	}
	dead, _ := ob.DeadLetters(ctx, 10)
	if len(dead) != 1 || dead[0].MessageID != "ev-007" {
		t.Errorf("dead letters = %+v, want ev-007", dead)
	}
}

var (
	_ messaging.Outbox      = (*msqlite.Outbox)(nil)
	_ messaging.DispatchLog = (*msqlite.Outbox)(nil)
	_ messaging.DeadLetters = (*msqlite.Outbox)(nil)
)

// A dead letter keeps the whole envelope; one kept before the envelope's
// columns were added still lists, with their defaults.
func TestDeadLetterKeepsTheEnvelope(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	// The first migration alone: the previous version's table, and a row of it.
	first := fstest.MapFS{}
	body, err := fs.ReadFile(msqlite.Migrations(), "001_messaging.sql")
	if err != nil {
		t.Fatal(err)
	}
	first["001_messaging.sql"] = &fstest.MapFile{Data: body}
	if err := db.Migrate(ctx, "messaging", first); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	if _, err := db.W.ExecContext(ctx, `INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at)
		VALUES ('allocation', 'change_batch_quantity', 'm-old', '{}', 'unknown batch b9', ?)`, old.UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
		t.Fatal(err)
	}
	ob := msqlite.NewOutbox(db)
	occurred, firstFailed, failed := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 8, 0, 1, 0, time.UTC), time.Date(2026, 12, 1, 8, 0, 9, 0, time.UTC)
	whole := messaging.DeadLetter{Consumer: "orders", Channel: "line_allocated", MessageID: "m-new", Key: "LAMP",
		CorrelationID: "corr-1", CausationID: "cause-1", OccurredAt: &occurred, Payload: `{"sku":"LAMP"}`,
		Reason: "handler panicked: boom", Attempts: 5, FirstFailedAt: &firstFailed, FailedAt: failed}
	if err := ob.AddDeadLetter(ctx, whole); err != nil {
		t.Fatal(err)
	}
	got, err := ob.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	whole.ID = 2
	want := []messaging.DeadLetter{whole, {ID: 1, Consumer: "allocation", Channel: "change_batch_quantity", MessageID: "m-old",
		Payload: "{}", Reason: "unknown batch b9", FailedAt: old}}
	if diff := cmp.Diff(want, got, consoleFields); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
}

func TestTimers(t *testing.T) {
	timertest.Run(t, func(t *testing.T) (timertest.Store, func(envs ...messaging.Envelope)) {
		db := migratedDB(t)
		return msqlite.NewOutbox(db), func(envs ...messaging.Envelope) { appendOutbox(t, db, envs...) }
	})
}

// The relay publishes a timer when it is due, not before, and once; a
// reopened database still holds it (it is stored, not slept on).
func TestRelayPublishesTimersWhenDue(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "timers.db")
	db, err := msqlite.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(400 * time.Millisecond)
	timer := messaging.Envelope{ID: "t1", Channel: "cart_expired", Key: "o1", OccurredAt: time.Now(), Payload: json.RawMessage(`{}`), DeliverAt: due}
	appendOutbox(t, db, timer)
	db.Close() // a restart before it is due

	db, err = msqlite.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pub := &recordingPublisher{}
	relay := messaging.NewRelay(msqlite.NewOutbox(db), pub, slogDiscard())
	relay.Poll = 20 * time.Millisecond
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	defer func() { stop(); <-done }()
	for {
		pub.mu.Lock()
		n := len(pub.got)
		pub.mu.Unlock()
		if n > 0 {
			if time.Now().Before(due) {
				t.Fatalf("published %v before it was due", ids(pub.got))
			}
			break
		}
		if time.Since(due) > 5*time.Second {
			t.Fatal("the timer was not published within 5 s of being due")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a few more rounds of the relay
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if !slices.Equal(ids(pub.got), []string{"t1"}) {
		t.Errorf("published %v, want t1 once", ids(pub.got))
	}
}

func TestDeadLetterContract(t *testing.T) {
	dbs := map[messaging.DeadLetterStore]*msqlite.DB{}
	deadlettertest.Run(t, func(t *testing.T) messaging.DeadLetterStore {
		db := migratedDB(t)
		ob := msqlite.NewOutbox(db)
		dbs[ob] = db
		return ob
	}, func(t *testing.T, s messaging.DeadLetterStore, d messaging.DeadLetter) {
		// As the previous version wrote it: no fingerprint, state or counts.
		if _, err := dbs[s].W.ExecContext(context.Background(), `INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at,
				msg_key, correlation_id, causation_id, attempts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.Consumer, d.Channel, d.MessageID, d.Payload, d.Reason, d.FailedAt.UnixMicro(),
			d.Key, d.CorrelationID, d.CausationID, d.Attempts); err != nil {
			t.Fatal(err)
		}
	})
}

// consoleFields are what the dead-letter console adds to a dead letter,
// which TestDeadLetterContract checks.
var consoleFields = cmpopts.IgnoreFields(messaging.DeadLetter{}, "Fingerprint", "Group", "State", "Failures")
