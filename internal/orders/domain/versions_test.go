package domain_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/stockflow/stockflow/internal/orders/domain"
)

// news is a versioned fact of the allocation service about the line of
// LAMP.
type news struct {
	name string
	step step
}

func allocatedAt(ref string, version int) news {
	return news{fmt.Sprintf("line_allocated %s v%d", ref, version), func(o *domain.Order) error {
		o.LineAllocated("LAMP", ref, version, false, t0)
		return nil
	}}
}

func deallocatedAt(ref, reason string, version int) news {
	return news{fmt.Sprintf("line_deallocated %s %s v%d", ref, reason, version), func(o *domain.Order) error {
		o.LineDeallocated("LAMP", ref, reason, version, t0)
		return nil
	}}
}

func outOfStockAt(version int) news {
	return news{fmt.Sprintf("out_of_stock v%d", version), func(o *domain.Order) error {
		o.OutOfStock("LAMP", version, false, false, t0)
		return nil
	}}
}

// permutations returns every ordering of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			out = append(out, append(append(append([]int{}, p[:i]...), n-1), p[i:]...))
		}
	}
	return out
}

// placedOrder returns a placed order of 2 LAMP, the allocation service's
// answer not in yet.
func placedOrder(t *testing.T) *domain.Order {
	t.Helper()
	o := newOrder(t)
	for _, s := range []step{add("LAMP", 2), place} {
		if err := s(o); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func apply(t *testing.T, o *domain.Order, ns ...news) {
	t.Helper()
	for _, n := range ns {
		if err := n.step(o); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
}

// eachOrdering runs fn on every ordering of ns, as a subtest.
func eachOrdering(t *testing.T, ns []news, fn func(t *testing.T, o *domain.Order)) {
	for _, p := range permutations(len(ns)) {
		ordered := make([]news, len(p))
		names := make([]string, len(p))
		for i, j := range p {
			ordered[i], names[i] = ns[j], ns[j].name
		}
		t.Run(fmt.Sprint(names), func(t *testing.T) {
			o := placedOrder(t)
			apply(t, o, ordered...)
			fn(t, o)
		})
	}
}

func TestNewestAllocationWinsInAnyOrder(t *testing.T) {
	ns := []news{allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6), allocatedAt("b2", 7)}
	eachOrdering(t, ns, func(t *testing.T, o *domain.Order) {
		l := o.Lines[0]
		if l.State != domain.LineReserved || l.BatchRef != "b2" {
			t.Errorf("line %s in %q, want reserved in b2", l.State, l.BatchRef)
		}
		if st := o.Status(); st != domain.StatusReserved && st != domain.StatusReallocated {
			t.Errorf("status %s, want reserved or reallocated", st)
		}
	})
}

// Scenario C of the issue: out_of_stock, read at version 6 after the
// deallocation of version 6, may arrive before the line_allocated of
// version 5 that preceded it.
func TestOutOfStockAfterTheDeallocationInAnyOrder(t *testing.T) {
	ns := []news{allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6), outOfStockAt(6)}
	eachOrdering(t, ns, func(t *testing.T, o *domain.Order) {
		l := o.Lines[0]
		if l.State != domain.LineWaiting || l.BatchRef != "" {
			t.Errorf("line %s in %q, want waiting_for_stock in no batch", l.State, l.BatchRef)
		}
		if st := o.Status(); st != domain.StatusWaiting {
			t.Errorf("status %s, want waiting_for_stock", st)
		}
	})
}

// A batch shrinks and its line moves in one change: deallocated and
// allocated again at one version, in any order; then the new batch is
// counted empty in the next change, and the line is out of stock.
func TestAMoveInOneChangeInAnyOrder(t *testing.T) {
	ns := []news{allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6), allocatedAt("b2", 6)}
	eachOrdering(t, ns, func(t *testing.T, o *domain.Order) {
		if l := o.Lines[0]; l.State != domain.LineReserved || l.BatchRef != "b2" {
			t.Errorf("line %s in %q, want reserved in b2", l.State, l.BatchRef)
		}
	})
	ns = append(ns, deallocatedAt("b2", domain.ReasonBatchShrank, 7), outOfStockAt(7))
	eachOrdering(t, ns, func(t *testing.T, o *domain.Order) {
		if l := o.Lines[0]; l.State != domain.LineWaiting || l.BatchRef != "" {
			t.Errorf("line %s in %q, want waiting_for_stock in no batch", l.State, l.BatchRef)
		}
	})
}

