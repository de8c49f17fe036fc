package domain_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/orders/domain"
)

func TestStockArrived(t *testing.T) {
	for _, c := range []struct {
		name      string
		steps     []step
		backorder bool
		placed    bool
		last      string // the last history entry
		filled    bool   // BackorderFilled raised
	}{
		{"a waiting cart line", []step{add("LAMP", 2), outOfStock("LAMP")}, true, false, "stock_arrived", true},
		{"a waiting order line", []step{add("LAMP", 2), outOfStock("LAMP"), place}, true, true, "stock_arrived", true},
		{"waiting, by the order's account only", []step{add("LAMP", 2), outOfStock("LAMP")}, false, false, "stock_arrived", true},
		{"waiting, by the allocation service's account only", []step{add("LAMP", 2)}, true, false, "stock_arrived", true},
		{"pushed out, waited, back", []step{add("LAMP", 2), allocated("LAMP", "b1"), place, deallocated("LAMP", "b1", domain.ReasonBatchShrank), outOfStock("LAMP")}, true, true, "stock_arrived", true},
		{"reserved directly", []step{add("LAMP", 2)}, false, false, "reserved", false},
		{"told twice", []step{add("LAMP", 2), allocated("LAMP", "b3")}, true, false, "reserved", false},
		{"cancelled meanwhile", []step{add("LAMP", 2), outOfStock("LAMP"), cancel}, true, false, "released", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrder(t)
			for _, s := range c.steps {
				if err := s(o); err != nil {
					t.Fatal(err)
				}
			}
			before := len(o.Events())
			o.LineAllocated("LAMP", "b3", 0, c.backorder, t0)
			last := o.History[len(o.History)-1]
			if last.Event != c.last {
				t.Fatalf("last history entry %+v, want %s", last, c.last)
			}
			if c.last == "stock_arrived" && last.Detail != "LAMP arrived: reserved in batch b3" {
				t.Errorf("history says %q", last.Detail)
			}
			var filled []domain.BackorderFilled
			for _, e := range o.Events()[before:] {
				if f, ok := e.(domain.BackorderFilled); ok {
					filled = append(filled, f)
				}
			}
			if !c.filled {
				if len(filled) != 0 {
					t.Errorf("raised %+v, want no BackorderFilled", filled)
				}
				return
			}
			want := domain.BackorderFilled{OrderID: "o1", Customer: "alice", Email: "alice@example.com", SKU: "LAMP", Qty: 2, BatchRef: "b3", Placed: c.placed}
			if len(filled) != 1 || filled[0] != want {
				t.Errorf("raised %+v, want %+v", filled, want)
			}
			if o.Lines[0].State != domain.LineReserved || o.Lines[0].BatchRef != "b3" {
				t.Errorf("line %+v, want reserved in b3", o.Lines[0])
			}
			if c.placed && !reflect.DeepEqual(eventNames(o.Events()[before:]), []string{"BackorderFilled", "OrderStatusChanged"}) {
				t.Errorf("a placed order's arrival raised %v, want BackorderFilled and its status change", eventNames(o.Events()[before:]))
			}
		})
	}
}

// The versions that order the allocation service's news hold for stock
// that arrives: news older than the line's is ignored, and a redelivered
// arrival is told once.
func TestStockArrivedKeepsVersions(t *testing.T) {
	o := newOrder(t)
	for _, s := range []step{add("LAMP", 2), place} {
		if err := s(o); err != nil {
			t.Fatal(err)
		}
	}
	o.OutOfStock("LAMP", 4, false, true, t0)
	o.LineAllocated("LAMP", "b1", 3, false, t0) // older than the out_of_stock: ignored
	if o.Lines[0].State != domain.LineWaiting {
		t.Fatalf("line %+v after older news, want waiting", o.Lines[0])
	}
	o.LineAllocated("LAMP", "b3", 5, true, t0)
	o.LineAllocated("LAMP", "b3", 5, true, t0)
	n := 0
	for _, e := range o.Events() {
		if _, ok := e.(domain.BackorderFilled); ok {
			n++
		}
	}
	if n != 1 || o.Lines[0].State != domain.LineReserved || o.Lines[0].BatchRef != "b3" {
		t.Errorf("%d BackorderFilled, line %+v; want one, reserved in b3", n, o.Lines[0])
	}
}

// The warehouse may tell of the dispatch before the allocation service's
// line_allocated (another channel) tells the order its waiting line got
// stock: the dispatch says so, once, and the late allocation changes
// nothing.
func TestDispatchOfAWaitingLineTellsTheCustomer(t *testing.T) {
	o, err := domain.NewOrder("o1", "jane", "jane@example.com", t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.AddItem("LAMP", 2, time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	o.OutOfStock("LAMP", 1, true, true, t0)
	if err := o.Place(t0); err != nil {
		t.Fatal(err)
	}
	before := len(o.Events())
	o.GoodsDispatched(map[string]string{"LAMP": "b3"}, t0)
	o.LineAllocated("LAMP", "b3", 2, true, t0)
	var filled []domain.BackorderFilled
	for _, e := range o.Events()[before:] {
		if f, ok := e.(domain.BackorderFilled); ok {
			filled = append(filled, f)
		}
	}
	want := domain.BackorderFilled{OrderID: "o1", Customer: "jane", Email: "jane@example.com", SKU: "LAMP", Qty: 2, BatchRef: "b3", Placed: true}
	if len(filled) != 1 || filled[0] != want {
		t.Fatalf("backorder_filled %+v, want once %+v", filled, want)
	}
	if o.Status() != domain.StatusDispatched {
		t.Errorf("status %s", o.Status())
	}
}
