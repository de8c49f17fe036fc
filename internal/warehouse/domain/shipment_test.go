package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// stocked returns a batch announced with qty units.
func stocked(ref, sku string, qty int) *domain.Batch {
	b := domain.NewBatch(ref, sku)
	b.Announce(domain.Announcement{Qty: qty, Version: 1})
	return b
}

// permutations returns every ordering of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func TestDispatchOnceReady(t *testing.T) {
	lines := []domain.ShipLine{{SKU: "LAMP", Qty: 1}, {SKU: "SOFA", Qty: 2}}
	type step func(s *domain.Shipment)
	place := func(s *domain.Shipment) { s.Place("alice", lines) }
	alloc := func(sku, ref string) step { return func(s *domain.Shipment) { s.LineAllocated(sku, ref, 0) } }
	dealloc := func(sku, ref string) step { return func(s *domain.Shipment) { s.LineDeallocated(sku, ref, 0) } }
	cancel := (*domain.Shipment).Cancel
	for _, c := range []struct {
		name       string
		steps      []step
		dispatched bool
		status     string
	}{
		{"allocated, not placed", []step{alloc("LAMP", "b1"), alloc("SOFA", "b2")}, false, domain.ShipmentOpen},
		{"placed, one line missing", []step{alloc("LAMP", "b1"), place}, false, domain.ShipmentWaiting},
		{"allocated then placed", []step{alloc("LAMP", "b1"), alloc("SOFA", "b2"), place}, true, domain.ShipmentDispatched},
		{"placed then allocated", []step{place, alloc("LAMP", "b1"), alloc("SOFA", "b2")}, true, domain.ShipmentDispatched},
		{"a line lost its batch", []step{alloc("LAMP", "b1"), alloc("SOFA", "b2"), dealloc("SOFA", "b2"), place}, false, domain.ShipmentWaiting},
		{"a stale deallocation", []step{alloc("SOFA", "b3"), dealloc("SOFA", "b2"), alloc("LAMP", "b1"), place}, true, domain.ShipmentDispatched},
		{"cancelled", []step{alloc("LAMP", "b1"), place, cancel, alloc("SOFA", "b2")}, false, domain.ShipmentCancelled},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Every batch holds plenty: the goods are on the shelf.
			batches := map[string]*domain.Batch{}
			for _, ref := range []string{"b1", "b2", "b3", "b9"} {
				batches[ref] = stocked(ref, "ANY", 10)
			}
			s := domain.NewShipment("o1")
			for _, st := range c.steps {
				st(s)
				// The service tries to dispatch after each change.
				if short := s.Dispatch(batches, t0); short != nil {
					t.Fatalf("short of goods: %+v", short)
				}
			}
			evs := s.Events()
			if c.dispatched != (len(evs) == 1) {
				t.Fatalf("events %+v, want dispatched %v", evs, c.dispatched)
			}
			if s.Status() != c.status {
				t.Errorf("status %s, want %s", s.Status(), c.status)
			}
			if !c.dispatched {
				if s.Ready() != nil {
					t.Errorf("ready: %+v", s.Ready())
				}
				for ref, b := range batches {
					if b.Dispatched != 0 {
						t.Errorf("%s shipped %d units of an order not dispatched", ref, b.Dispatched)
					}
				}
				return
			}
			g := evs[0].(domain.GoodsDispatched)
			if g.OrderID != "o1" || g.Customer != "alice" || len(g.Lines) != 2 || g.Lines[0].BatchRef == "" || g.Lines[1].BatchRef == "" {
				t.Errorf("GoodsDispatched %+v", g)
			}
			if !g.DispatchedAt.Equal(t0) || s.DispatchedAt == nil {
				t.Errorf("dispatched at %v / %v, want %v", g.DispatchedAt, s.DispatchedAt, t0)
			}
			for _, l := range g.Lines {
				if b := batches[l.BatchRef]; b.Dispatched != l.Qty || b.Qty != 10-l.Qty {
					t.Errorf("batch %s: dispatched %d, qty %d; want %d, %d", l.BatchRef, b.Dispatched, b.Qty, l.Qty, 10-l.Qty)
				}
			}
			if s.Ready() != nil {
				t.Errorf("a dispatched shipment is ready: %+v", s.Ready())
			}
			// Dispatched once: later news changes nothing.
			s.LineAllocated("LAMP", "b9", 0)
			s.Place("alice", lines)
			s.Dispatch(batches, t0)
			if len(s.Events()) != 1 {
				t.Errorf("dispatched again: %+v", s.Events())
			}
			if batches["b9"].Dispatched != 0 {
				t.Errorf("b9 shipped %d units after the dispatch", batches["b9"].Dispatched)
			}
		})
	}
}

