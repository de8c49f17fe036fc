package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReplayAppliesNothingTwice restarts the service with --replay on the
// brokers that keep history (Redis Streams, Kafka; NATS when the binary
// takes it): it starts, reads every message the broker keeps again, and
// its inbox recognises them all, so nothing changes.
//
// The messages are chosen so that applying any of them again would show:
// allocate o3 (o3 is then deallocated over HTTP: applied again, it would
// be allocated again) and change_batch_quantity of the early batch to 5
// (its quantity is then set back to 10 over HTTP: applied again, it would
// leave 2 units free instead of 7).
func TestReplayAppliesNothingTwice(t *testing.T) {
	for _, kind := range brokerKinds(true) {
		t.Run(kind.name, func(t *testing.T) {
			b := kind.start(t)
			dir := t.TempDir()
			s := serveOn(t, dir, b)

			sku, early, later := uniq("sku"), uniq("early"), uniq("later")
			o1, o2, o3 := uniq("order"), uniq("order"), uniq("order")
			s.addBatch(t, early, sku, 10, "2011-01-01")
			s.addBatch(t, later, sku, 10, "2011-01-02")
			line := func(o string, qty int) map[string]any { return map[string]any{"orderid": o, "sku": sku, "qty": qty} }

			b.publish(t, chanAllocate, sku, line(o1, 10)) // early: 10 of 10
			waitAllocations(t, s, map[string][]allocation{o1: {{sku, early}}})
			// o1 goes to later; early keeps 5
			b.publish(t, chanChangeBatchQuantity, early, map[string]any{"batchref": early, "qty": 5})
			waitAllocations(t, s, map[string][]allocation{o1: {{sku, later}}})
			b.publish(t, chanAllocate, sku, line(o2, 3)) // early: 3 of 5
			b.publish(t, chanAllocate, sku, line(o3, 2)) // early: 5 of 5
			want := map[string][]allocation{o1: {{sku, later}}, o2: {{sku, early}}, o3: {{sku, early}}}
			waitAllocations(t, s, want)

			// Over HTTP, past the broker: o3 goes, early is 10 again.
			expect(t, s.post(t, "/deallocate", line(o3, 2)), http.StatusOK)
			expect(t, s.post(t, "/change_batch_quantity", map[string]any{"batchref": early, "qty": 10}), http.StatusOK)
			want[o3] = nil
			waitAllocations(t, s, want)
			s.stop()
			if t.Failed() {
				t.FailNow()
			}

			s = serveOn(t, dir, b, "--replay")
			// Replayed: 3 allocate and 1 change_batch_quantity consumed
			// again by this process.
			err := eventually(15*time.Second, func() error {
				m := s.metrics(t)
				alloc := sumMetric(m, "stockflow_messages_consumed_total", `channel="allocate"`, `outcome="ok"`)
				cbq := sumMetric(m, "stockflow_messages_consumed_total", `channel="change_batch_quantity"`, `outcome="ok"`)
				if alloc < 3 || cbq < 1 {
					return fmt.Errorf("consumed %.0f allocate and %.0f change_batch_quantity messages since the restart", alloc, cbq)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("--replay did not hand the history again: %v", err)
			}
			if !strings.Contains(s.logs.String(), "replaying") {
				t.Errorf("the logs do not tell of the replay:\n%s", s.logs.String())
			}
			// Give a message applied twice (it would be consumed with the
			// others) time to show its effect through the view.
			time.Sleep(500 * time.Millisecond)
			for o, rows := range want {
				if got := s.allocations(t, o); !slices.Equal(got, rows) {
					t.Errorf("after --replay GET /allocations/%s = %v, want %v", o, got, rows)
				}
			}
			m := s.metrics(t)
			if n := sumMetric(m, "stockflow_messages_consumed_total", `outcome="failed"`); n != 0 {
				t.Errorf("%.0f replayed messages failed", n)
			}
			if n := sumMetric(m, "stockflow_messages_dead_lettered_total"); n != 0 {
				t.Errorf("%.0f replayed messages were dead-lettered", n)
			}
			// Stock unchanged: early has 7 free (10 - o2's 3), later none.
			if got := s.mustAllocate(t, uniq("order"), sku, 7); got != early {
				t.Errorf("7 more went to %q, want %q", got, early)
			}
			expect(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict)
			if dead := listDeadLetters(t, "--data", dir); len(dead) != 0 {
				t.Errorf("stockflow dead-letters listed %+v, want none", dead)
			}
			for _, line := range strings.Split(m, "\n") {
				if strings.HasPrefix(line, "stockflow_http_requests_total{") && strings.Contains(line, `status="5`) {
					t.Errorf("a 5xx answer: %s", line)
				}
			}

			// And it goes on with new messages.
			sku2, ref2, o4 := uniq("sku"), uniq("batch"), uniq("order")
			s.addBatch(t, ref2, sku2, 5, "")
			b.publish(t, chanAllocate, sku2, map[string]any{"orderid": o4, "sku": sku2, "qty": 5})
			waitAllocations(t, s, map[string][]allocation{o4: {{sku2, ref2}}})
		})
	}
}

// waitAllocations waits (10s at most) until GET /allocations/{order}
// answers want[order] for every order (nil: 404).
func waitAllocations(t testing.TB, s *server, want map[string][]allocation) {
	t.Helper()
	err := eventually(10*time.Second, func() error {
		for o, rows := range want {
			if got := s.allocations(t, o); !slices.Equal(got, rows) {
				return fmt.Errorf("GET /allocations/%s = %v, want %v", o, got, rows)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
