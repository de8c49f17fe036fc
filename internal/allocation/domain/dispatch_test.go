package domain_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

func TestDispatch(t *testing.T) {
	const sku = "SHIPPED-CHAIR"
	o1 := line("o1", sku, 3)
	o2 := line("o2", sku, 2)
	o3 := line("o3", sku, 4)
	o4 := line("o4", sku, 2)
	// The product is loaded at version 4, as for the dispatch of o1: with
	// every line of the batch the goods left from, and o1's wherever it is.
	// Every change commits version 5.
	changed := func(ref string, qty, dispatched int) domain.Event {
		return domain.BatchQuantityChanged{Ref: ref, SKU: sku, Qty: qty, Dispatched: dispatched, Version: 5}
	}
	dispatched := func(l domain.OrderLine, ref string) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref, Reason: domain.ReasonDispatched, Version: 5}
	}
	shrank := func(l domain.OrderLine, ref string) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref, Reason: domain.ReasonBatchShrank, Version: 5}
	}
	// A line pushed out is allocated again in the same change, or is out of
	// stock (read after the change); the lines pushed out are placed oldest
	// first.
	moved := func(l domain.OrderLine, ref string) domain.Event {
		return domain.Allocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref, Version: 5}
	}
	outOfStock := func(l domain.OrderLine) domain.Event {
		return domain.OutOfStock{SKU: sku, OrderID: l.OrderID, Qty: l.Qty, Version: 5}
	}
	batch := func(ref string, qty, dispatched int, lines ...domain.OrderLine) *domain.Batch {
		eta := noETA
		if ref == "b2" {
			eta = tomorrow
		}
		b := batchWith(ref, sku, qty, eta, lines...)
		b.Dispatched = dispatched
		return b
	}
	tests := []struct {
		name       string
		b1, b2     *domain.Batch // as loaded
		orderID    string
		ref        string
		qty        int
		wantErr    error
		wantEvents []domain.Event
		wantB1     *domain.Batch // nil: as loaded
		wantB2     *domain.Batch
	}{
		{
			name: "line in the batch the goods left from",
			b1:   batch("b1", 10, 0, o1, o2), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "b1", qty: 3,
			wantEvents: []domain.Event{changed("b1", 7, 3), dispatched(o1, "b1")},
			wantB1:     batch("b1", 7, 3, o2),
		},
		{
			name: "full batch: its other lines keep their stock",
			b1:   batch("b1", 9, 0, o1, o2, o3), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "b1", qty: 3,
			wantEvents: []domain.Event{changed("b1", 6, 3), dispatched(o1, "b1")},
			wantB1:     batch("b1", 6, 3, o2, o3),
		},
		{
			name: "dispatched adds up",
			b1:   batch("b1", 10, 5, o1), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "b1", qty: 3,
			wantEvents: []domain.Event{changed("b1", 7, 8), dispatched(o1, "b1")},
			wantB1:     batch("b1", 7, 8),
		},
		{
			name: "line moved to another batch: it leaves that one, the goods leave this one",
			b1:   batch("b1", 10, 0, o2), b2: batch("b2", 10, 0, o1, o4),
			orderID: "o1", ref: "b1", qty: 3,
			wantEvents: []domain.Event{changed("b1", 7, 3), dispatched(o1, "b2")},
			wantB1:     batch("b1", 7, 3, o2),
			wantB2:     batch("b2", 10, 0, o4),
		},
		{
			name: "line released (a cancellation that came too late): the goods leave all the same",
			b1:   batch("b1", 10, 0, o2), b2: batch("b2", 10, 0, o4),
			orderID: "o1", ref: "b1", qty: 3,
			wantEvents: []domain.Event{changed("b1", 7, 3)},
			wantB1:     batch("b1", 7, 3, o2),
		},
		{
			name: "line moved, and the batch no longer holds its lines: the latest go",
			// 9 of 10 allocated; 3 leave for o1, which b2 holds: 7 left.
			b1: batch("b1", 10, 0, o3, o2, o4), b2: batch("b2", 10, 0, o1),
			orderID: "o1", ref: "b1", qty: 3,
			// o4 takes the room o1 left in b2.
			wantEvents: []domain.Event{changed("b1", 7, 3), dispatched(o1, "b2"), shrank(o4, "b1"), moved(o4, "b2")},
			wantB1:     batch("b1", 7, 3, o3, o2),
			wantB2:     batch("b2", 10, 0, o4),
		},
		{
			name: "line released, and the batch no longer holds its lines: the latest go until it does",
			// 8 of 10 allocated; 5 leave: o4, then o2 go (the latest first,
			// whatever their sizes), o3 stays.
			b1: batch("b1", 10, 0, o3, o2, o4), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "b1", qty: 5,
			// b1 has 1 unit left: both go to b2, oldest first (the
			// reverse of the order they left).
			wantEvents: []domain.Event{changed("b1", 5, 5), shrank(o4, "b1"), shrank(o2, "b1"), moved(o2, "b2"), moved(o4, "b2")},
			wantB1:     batch("b1", 5, 5, o3),
			wantB2:     batch("b2", 10, 0, o2, o4),
		},
		{
			name: "line released, the batch no longer holds its lines, and no batch can take them: out of stock",
			b1:   batch("b1", 10, 0, o3, o2, o4), b2: batch("b2", 1, 0),
			orderID: "o1", ref: "b1", qty: 5,
			wantEvents: []domain.Event{
				changed("b1", 5, 5), shrank(o4, "b1"), shrank(o2, "b1"), outOfStock(o2), outOfStock(o4),
			},
			wantB1: batch("b1", 5, 5, o3),
		},
		{
			name: "goods from another batch than the line's, which shrinks: its latest line takes the room the line left",
			// 10 of 10 allocated in b1; o1 (3) is held in b1 but the goods
			// left from b2, which shrinks below its o4 (2): o4 goes to b1.
			b1: batch("b1", 10, 0, o1, o2, line("o5", sku, 5)), b2: batch("b2", 4, 0, o4),
			orderID: "o1", ref: "b2", qty: 3,
			wantEvents: []domain.Event{changed("b2", 1, 3), dispatched(o1, "b1"), shrank(o4, "b2"), moved(o4, "b1")},
			wantB1:     batch("b1", 10, 0, o2, line("o5", sku, 5), o4),
			wantB2:     batch("b2", 1, 3),
		},
		{
			name: "goods from a batch on its way (the warehouse knows better)",
			b1:   batch("b1", 10, 0, o1), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "b2", qty: 3,
			wantEvents: []domain.Event{changed("b2", 7, 3), dispatched(o1, "b1")},
			wantB1:     batch("b1", 10, 0),
			wantB2:     batch("b2", 7, 3),
		},
		{
			name: "legacy: no batch named, the goods leave the line's batch, the line's quantity",
			b1:   batch("b1", 10, 0, o2), b2: batch("b2", 10, 1, o1),
			orderID: "o1", ref: "", qty: 99,
			wantEvents: []domain.Event{changed("b2", 7, 4), dispatched(o1, "b2")},
			wantB2:     batch("b2", 7, 4),
		},
		{
			name: "legacy: no batch named and no line",
			b1:   batch("b1", 10, 0, o2), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "", qty: 3,
			wantErr: domain.ErrNotAllocated,
		},
		{
			name: "unknown batch: nothing changes, the line stays",
			b1:   batch("b1", 10, 0, o1), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "b9", qty: 3,
			wantErr: domain.ErrUnknownBatch,
		},
		{
			name: "unknown batch, no line",
			b1:   batch("b1", 10, 0), b2: batch("b2", 10, 0),
			orderID: "o1", ref: "B1", qty: 3,
			wantErr: domain.ErrUnknownBatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b1, b2 := *tt.b1, *tt.b2
			b1.Lines, b2.Lines = slices.Clone(b1.Lines), slices.Clone(b2.Lines)
			p := domain.NewProduct(sku, 4, &b2, &b1)

			err := p.Dispatch(tt.orderID, tt.ref, tt.qty)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Dispatch error = %v, want %v", err, tt.wantErr)
			}
			// In order, and with their versions.
			if diff := cmp.Diff(tt.wantEvents, p.Events(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if got, want := p.Changed(), len(tt.wantEvents) > 0; got != want {
				t.Errorf("Changed() = %v, want %v", got, want)
			}
			for _, c := range []struct{ loaded, want *domain.Batch }{{tt.b1, tt.wantB1}, {tt.b2, tt.wantB2}} {
				want := c.want
				if want == nil {
					want = c.loaded
				}
				if diff := cmp.Diff(want, mustBatch(t, p, c.loaded.Ref), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("batch %s (-want +got):\n%s", c.loaded.Ref, diff)
				}
			}
		})
	}
}