func TestReady(t *testing.T) {
	s := domain.NewShipment("o1")
	s.LineAllocated("LAMP", "b1", 3)
	if s.Ready() != nil {
		t.Fatalf("ready before it is placed: %+v", s.Ready())
	}
	s.Place("alice", []domain.ShipLine{{SKU: "LAMP", Qty: 1}, {SKU: "SOFA", Qty: 2}})
	if s.Ready() != nil {
		t.Fatalf("ready with SOFA not allocated: %+v", s.Ready())
	}
	s.LineAllocated("SOFA", "b2", 4)
	want := []domain.ShipLine{{SKU: "LAMP", Qty: 1, BatchRef: "b1"}, {SKU: "SOFA", Qty: 2, BatchRef: "b2"}}
	if got := s.Ready(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ready %+v, want %+v", got, want)
	}
	if len(s.Events()) != 0 || s.DispatchedAt != nil {
		t.Fatalf("Ready dispatched: %+v", s.Events())
	}
	s.Cancel()
	if s.Ready() != nil {
		t.Fatalf("a cancelled shipment is ready: %+v", s.Ready())
	}
}

func TestDispatchWaitsForGoodsOnTheShelf(t *testing.T) {
	s := domain.NewShipment("o1")
	s.Place("alice", []domain.ShipLine{{SKU: "LAMP", Qty: 3}, {SKU: "SOFA", Qty: 2}})
	s.LineAllocated("LAMP", "b1", 2)
	s.LineAllocated("SOFA", "b2", 2)
	b1, b2 := stocked("b1", "LAMP", 2), stocked("b2", "SOFA", 5)
	batches := map[string]*domain.Batch{"b1": b1, "b2": b2}

	short := s.Dispatch(batches, t0)
	if len(short) != 1 || short[0] != b1 {
		t.Fatalf("short %+v, want b1 alone", short)
	}
	if len(s.Events()) != 0 || s.Status() != domain.ShipmentWaiting {
		t.Fatalf("dispatched short of goods: %+v, status %s", s.Events(), s.Status())
	}
	if b1.Dispatched != 0 || b2.Dispatched != 0 || b1.Qty != 2 || b2.Qty != 5 {
		t.Fatalf("goods left: b1 %d (qty %d), b2 %d (qty %d)", b1.Dispatched, b1.Qty, b2.Dispatched, b2.Qty)
	}
	if !reflect.DeepEqual(b1.Held, []string{"o1"}) || len(b2.Held) != 0 {
		t.Fatalf("held: b1 %v, b2 %v; want o1 held by b1 alone", b1.Held, b2.Held)
	}
	if !b1.Changed() {
		t.Error("holding an order does not mark the batch changed")
	}
	// Tried again while still short: held once.
	s.Dispatch(batches, t0)
	if !reflect.DeepEqual(b1.Held, []string{"o1"}) {
		t.Fatalf("held %v, want [o1]", b1.Held)
	}

	// The allocation service announces more: the order leaves.
	if rose := b1.Announce(domain.Announcement{Qty: 4, Version: 2}); !rose {
		t.Fatal("Announce of more units did not report a rise")
	}
	held := b1.TakeHeld()
	if !reflect.DeepEqual(held, []string{"o1"}) || len(b1.Held) != 0 {
		t.Fatalf("TakeHeld %v, left %v", held, b1.Held)
	}
	if again := b1.TakeHeld(); len(again) != 0 {
		t.Fatalf("TakeHeld twice: %v", again)
	}
	if short := s.Dispatch(batches, t0); short != nil {
		t.Fatalf("short %+v after the batch rose", short)
	}
	evs := s.Events()
	if len(evs) != 1 {
		t.Fatalf("events %+v, want GoodsDispatched", evs)
	}
	g := evs[0].(domain.GoodsDispatched)
	want := []domain.ShipLine{{SKU: "LAMP", Qty: 3, BatchRef: "b1"}, {SKU: "SOFA", Qty: 2, BatchRef: "b2"}}
	if !reflect.DeepEqual(g.Lines, want) || g.OrderID != "o1" || g.Customer != "alice" {
		t.Errorf("GoodsDispatched %+v, want lines %+v", g, want)
	}
	if b1.Qty != 1 || b1.Dispatched != 3 || b2.Qty != 3 || b2.Dispatched != 2 {
		t.Errorf("b1 qty %d dispatched %d, b2 qty %d dispatched %d; want 1/3, 3/2", b1.Qty, b1.Dispatched, b2.Qty, b2.Dispatched)
	}
	if s.Status() != domain.ShipmentDispatched {
		t.Errorf("status %s", s.Status())
	}
}

