// Package timertest is the contract of durable timers (Envelope.DeliverAt)
// that every store of the messaging tables passes: a timer waits apart
// from the outbox, in the transaction that raised it, and is published,
// once, when due, never dispatched to its service's own handlers.
package timertest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Store is what the contract needs of a store: its outbox, its timers,
// and a way to commit messages as a unit of work does.
type Store interface {
	messaging.Store
	messaging.Scheduler
}

// Run checks the contract; open returns a new, empty store, and commit
// stores envs in one transaction of it.
func Run(t *testing.T, open func(t *testing.T) (Store, func(envs ...messaging.Envelope))) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	env := func(id string, at time.Time) messaging.Envelope {
		return messaging.Envelope{ID: id, Channel: "cart_expired", Key: "o1", CorrelationID: "c1", CausationID: "c1",
			OccurredAt: now, Payload: json.RawMessage(`{"orderid":"o1"}`), DeliverAt: at}
	}
	ids := func(envs []messaging.Envelope) []string {
		var out []string
		for _, e := range envs {
			out = append(out, e.ID)
		}
		return out
	}

	t.Run("DueInOrderOnce", func(t *testing.T) {
		s, commit := open(t)
		commit(
			env("now", time.Time{}),
			env("later", now.Add(time.Hour)),
			env("soon", now.Add(time.Minute)),
			env("past", now.Add(-time.Minute)), // due already: an ordinary message
		)
		if got, _ := s.Unpublished(ctx, 10); !slices.Equal(ids(got), []string{"now", "past"}) {
			t.Fatalf("Unpublished = %v, want the two due ones", ids(got))
		}
		if n, err := s.Scheduled(ctx); err != nil || n != 2 {
			t.Fatalf("Scheduled = %d, %v; want 2", n, err)
		}
		if n, err := s.PromoteDue(ctx, now, 10); err != nil || n != 0 {
			t.Fatalf("PromoteDue before any is due = %d, %v; want 0", n, err)
		}
		if n, err := s.PromoteDue(ctx, now.Add(2*time.Hour), 1); err != nil || n != 1 {
			t.Fatalf("PromoteDue(limit 1) = %d, %v; want 1", n, err)
		}
		if n, err := s.PromoteDue(ctx, now.Add(2*time.Hour), 10); err != nil || n != 1 {
			t.Fatalf("PromoteDue = %d, %v; want the last one", n, err)
		}
		got, _ := s.Unpublished(ctx, 10)
		if !slices.Equal(ids(got), []string{"now", "past", "soon", "later"}) {
			t.Fatalf("Unpublished after promotion = %v, want the timers after, the earliest first", ids(got))
		}
		for _, e := range got {
			if e.ID == "soon" && (e.Channel != "cart_expired" || e.Key != "o1" || !e.OccurredAt.Equal(now) || string(e.Payload) != `{"orderid":"o1"}`) {
				t.Errorf("promoted timer = %+v, want the envelope as raised", e)
			}
		}
		if n, _ := s.Scheduled(ctx); n != 0 {
			t.Errorf("Scheduled after promotion = %d, want 0", n)
		}
		if n, _ := s.PromoteDue(ctx, now.Add(2*time.Hour), 10); n != 0 {
			t.Errorf("PromoteDue again = %d, want 0: a timer fires once", n)
		}
		// The service's own bus never handles a timer: it is published only.
		und, err := s.Undispatched(ctx, -time.Hour, 10, 5)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(und, func(e messaging.Envelope) bool { return e.ID == "soon" || e.ID == "later" }) {
			t.Errorf("Undispatched = %v: a promoted timer is not for local handlers", ids(und))
		}
	})
}
