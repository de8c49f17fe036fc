// Package deadlettertest is the contract of the dead-letter table that
// every store of the messaging tables passes: each dead letter keeps its
// fingerprint and falls in its group; a message dead-lettered again is the
// same row, its failures raised and failed again; retried and archived
// marks take a dead letter out of the failed ones, and rows kept by an
// earlier version are read with their fingerprint computed.
package deadlettertest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Run checks the contract. open returns a new, empty store; old stores a
// dead letter as an earlier version did (no fingerprint, state or counts)
// and may be nil.
func Run(t *testing.T, open func(t *testing.T) messaging.DeadLetterStore, old func(t *testing.T, s messaging.DeadLetterStore, d messaging.DeadLetter)) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	letter := func(consumer, channel, id string, reason error, at time.Time) messaging.DeadLetter {
		return messaging.DeadLetter{Consumer: consumer, Channel: channel, MessageID: id, Key: "LAMP", CorrelationID: "c-" + id,
			Payload: `{"ref":"` + id + `"}`, Reason: reason.Error(), Fingerprint: messaging.FingerprintOf(reason),
			Attempts: 1, FirstFailedAt: &at, FailedAt: at}
	}
	unknown := func(ref string) error { return fail.Errorf(fail.NotFound, "Unknown batch %s", ref) }
	ids := func(list []messaging.DeadLetter) []string {
		var out []string
		for _, d := range list {
			out = append(out, d.MessageID)
		}
		return out
	}
	find := func(t *testing.T, s messaging.DeadLetterStore, q messaging.DeadLetterQuery) []messaging.DeadLetter {
		t.Helper()
		list, err := s.FindDeadLetters(ctx, q)
		if err != nil {
			t.Fatalf("FindDeadLetters(%+v): %v", q, err)
		}
		return list
	}
	add := func(t *testing.T, s messaging.DeadLetterStore, ds ...messaging.DeadLetter) {
		t.Helper()
		for _, d := range ds {
			if err := s.AddDeadLetter(ctx, d); err != nil {
				t.Fatalf("AddDeadLetter(%s): %v", d.MessageID, err)
			}
		}
	}

	t.Run("fingerprints and groups", func(t *testing.T) {
		s := open(t)
		add(t, s,
			letter("allocation", "change_batch_quantity", "m1", unknown("b-17"), now),
			letter("allocation", "change_batch_quantity", "m2", unknown("b-18"), now.Add(time.Second)),
			letter("allocation", "allocate", "m3", unknown("b-19"), now.Add(2*time.Second)),
			letter("allocation", "change_batch_quantity", "m4", messaging.Permanent(errors.New(`qty must be positive, got "x"`)), now.Add(3*time.Second)),
			letter("allocation", "change_batch_quantity", "m5", unknown("b-20"), now.Add(4*time.Second)),
		)
		list := find(t, s, messaging.DeadLetterQuery{})
		if got := ids(list); !slices.Equal(got, []string{"m1", "m2", "m3", "m4", "m5"}) {
			t.Fatalf("FindDeadLetters = %v, want m1..m5 oldest first", got)
		}
		for _, d := range list {
			if d.Fingerprint == "" || d.Group == "" || d.State != messaging.DeadLetterFailed || d.Failures != 1 || d.Retried != 0 {
				t.Errorf("%s: fingerprint %q, group %q, state %q, failures %d, retried %d; want a fingerprint and group, failed once, never retried",
					d.MessageID, d.Fingerprint, d.Group, d.State, d.Failures, d.Retried)
			}
		}
		if list[0].Fingerprint != "not found: Unknown batch #" {
			t.Errorf("fingerprint of %q = %q", list[0].Reason, list[0].Fingerprint)
		}
		groups := messaging.GroupDeadLetters(list)
		if len(groups) != 3 {
			t.Fatalf("groups = %+v, want 3", groups)
		}
		g := groups[0]
		if g.Count != 3 || g.Channel != "change_batch_quantity" || !g.FirstFailureAt.Equal(now) || !g.LastFailureAt.Equal(now.Add(4*time.Second)) {
			t.Errorf("largest group = %+v, want 3 on change_batch_quantity from %v to %v", g, now, now.Add(4*time.Second))
		}
		if got := ids(find(t, s, messaging.DeadLetterQuery{Group: g.ID})); !slices.Equal(got, []string{"m1", "m2", "m5"}) {
			t.Errorf("group %s lists %v, want m1 m2 m5", g.ID, got)
		}
		if got := ids(find(t, s, messaging.DeadLetterQuery{Channel: "allocate"})); !slices.Equal(got, []string{"m3"}) {
			t.Errorf("channel allocate lists %v, want m3", got)
		}
		if got := ids(find(t, s, messaging.DeadLetterQuery{Consumer: "orders"})); len(got) != 0 {
			t.Errorf("service orders lists %v, want none", got)
		}
		if got := ids(find(t, s, messaging.DeadLetterQuery{Limit: 2})); !slices.Equal(got, []string{"m4", "m5"}) {
			t.Errorf("limit 2 lists %v, want the newest two, m4 m5", got)
		}
		if got := ids(find(t, s, messaging.DeadLetterQuery{IDs: []int64{list[1].ID, list[3].ID}})); !slices.Equal(got, []string{"m2", "m4"}) {
			t.Errorf("ids lists %v, want m2 m4", got)
		}
	})

	t.Run("retried, failing again, archived", func(t *testing.T) {
		s := open(t)
		add(t, s,
			letter("allocation", "change_batch_quantity", "m1", unknown("b-1"), now),
			letter("allocation", "change_batch_quantity", "m2", unknown("b-2"), now),
			letter("allocation", "change_batch_quantity", "m3", unknown("b-3"), now),
		)
		list := find(t, s, messaging.DeadLetterQuery{})
		at := now.Add(time.Minute)
		if err := s.MarkDeadLettersRetried(ctx, []int64{list[0].ID, list[1].ID}, at); err != nil {
			t.Fatal(err)
		}
		if err := s.ArchiveDeadLetters(ctx, []int64{list[2].ID}, "alice", at); err != nil {
			t.Fatal(err)
		}
		if got := find(t, s, messaging.DeadLetterQuery{}); len(got) != 0 {
			t.Errorf("failed ones after retry and discard = %v, want none", ids(got))
		}
		retried := find(t, s, messaging.DeadLetterQuery{States: []string{messaging.DeadLetterRetried}})
		if got := ids(retried); !slices.Equal(got, []string{"m1", "m2"}) {
			t.Fatalf("retried = %v, want m1 m2", got)
		}
		if d := retried[0]; d.Retried != 1 || d.RetriedAt == nil || !d.RetriedAt.Equal(at) {
			t.Errorf("retried %+v, want retried once at %v", d, at)
		}
		archived := find(t, s, messaging.DeadLetterQuery{States: []string{messaging.DeadLetterArchived}})
		if len(archived) != 1 || archived[0].MessageID != "m3" || archived[0].ArchivedBy != "alice" || archived[0].ArchivedAt == nil || !archived[0].ArchivedAt.Equal(at) {
			t.Errorf("archived = %+v, want m3 by alice at %v", archived, at)
		}

		// m1 fails again: the same row, failed again, its failures raised.
		again := letter("allocation", "change_batch_quantity", "m1", fail.Errorf(fail.Conflict, "batch b-1 is full"), now.Add(2*time.Minute))
		again.Attempts = 2
		add(t, s, again)
		all, err := s.DeadLetters(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Fatalf("DeadLetters = %v, want the 3 rows: a message failing again is not a new row", ids(all))
		}
		failed := find(t, s, messaging.DeadLetterQuery{})
		if len(failed) != 1 {
			t.Fatalf("failed ones = %v, want m1", ids(failed))
		}
		d := failed[0]
		if d.ID != list[0].ID || d.Failures != 2 || d.Retried != 1 || d.Attempts != 3 || d.Reason != again.Reason ||
			d.Fingerprint != "conflict: batch # is full" || !d.FailedAt.Equal(again.FailedAt) || d.FirstFailedAt == nil || !d.FirstFailedAt.Equal(now) {
			t.Errorf("m1 failing again = %+v, want row %d, failures 2, retried 1, attempts 3, the new reason and time, first failed at %v", d, list[0].ID, now)
		}
		// Retried again, then by id in any state.
		if err := s.MarkDeadLettersRetried(ctx, []int64{d.ID}, now.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		got := find(t, s, messaging.DeadLetterQuery{IDs: []int64{d.ID, list[2].ID}})
		if len(got) != 2 || got[0].Retried != 2 || got[0].State != messaging.DeadLetterRetried || got[1].State != messaging.DeadLetterArchived {
			t.Errorf("by id = %+v, want m1 retried twice and m3 archived", got)
		}
	})

	if old != nil {
		t.Run("kept by an earlier version", func(t *testing.T) {
			s := open(t)
			d := letter("allocation", "change_batch_quantity", "m-old", unknown("b-9"), now)
			old(t, s, d)
			add(t, s, letter("allocation", "change_batch_quantity", "m-new", unknown("b-10"), now.Add(time.Second)))
			list := find(t, s, messaging.DeadLetterQuery{})
			if len(list) != 2 {
				t.Fatalf("FindDeadLetters = %v, want m-old and m-new", ids(list))
			}
			o := list[0]
			if o.MessageID != "m-old" || o.Fingerprint != messaging.Fingerprint("", d.Reason) || o.State != messaging.DeadLetterFailed || o.Failures != 1 || o.Group == "" {
				t.Errorf("old row read as %+v, want its fingerprint computed from its reason, failed once", o)
			}
			if got := messaging.GroupDeadLetters(find(t, s, messaging.DeadLetterQuery{Group: o.Group})); len(got) != 1 || got[0].Count != 1 {
				t.Errorf("old row's group = %+v", got)
			}
			if err := s.MarkDeadLettersRetried(ctx, []int64{o.ID}, now); err != nil {
				t.Fatal(err)
			}
			if got := find(t, s, messaging.DeadLetterQuery{States: []string{messaging.DeadLetterRetried}}); len(got) != 1 || got[0].MessageID != "m-old" {
				t.Errorf("old row retried: %v", ids(got))
			}
		})
	}
}