func TestDispatchHeldOrdersShareTheGoods(t *testing.T) {
	b := stocked("b1", "LAMP", 1)
	batches := map[string]*domain.Batch{"b1": b}
	orders := map[string]*domain.Shipment{}
	for _, id := range []string{"o1", "o2"} {
		s := domain.NewShipment(id)
		s.Place("alice", []domain.ShipLine{{SKU: "LAMP", Qty: 2}})
		s.LineAllocated("LAMP", "b1", 1)
		s.Dispatch(batches, t0)
		orders[id] = s
	}
	if !reflect.DeepEqual(b.Held, []string{"o1", "o2"}) {
		t.Fatalf("held %v", b.Held)
	}
	b.Announce(domain.Announcement{Qty: 3, Version: 2}) // room for one of them
	for _, id := range b.TakeHeld() {
		orders[id].Dispatch(batches, t0)
	}
	if orders["o1"].Status() != domain.ShipmentDispatched || orders["o2"].Status() != domain.ShipmentWaiting {
		t.Fatalf("o1 %s, o2 %s; want dispatched, waiting", orders["o1"].Status(), orders["o2"].Status())
	}
	if !reflect.DeepEqual(b.Held, []string{"o2"}) || b.Qty != 1 {
		t.Fatalf("held %v, qty %d; want [o2], 1", b.Held, b.Qty)
	}
}