func TestAMoveNeverStaysPending(t *testing.T) {
	for _, ref := range []string{"b1", "b2"} {
		t.Run("then line_allocated "+ref+" v7", func(t *testing.T) {
			ns := []news{allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6)}
			eachOrdering(t, ns, func(t *testing.T, o *domain.Order) {
				apply(t, o, allocatedAt(ref, 7))
				l := o.Lines[0]
				if l.State != domain.LineReserved || l.BatchRef != ref {
					t.Errorf("line %s in %q, want reserved in %s", l.State, l.BatchRef, ref)
				}
				if st := o.Status(); st == domain.StatusPending {
					t.Errorf("status %s", st)
				}
				// Older news arriving later changes nothing.
				apply(t, o, ns...)
				if l := o.Lines[0]; l.State != domain.LineReserved || l.BatchRef != ref {
					t.Errorf("after the older news again: line %s in %q, want reserved in %s", l.State, l.BatchRef, ref)
				}
			})
		})
	}
}

func TestStaleNewsIsIgnored(t *testing.T) {
	o := placedOrder(t)
	apply(t, o, allocatedAt("b2", 7))
	history := len(o.History)
	apply(t, o,
		allocatedAt("b1", 5),
		deallocatedAt("b2", domain.ReasonBatchShrank, 6),
		deallocatedAt("b2", domain.ReasonBatchShrank, 7), // a change of the same version
		outOfStockAt(6),
		allocatedAt("b2", 7), // redelivered
	)
	if l := o.Lines[0]; l.State != domain.LineReserved || l.BatchRef != "b2" || l.Moved {
		t.Fatalf("line %+v, want reserved in b2", l)
	}
	if len(o.History) != history {
		t.Errorf("stale news recorded: %+v", o.History[history:])
	}
	// An outcome read at version 7 is newer than the change of version 7.
	apply(t, o, outOfStockAt(7))
	if l := o.Lines[0]; l.State != domain.LineWaiting {
		t.Fatalf("line %+v after out_of_stock v7, want waiting", l)
	}
	// And older than the change of version 8.
	apply(t, o, allocatedAt("b3", 8), outOfStockAt(7))
	if l := o.Lines[0]; l.State != domain.LineReserved || l.BatchRef != "b3" {
		t.Fatalf("line %+v, want reserved in b3", l)
	}
}

func TestNewerDeallocationWhateverBatchItNames(t *testing.T) {
	o := placedOrder(t)
	apply(t, o, allocatedAt("b2", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6))
	if l := o.Lines[0]; l.State != domain.LineMoving {
		t.Fatalf("line %+v, want moving", l)
	}
	// With version 0, the old rule: news of another batch is older.
	o = placedOrder(t)
	apply(t, o, allocatedAt("b2", 0), deallocatedAt("b1", domain.ReasonBatchShrank, 0))
	if l := o.Lines[0]; l.State != domain.LineReserved {
		t.Fatalf("line %+v, want reserved", l)
	}
}

func TestRequestedDeallocationReleasesTheLine(t *testing.T) {
	o := placedOrder(t)
	apply(t, o, allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonRequested, 6))
	if l := o.Lines[0]; l.State != domain.LineReleased {
		t.Fatalf("line %+v, want released although the order is not cancelled", l)
	}
}

func TestNewsIsKeptWhenNothingElseChanges(t *testing.T) {
	o := placedOrder(t)
	apply(t, o, deallocatedAt("b1", domain.ReasonBatchShrank, 6)) // the line was not reserved: no history
	if o.Lines[0].News == 0 || !o.Changed() {
		t.Fatalf("news %d, changed %v: the version applied must be kept", o.Lines[0].News, o.Changed())
	}
}

