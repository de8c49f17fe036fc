package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/valid"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestDispatchOnceReady(t *testing.T) {
	lines := []domain.ShipLine{{SKU: "LAMP", Qty: 1}, {SKU: "SOFA", Qty: 2}}
	type step func(s *domain.Shipment)
	place := func(s *domain.Shipment) { s.Place("alice", lines, t0) }
	alloc := func(sku, ref string) step { return func(s *domain.Shipment) { s.LineAllocated(sku, ref, t0) } }
	dealloc := func(sku, ref string) step { return func(s *domain.Shipment) { s.LineDeallocated(sku, ref) } }
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
			s := domain.NewShipment("o1")
			for _, st := range c.steps {
				st(s)
			}
			evs := s.Events()
			if c.dispatched != (len(evs) == 1) {
				t.Fatalf("events %+v, want dispatched %v", evs, c.dispatched)
			}
			if s.Status() != c.status {
				t.Errorf("status %s, want %s", s.Status(), c.status)
			}
			if !c.dispatched {
				return
			}
			g := evs[0].(domain.GoodsDispatched)
			if g.OrderID != "o1" || g.Customer != "alice" || len(g.Lines) != 2 || g.Lines[0].BatchRef == "" || g.Lines[1].BatchRef == "" {
				t.Errorf("GoodsDispatched %+v", g)
			}
			// Dispatched once: later news changes nothing.
			s.LineAllocated("LAMP", "b9", t0)
			s.Place("alice", lines, t0)
			if len(s.Events()) != 1 {
				t.Errorf("dispatched again: %+v", s.Events())
			}
		})
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
		{"negative count", domain.ReportCount, -1, 10, valid.ErrInvalid},
		{"damage", domain.ReportDamage, 4, 6, nil},
		{"all damaged", domain.ReportDamage, 10, 0, nil},
		{"more damaged than there is", domain.ReportDamage, 11, 10, valid.ErrConflict},
		{"no damage", domain.ReportDamage, 0, 10, valid.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := domain.NewBatch("b1", "LAMP")
			b.Announced(10)
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
				if len(b.Events()) != 0 {
					t.Errorf("a refused report raised %+v", b.Events())
				}
				return
			}
			want := domain.ChangeBatchQuantity{BatchRef: "b1", Qty: c.want}
			if evs := b.Events(); len(evs) != 1 || evs[0] != want {
				t.Errorf("events %+v, want %+v", evs, want)
			}
		})
	}
}
