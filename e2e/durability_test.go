package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRestart stops stockflow with SIGTERM and starts it again on the same
// data directory: batches, allocations and stock survive.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	sku, early, later := uniq("sku"), uniq("early"), uniq("later")
	o1, o2 := uniq("order"), uniq("order")

	s := startOn(t, dir)
	s.addBatch(t, early, sku, 10, "2011-01-01")
	s.addBatch(t, later, sku, 10, "2011-01-02")
	if got := s.mustAllocate(t, o1, sku, 7); got != early {
		t.Fatalf("allocated to %q, want %q", got, early)
	}
	if got := s.mustAllocate(t, o2, sku, 5); got != later {
		t.Fatalf("allocated to %q, want %q", got, later)
	}
	s.stop() // asserts exit code 0
	if t.Failed() {
		t.FailNow()
	}

	s = startOn(t, dir)
	for order, ref := range map[string]string{o1: early, o2: later} {
		if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, ref}}) {
			t.Errorf("after restart GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, ref)
		}
	}
	// Allocating a line again answers its batch and takes nothing.
	if got := s.mustAllocate(t, o1, sku, 7); got != early {
		t.Errorf("re-allocating %s after restart went to %q, want %q", o1, got, early)
	}
	// The batches are still there.
	expectMessageContains(t, s.post(t, "/add_batch", batch{early, sku, 10, ""}.body()), http.StatusConflict, early)
	// 3 left in the early batch and 5 in the later one.
	if got := s.mustAllocate(t, uniq("order"), sku, 3); got != early {
		t.Errorf("3 more went to %q, want %q", got, early)
	}
	if got := s.mustAllocate(t, uniq("order"), sku, 5); got != later {
		t.Errorf("5 more went to %q, want %q", got, later)
	}
	expectMessage(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict, "Out of stock for sku "+sku)
	// Stopping cleanly again works too (and again at cleanup).
	s.stop()
	s = startOn(t, dir)
	if rows := s.allocations(t, o2); !slices.Equal(rows, []allocation{{sku, later}}) {
		t.Errorf("after the second restart GET /allocations/%s = %v, want [{%s %s}]", o2, rows, sku, later)
	}
}

// TestKill9 kills stockflow with SIGKILL while allocations are running and
// starts it again on the same data directory: every allocation it answered
// 201 is there, and the stock left is what the allocations did not take.
func TestKill9(t *testing.T) {
	const (
		stock   = 100
		orders  = 60
		workers = 4
		killAt  = 20 // SIGKILL once this many allocations were answered
	)
	dir := t.TempDir()
	sku, ref := uniq("sku"), uniq("batch")

	first := startOn(t, dir)
	first.addBatch(t, ref, sku, stock, "")

	type outcome int
	const (
		notSent   outcome = iota
		allocated         // answered 201
		failed            // no answer: in flight when killed, or refused after
	)
	ids := make([]string, orders)
	outcomes := make([]outcome, orders)
	batchOf := make([]string, orders)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", uniq("k9"), i)
	}

	var (
		next     atomic.Int64
		answered atomic.Int64
		killOnce sync.Once
		wg       sync.WaitGroup
		mu       sync.Mutex
		problems []string
	)
	kill := func() { killOnce.Do(first.kill) }
	for range workers {
		wg.Go(func() {
			// Each client goes on sending until it gets no answer, so that
			// the kill lands while requests are on their way.
			for {
				i := int(next.Add(1) - 1)
				if i >= orders {
					return
				}
				r, err := first.request(context.Background(), http.MethodPost, "/allocate", lineBody(ids[i], sku, 1), nil)
				if err != nil {
					outcomes[i] = failed
					return
				}
				if r.Status != http.StatusCreated {
					mu.Lock()
					problems = append(problems, r.String())
					mu.Unlock()
					continue
				}
				var b struct {
					BatchRef string `json:"batchref"`
				}
				if err := json.Unmarshal(r.Body, &b); err != nil || b.BatchRef == "" {
					mu.Lock()
					problems = append(problems, r.String()+" (no batchref)")
					mu.Unlock()
				}
				outcomes[i], batchOf[i] = allocated, b.BatchRef
				if answered.Add(1) == killAt {
					kill()
				}
			}
		})
	}
	wg.Wait()
	kill() // in case every order was answered before killAt (cannot happen with 60 > 20)
	for _, p := range problems {
		t.Errorf("before the kill: %s, want 201", p)
	}
	var n201, nFailed, nNotSent int
	for _, o := range outcomes {
		switch o {
		case allocated:
			n201++
		case failed:
			nFailed++
		case notSent:
			nNotSent++
		}
	}
	t.Logf("before SIGKILL: %d answered 201, %d without an answer, %d not sent", n201, nFailed, nNotSent)
	if n201 < killAt {
		t.Fatalf("only %d allocations answered before the kill, want at least %d", n201, killAt)
	}
	if n201 == orders {
		t.Fatalf("every allocation was answered: the kill was not mid-way")
	}

	s := startOn(t, dir)
	total := 0
	for i, id := range ids {
		rows := s.allocations(t, id)
		switch outcomes[i] {
		case allocated:
			if !slices.Equal(rows, []allocation{{sku, batchOf[i]}}) {
				t.Errorf("order %s was answered 201 (batch %s) before the kill; after restart GET /allocations = %v", id, batchOf[i], rows)
			}
			total++
		case failed:
			// It may or may not have been allocated; if it was, it counts.
			switch {
			case rows == nil:
			case slices.Equal(rows, []allocation{{sku, ref}}):
				total++
			default:
				t.Errorf("order %s (in flight at the kill): GET /allocations = %v, want none or [{%s %s}]", id, rows, sku, ref)
			}
		case notSent:
			if rows != nil {
				t.Errorf("order %s was never sent, but GET /allocations = %v", id, rows)
			}
		}
	}
	left := s.remaining(t, uniq("after-k9"), sku, stock)
	t.Logf("after restart: %d lines allocated, %d units left", total, left)
	if left != stock-total {
		t.Errorf("%d units left after restart, want %d - %d allocated lines = %d", left, stock, total, stock-total)
	}
}