// cancelledEvents returns the OrderCancelled events raised.
func cancelledEvents(o *domain.Order) []domain.OrderCancelled {
	var out []domain.OrderCancelled
	for _, e := range o.Events() {
		if c, ok := e.(domain.OrderCancelled); ok {
			out = append(out, c)
		}
	}
	return out
}

// cancelCase is an order cancelled between news of its line.
type cancelCase struct {
	name   string
	before []news // before the cancellation
	after  []news // after it
	asks   int    // OrderCancelled raised after the cancellation's own
	batch  string // the batch the line is released from, when asks > 0
}

func runCancelCases(t *testing.T, cases []cancelCase) {
	line := []domain.Item{{SKU: "LAMP", Qty: 2}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := placedOrder(t)
			apply(t, o, c.before...)
			if err := o.Cancel(t0); err != nil {
				t.Fatal(err)
			}
			apply(t, o, c.after...)
			got := cancelledEvents(o)
			if len(got) != 1+c.asks {
				t.Fatalf("OrderCancelled raised %d times after the cancellation, want %d: %+v", len(got)-1, c.asks, got)
			}
			for _, e := range got[1:] {
				if e.OrderID != "o1" || !reflect.DeepEqual(e.Lines, line) {
					t.Errorf("OrderCancelled %+v, want o1's %+v", e, line)
				}
			}
			if l := o.Lines[0]; c.asks > 0 && (l.State != domain.LineReleased || l.BatchRef != c.batch) {
				t.Errorf("line %+v, want released from %s", l, c.batch)
			}
			if o.Status() != domain.StatusCancelled {
				t.Errorf("status %s", o.Status())
			}
		})
	}
}

// A cancelled order whose line is allocated by newer news asks for its
// release again; stale news does not.
func TestCancelledOrderReleasesNewerAllocations(t *testing.T) {
	runCancelCases(t, []cancelCase{
		{"allocated after the cancellation", nil, []news{allocatedAt("b1", 5)}, 1, "b1"},
		{"a stale allocation", []news{allocatedAt("b1", 5)}, []news{allocatedAt("b2", 4)}, 0, "b1"},
		{"the same allocation again", nil, []news{allocatedAt("b1", 5), allocatedAt("b1", 5)}, 1, "b1"},
		{"a stale allocation after one released", nil, []news{allocatedAt("b1", 5), allocatedAt("b2", 3)}, 1, "b1"},
		{"a newer allocation, another batch", []news{allocatedAt("b1", 5)}, []news{allocatedAt("b2", 7)}, 1, "b2"},
		{"released, then allocated again elsewhere", []news{allocatedAt("b1", 5)}, []news{deallocatedAt("b1", domain.ReasonRequested, 6), allocatedAt("b2", 7)}, 1, "b2"},
	})
}

// A newer allocation of a cancelled order's line to the batch it was
// released from holds stock again: the order must ask for its release
// again, as it does for any other batch. (Before versions, the same batch
// meant the same allocation told twice; the versions tell those apart
// now.)
func TestCancelledOrderReleasesANewerAllocationToTheSameBatch(t *testing.T) {
	runCancelCases(t, []cancelCase{
		{"released, then allocated again to the same batch", []news{allocatedAt("b1", 5)}, []news{deallocatedAt("b1", domain.ReasonRequested, 6), allocatedAt("b1", 7)}, 1, "b1"},
		// The allocation service moved the line (b1 shrank), then found b1
		// again, after it handled the cancellation (nothing to release
		// while the line was moving): b1 holds the line's stock again.
		{"allocated after the cancellation, moved, then allocated again to the same batch", nil, []news{allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6), allocatedAt("b1", 7)}, 2, "b1"},
		{"allocated after the cancellation, moved elsewhere", nil, []news{allocatedAt("b1", 5), deallocatedAt("b1", domain.ReasonBatchShrank, 6), allocatedAt("b2", 7)}, 2, "b2"},
	})
}
