// Package docstoretest is the contract every document store passes: run
// Run from each adapter's tests.
package docstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

type counter struct {
	N int `json:"n"`
}

// Run runs the contract against the stores open returns (a new, empty
// store at each call).
func Run(t *testing.T, open func(t *testing.T) docstore.Store) {
	ctx := context.Background()
	put := func(t *testing.T, s docstore.Store, kind, id, index string, n int) {
		t.Helper()
		_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			_, v, err := docstore.Load[counter](ctx, tx, kind, id)
			if err != nil && !errors.Is(err, fail.NotFound) {
				return err
			}
			return docstore.Save(ctx, tx, kind, id, v, index, counter{n})
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("GetMissing", func(t *testing.T) {
		s := open(t)
		if _, err := s.Get(ctx, "thing", "nope"); !errors.Is(err, fail.NotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
		_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			_, err := tx.Get(ctx, "thing", "nope")
			return err
		})
		if !errors.Is(err, fail.NotFound) {
			t.Fatalf("Tx.Get = %v, want ErrNotFound", err)
		}
	})

	t.Run("PutThenGetRaisesTheVersion", func(t *testing.T) {
		s := open(t)
		put(t, s, "thing", "a", "", 1)
		put(t, s, "thing", "a", "", 2)
		d, err := s.Get(ctx, "thing", "a")
		if err != nil {
			t.Fatal(err)
		}
		var c counter
		if err := json.Unmarshal(d.Body, &c); err != nil {
			t.Fatal(err)
		}
		if d.Version != 2 || c.N != 2 || d.Kind != "thing" || d.ID != "a" || d.UpdatedAt.IsZero() {
			t.Fatalf("got %+v (body %s), want version 2 of thing a with n 2", d, d.Body)
		}
		if _, err := s.Get(ctx, "other", "a"); !errors.Is(err, fail.NotFound) {
			t.Fatalf("kinds are apart: Get(other, a) = %v", err)
		}
	})

	t.Run("StaleVersionConflicts", func(t *testing.T) {
		s := open(t)
		put(t, s, "thing", "a", "", 1)
		put(t, s, "thing", "a", "", 2)
		runs := 0
		_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			runs++
			return docstore.Save(ctx, tx, "thing", "a", 1, "", counter{99})
		})
		if !errors.Is(err, messaging.ErrConcurrentUpdate) {
			t.Fatalf("Save at a stale version = %v, want ErrConflict", err)
		}
		if runs != messaging.MaxTransactAttempts {
			t.Errorf("fn ran %d times, want %d (retried)", runs, messaging.MaxTransactAttempts)
		}
		_, err = s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			return docstore.Save(ctx, tx, "thing", "a", 0, "", counter{99})
		})
		if !errors.Is(err, messaging.ErrConcurrentUpdate) {
			t.Fatalf("Save of an existing document as new = %v, want ErrConflict", err)
		}
		if d, _ := s.Get(ctx, "thing", "a"); d.Version != 2 {
			t.Fatalf("version %d after conflicts, want 2", d.Version)
		}
	})

	t.Run("RacingWritersLoseNoUpdate", func(t *testing.T) {
		s := open(t)
		const writers, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
						c, v, err := docstore.Load[counter](ctx, tx, "counter", "c")
						if err != nil && !errors.Is(err, fail.NotFound) {
							return err
						}
						c.N++
						return docstore.Save(ctx, tx, "counter", "c", v, "", c)
					})
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		d, err := s.Get(ctx, "counter", "c")
		if err != nil {
			t.Fatal(err)
		}
		var c counter
		json.Unmarshal(d.Body, &c)
		if c.N != writers*each || d.Version != writers*each {
			t.Fatalf("counter %d at version %d, want %d", c.N, d.Version, writers*each)
		}
	})

	t.Run("FailedTransactionStoresNothing", func(t *testing.T) {
		s := open(t)
		boom := errors.New("boom")
		_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			if err := docstore.Save(ctx, tx, "thing", "a", 0, "", counter{1}); err != nil {
				return err
			}
			tx.Raise(raised("x", "k"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Transact = %v, want fn's error", err)
		}
		if _, err := s.Get(ctx, "thing", "a"); !errors.Is(err, fail.NotFound) {
			t.Fatalf("document of a failed transaction: %v", err)
		}
		if envs, _ := s.Messaging().Unpublished(ctx, 10); len(envs) != 0 {
			t.Fatalf("outbox holds %d messages of a failed transaction", len(envs))
		}
	})

	t.Run("RaisedMessagesGoToTheOutbox", func(t *testing.T) {
		s := open(t)
		a, b := raised("first", "k1"), raised("second", "k2")
		got, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			tx.Raise(a)
			tx.Raise(b)
			return docstore.Save(ctx, tx, "thing", "a", 0, "", counter{1})
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Envelope.ID != a.Envelope.ID || got[1].Envelope.ID != b.Envelope.ID {
			t.Fatalf("Transact returned %+v, want the two raised, in order", got)
		}
		envs, err := s.Messaging().Unpublished(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []messaging.Envelope{a.Envelope, b.Envelope}
		if diff := cmp.Diff(want, envs, cmp.Comparer(func(x, y json.RawMessage) bool { return string(x) == string(y) })); diff != "" {
			t.Fatalf("outbox (-want +got):\n%s", diff)
		}
	})

	t.Run("InboxSkipsAHandledMessage", func(t *testing.T) {
		s := open(t)
		mctx := messaging.WithMeta(ctx, messaging.Meta{MessageID: messaging.NewID(), Consumer: "test/chan"})
		incr := func(ctx context.Context) error {
			_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
				c, v, err := docstore.Load[counter](ctx, tx, "counter", "c")
				if err != nil && !errors.Is(err, fail.NotFound) {
					return err
				}
				c.N++
				return docstore.Save(ctx, tx, "counter", "c", v, "", c)
			})
			return err
		}
		if err := incr(mctx); err != nil {
			t.Fatal(err)
		}
		if err := incr(mctx); !errors.Is(err, messaging.ErrAlreadyHandled) {
			t.Fatalf("second handling = %v, want ErrAlreadyHandled", err)
		}
		other := messaging.WithMeta(ctx, messaging.Meta{MessageID: messaging.MetaFrom(mctx).MessageID, Consumer: "other/chan"})
		if err := incr(other); err != nil {
			t.Fatalf("another consumer, same message: %v", err)
		}
		if err := incr(ctx); err != nil { // no message: no inbox
			t.Fatal(err)
		}
		d, _ := s.Get(ctx, "counter", "c")
		if d.Version != 3 {
			t.Fatalf("counter at version %d, want 3", d.Version)
		}
	})

	t.Run("FindByIndex", func(t *testing.T) {
		s := open(t)
		for i, idx := range []string{"open", "done", "open", "open"} {
			put(t, s, "job", fmt.Sprintf("j%d", i), idx, i)
		}
		put(t, s, "other", "j9", "open", 9)
		ids := func(docs []docstore.Doc, err error) []string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, d := range docs {
				out = append(out, d.ID)
			}
			return out
		}
		for _, c := range []struct {
			index  string
			limit  int
			newest bool
			want   []string
		}{
			{"open", 10, false, []string{"j0", "j2", "j3"}},
			{"open", 2, true, []string{"j3", "j2"}},
			{"done", 10, false, []string{"j1"}},
			{"", 10, false, []string{"j0", "j1", "j2", "j3"}},
			{"none", 10, false, nil},
		} {
			if diff := cmp.Diff(c.want, ids(s.Find(ctx, docstore.Query{Kind: "job", Index: c.index, Limit: c.limit, NewestFirst: c.newest}))); diff != "" {
				t.Errorf("Find(job, %q, %d, %v) (-want +got):\n%s", c.index, c.limit, c.newest, diff)
			}
		}
		put(t, s, "job", "j0", "done", 10)
		if diff := cmp.Diff([]string{"j2", "j3"}, ids(s.Find(ctx, docstore.Query{Kind: "job", Index: "open", Limit: 10}))); diff != "" {
			t.Errorf("after re-indexing j0 (-want +got):\n%s", diff)
		}
		// Pages: each starts past the last id of the one before.
		for _, c := range []struct {
			after  string
			newest bool
			want   []string
		}{
			{"j0", false, []string{"j2"}},
			{"j2", false, []string{"j3"}},
			{"j3", false, nil},
			{"j3", true, []string{"j2"}},
			{"j2", true, nil},
		} {
			got := ids(s.Find(ctx, docstore.Query{Kind: "job", Index: "open", After: c.after, Limit: 1, NewestFirst: c.newest}))
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("the page after %s (newest first: %v) (-want +got):\n%s", c.after, c.newest, diff)
			}
		}
	})

	t.Run("OddText", func(t *testing.T) {
		s := open(t)
		body := map[string]string{"name": "nul\x00 tab\t ünïcode \U0001F4E6 <&>"}
		_, err := s.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
			return docstore.Save(ctx, tx, "thing", "id with spaces/ünï", 0, "idx ü", body)
		})
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.Get(ctx, "thing", "id with spaces/ünï")
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		json.Unmarshal(d.Body, &got)
		if diff := cmp.Diff(body, got); diff != "" {
			t.Fatalf("body (-want +got):\n%s", diff)
		}
	})
}

func raised(channel, key string) messaging.Raised {
	return messaging.Raised{Envelope: messaging.Envelope{
		ID: messaging.NewID(), Channel: channel, Key: key, CorrelationID: "corr", CausationID: "cause",
		OccurredAt: time.Now().Truncate(time.Microsecond).UTC(), Payload: json.RawMessage(`{"a":1}`),
	}}
}