// The goods leave the batch whatever the line's quantity: the warehouse
// knows what left.
func TestDispatchTakesTheQuantityDispatched(t *testing.T) {
	const sku = "SHIPPED-CHAIR"
	p := domain.NewProduct(sku, 0, batchWith("b1", sku, 10, noETA, line("o1", sku, 3)))
	if err := p.Dispatch("o1", "b1", 2); err != nil {
		t.Fatal(err)
	}
	assertEvents(t, p.Events(), []domain.Event{
		domain.BatchQuantityChanged{Ref: "b1", SKU: sku, Qty: 8, Dispatched: 2},
		domain.Deallocated{OrderID: "o1", SKU: sku, Qty: 3, BatchRef: "b1", Reason: domain.ReasonDispatched},
	})
	if b := mustBatch(t, p, "b1"); b.Purchased != 8 || b.Allocated != 0 || b.Dispatched != 2 {
		t.Errorf("b1 = %+v, want 8 units, none allocated, 2 dispatched", b)
	}
}

// A dispatch, then its stock is allocated again: what left is gone.
func TestDispatchedStockIsNotAllocatedAgain(t *testing.T) {
	const sku = "SHIPPED-CHAIR"
	p := domain.NewProduct(sku, 0, newBatch("b1", sku, 5, noETA))
	mustAllocate(t, p, line("o1", sku, 5))
	if _, err := p.Deallocate(line("o1", sku, 5)); err != nil { // cancelled
		t.Fatal(err)
	}
	p = reload(p)
	if err := p.Dispatch("o1", "b1", 5); err != nil { // shipped all the same
		t.Fatal(err)
	}
	p = reload(p)
	if _, err := p.Allocate(line("o2", sku, 5)); !errors.Is(err, domain.ErrOutOfStock) {
		t.Errorf("allocating the dispatched stock: %v, want ErrOutOfStock", err)
	}
	if _, err := p.Allocate(line("o2", sku, 1)); !errors.Is(err, domain.ErrOutOfStock) {
		t.Errorf("allocating from an empty batch: %v, want ErrOutOfStock", err)
	}
}