func TestShipmentVersions(t *testing.T) {
	type news struct {
		name  string
		apply func(s *domain.Shipment)
	}
	alloc := func(ref string, v int) news {
		return news{fmt.Sprintf("alloc %s v%d", ref, v), func(s *domain.Shipment) { s.LineAllocated("LAMP", ref, v) }}
	}
	dealloc := func(ref string, v int) news {
		return news{fmt.Sprintf("dealloc %s v%d", ref, v), func(s *domain.Shipment) { s.LineDeallocated("LAMP", ref, v) }}
	}
	t.Run("older news ignored", func(t *testing.T) {
		s := domain.NewShipment("o1")
		s.LineAllocated("LAMP", "b2", 7)
		s.LineAllocated("LAMP", "b1", 5)
		s.LineDeallocated("LAMP", "b2", 6)
		s.LineAllocated("LAMP", "b1", 7) // same version, another batch
		if got := s.Allocated["LAMP"]; got != "b2" {
			t.Fatalf("allocated %q, want b2", got)
		}
		if s.Versions["LAMP"] != 2*7+2 { // allocated at 7
			t.Errorf("versions %v", s.Versions)
		}
	})
	// One change may deallocate a line and allocate it again (its batch
	// shrank): at one version, the allocation is the newer, whichever
	// comes first.
	for _, order := range [][]news{{dealloc("b1", 6), alloc("b2", 6)}, {alloc("b2", 6), dealloc("b1", 6)}} {
		t.Run("moved in one change: "+order[0].name+", "+order[1].name, func(t *testing.T) {
			s := domain.NewShipment("o1")
			s.LineAllocated("LAMP", "b1", 5)
			for _, n := range order {
				n.apply(s)
			}
			if got := s.Allocated["LAMP"]; got != "b2" {
				t.Errorf("allocated %q, want b2", got)
			}
		})
	}
	t.Run("a newer deallocation clears whatever batch it names", func(t *testing.T) {
		s := domain.NewShipment("o1")
		s.LineAllocated("LAMP", "b2", 7)
		s.LineDeallocated("LAMP", "b1", 8)
		if ref, ok := s.Allocated["LAMP"]; ok {
			t.Fatalf("still allocated to %q", ref)
		}
		s.LineAllocated("LAMP", "b2", 7) // redelivered
		if ref, ok := s.Allocated["LAMP"]; ok {
			t.Fatalf("allocated again to %q by stale news", ref)
		}
	})
	t.Run("news of one sku does not age another's", func(t *testing.T) {
		s := domain.NewShipment("o1")
		s.LineAllocated("LAMP", "b1", 9)
		s.LineAllocated("SOFA", "b2", 3)
		if s.Allocated["SOFA"] != "b2" {
			t.Fatalf("allocated %v", s.Allocated)
		}
	})
	t.Run("version 0 keeps the old rules", func(t *testing.T) {
		s := domain.NewShipment("o1")
		s.LineAllocated("LAMP", "b1", 5)
		s.LineDeallocated("LAMP", "b2", 0) // not its batch: older news
		if s.Allocated["LAMP"] != "b1" {
			t.Fatalf("allocated %v", s.Allocated)
		}
		s.LineAllocated("LAMP", "b3", 0)
		s.LineDeallocated("LAMP", "b3", 0)
		if _, ok := s.Allocated["LAMP"]; ok {
			t.Fatalf("allocated %v", s.Allocated)
		}
	})
	t.Run("the decoded document without versions", func(t *testing.T) {
		s := &domain.Shipment{OrderID: "o1", Allocated: map[string]string{}} // kept by an earlier version
		s.LineAllocated("LAMP", "b1", 5)
		s.LineAllocated("LAMP", "b2", 4)
		if s.Allocated["LAMP"] != "b1" {
			t.Fatalf("allocated %v", s.Allocated)
		}
	})
	for _, c := range []struct {
		name string
		news []news
		want string // "" for no batch
	}{
		{"moved twice, then released", []news{alloc("Y", 5), dealloc("Y", 6), alloc("X", 7), dealloc("X", 8)}, ""},
		{"moved", []news{alloc("b1", 5), dealloc("b1", 6), alloc("b2", 7)}, "b2"},
	} {
		for _, p := range permutations(len(c.news)) {
			var names []string
			for _, i := range p {
				names = append(names, c.news[i].name)
			}
			t.Run(fmt.Sprintf("%s/%v", c.name, names), func(t *testing.T) {
				s := domain.NewShipment("o1")
				for _, i := range p {
					c.news[i].apply(s)
				}
				if got := s.Allocated["LAMP"]; got != c.want {
					t.Errorf("allocated %q, want %q", got, c.want)
				}
			})
		}
	}
}

func TestBatchReports(t *testing.T) {
	for _, c := range []struct {
		name    string
		kind    string
		qty     int
		want    int
		wantErr error
	}{
		{"count", domain.ReportCount, 7, 7, nil},
		{"count to zero", domain.ReportCount, 0, 0, nil},
		{"count more", domain.ReportCount, 12, 12, nil},
		{"negative count", domain.ReportCount, -1, 10, fail.Invalid},
		{"damage", domain.ReportDamage, 4, 6, nil},
		{"all damaged", domain.ReportDamage, 10, 0, nil},
		{"more damaged than there is", domain.ReportDamage, 11, 10, fail.Conflict},
		{"no damage", domain.ReportDamage, 0, 10, fail.Invalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := stocked("b1", "LAMP", 10)
			var err error
			if c.kind == domain.ReportCount {
				err = b.Count(c.qty, "", t0)
			} else {
				err = b.Damage(c.qty, "", t0)
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if b.Qty != c.want {
				t.Errorf("qty %d, want %d", b.Qty, c.want)
			}
			if err != nil {
				if len(b.Events()) != 0 || len(b.Reports) != 0 {
					t.Errorf("a refused report raised %+v, kept %+v", b.Events(), b.Reports)
				}
				return
			}
			want := domain.StockReported{BatchRef: "b1", SKU: "LAMP", Kind: c.kind, Qty: c.qty, Seq: 1}
			if evs := b.Events(); len(evs) != 1 || evs[0] != want {
				t.Errorf("events %+v, want %+v", evs, want)
			}
		})
	}
}
