package domain_test

import (
	"errors"
	"testing"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

func TestChangeBatchQuantity(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	o1 := line("o1", sku, 5)
	o2 := line("o2", sku, 5)
	o3 := line("o3", sku, 5)
	o4 := line("o4", sku, 5)
	shrank := func(l domain.OrderLine) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: "batch1", Reason: domain.ReasonBatchShrank}
	}
	changed := func(qty int) domain.Event {
		return domain.BatchQuantityChanged{Ref: "batch1", SKU: sku, Qty: qty}
	}
	tests := []struct {
		name          string
		purchased     int
		newQty        int
		wantEvents    []domain.Event
		wantLines     []domain.OrderLine
		wantAvailable int
	}{
		{
			name:          "same quantity raises nothing",
			purchased:     20,
			newQty:        20,
			wantEvents:    nil,
			wantLines:     []domain.OrderLine{o1, o2, o3, o4},
			wantAvailable: 0,
		},
		{
			name:          "increase raises only BatchQuantityChanged",
			purchased:     20,
			newQty:        50,
			wantEvents:    []domain.Event{changed(50)},
			wantLines:     []domain.OrderLine{o1, o2, o3, o4},
			wantAvailable: 30,
		},
		{
			name:          "decrease that still covers the allocations deallocates nothing",
			purchased:     30,
			newQty:        21,
			wantEvents:    []domain.Event{changed(21)},
			wantLines:     []domain.OrderLine{o1, o2, o3, o4},
			wantAvailable: 1,
		},
		{
			name:          "decrease to exactly the allocated quantity deallocates nothing",
			purchased:     30,
			newQty:        20,
			wantEvents:    []domain.Event{changed(20)},
			wantLines:     []domain.OrderLine{o1, o2, o3, o4},
			wantAvailable: 0,
		},
		{
			name:          "short by one deallocates the latest line",
			purchased:     20,
			newQty:        19,
			wantEvents:    []domain.Event{changed(19), shrank(o4)},
			wantLines:     []domain.OrderLine{o1, o2, o3},
			wantAvailable: 4,
		},
		{
			name:          "short by exactly one line deallocates just that line",
			purchased:     20,
			newQty:        15,
			wantEvents:    []domain.Event{changed(15), shrank(o4)},
			wantLines:     []domain.OrderLine{o1, o2, o3},
			wantAvailable: 0,
		},
		{
			name:          "deallocates latest first until available is not negative",
			purchased:     20,
			newQty:        9,
			wantEvents:    []domain.Event{changed(9), shrank(o4), shrank(o3), shrank(o2)},
			wantLines:     []domain.OrderLine{o1},
			wantAvailable: 4,
		},
		{
			name:          "zero deallocates every line, latest first",
			purchased:     20,
			newQty:        0,
			wantEvents:    []domain.Event{changed(0), shrank(o4), shrank(o3), shrank(o2), shrank(o1)},
			wantLines:     nil,
			wantAvailable: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 0,
				newBatch("batch2", sku, 100, tomorrow),
				newBatch("batch1", sku, tt.purchased, noETA),
			)
			for _, l := range []domain.OrderLine{o1, o2, o3, o4} {
				if ref := mustAllocate(t, p, l); ref != "batch1" {
					t.Fatalf("setup: %s allocated to %s, want batch1", l.OrderID, ref)
				}
			}
			n := len(p.Events())

			if err := p.ChangeBatchQuantity("batch1", tt.newQty); err != nil {
				t.Fatalf("ChangeBatchQuantity: unexpected error %v", err)
			}
			assertEvents(t, eventsSince(p, n), tt.wantEvents)
			b := mustBatch(t, p, "batch1")
			assertLines(t, b, tt.wantLines)
			if b.Purchased != tt.newQty {
				t.Errorf("Purchased = %d, want %d", b.Purchased, tt.newQty)
			}
			if got := b.Available(); got != tt.wantAvailable {
				t.Errorf("Available() = %d, want %d", got, tt.wantAvailable)
			}
			if b.Available() < 0 {
				t.Errorf("Available() = %d is negative after the change", b.Available())
			}
			wantAllocated := 0
			for _, l := range tt.wantLines {
				wantAllocated += l.Qty
			}
			if b.Allocated != wantAllocated {
				t.Errorf("Allocated = %d, want %d", b.Allocated, wantAllocated)
			}
			if other := mustBatch(t, p, "batch2"); other.Allocated != 0 || len(other.Lines) != 0 {
				t.Errorf("other batch touched: %+v", other)
			}
		})
	}
}

// The lines a repository loads are oldest first; the newest must go first,
// whatever their sizes, so that the earliest customers keep their stock.
func TestChangeBatchQuantityDeallocatesLoadedLinesNewestFirst(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	small := line("early-small", sku, 2)
	big := line("middle-big", sku, 10)
	late := line("late", sku, 3)
	ev := func(l domain.OrderLine) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: "b", Reason: domain.ReasonBatchShrank}
	}
	tests := []struct {
		name        string
		newQty      int
		wantDealloc []domain.OrderLine
		wantLines   []domain.OrderLine
	}{
		{"latest line is enough", 12, []domain.OrderLine{late}, []domain.OrderLine{small, big}},
		{"latest line not enough, so the one before goes too", 11, []domain.OrderLine{late, big}, []domain.OrderLine{small}},
		{"small latest line goes even if a bigger one alone would do", 10, []domain.OrderLine{late, big}, []domain.OrderLine{small}},
		{"down to the first", 1, []domain.OrderLine{late, big, small}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatch("b", sku, 15, noETA)
			b.Lines = []domain.OrderLine{small, big, late}
			b.Allocated = 15
			p := domain.NewProduct(sku, 0, b)

			if err := p.ChangeBatchQuantity("b", tt.newQty); err != nil {
				t.Fatal(err)
			}
			want := []domain.Event{domain.BatchQuantityChanged{Ref: "b", SKU: sku, Qty: tt.newQty}}
			for _, l := range tt.wantDealloc {
				want = append(want, ev(l))
			}
			assertEvents(t, p.Events(), want)
			assertLines(t, b, tt.wantLines)
			if b.Available() < 0 {
				t.Errorf("Available() = %d, want >= 0", b.Available())
			}
			if !p.Changed() {
				t.Error("Changed() = false")
			}
		})
	}
}

func TestChangeBatchQuantityDeallocatedLinesCanBeReallocated(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	p := domain.NewProduct(sku, 0,
		newBatch("batch1", sku, 50, noETA),
		newBatch("batch2", sku, 50, tomorrow),
	)
	mustAllocate(t, p, line("order1", sku, 20))
	mustAllocate(t, p, line("order2", sku, 20))
	if err := p.ChangeBatchQuantity("batch1", 25); err != nil {
		t.Fatal(err)
	}
	var redo []domain.OrderLine
	for _, e := range p.Events() {
		if d, ok := e.(domain.Deallocated); ok {
			if d.Reason != domain.ReasonBatchShrank {
				t.Errorf("Deallocated.Reason = %q, want %q", d.Reason, domain.ReasonBatchShrank)
			}
			redo = append(redo, d.Line())
		}
	}
	if len(redo) != 1 || redo[0].OrderID != "order2" {
		t.Fatalf("deallocated %v, want just order2", redo)
	}
	if ref := mustAllocate(t, p, redo[0]); ref != "batch2" {
		t.Errorf("reallocated to %q, want batch2", ref)
	}
	if got := mustBatch(t, p, "batch1").Available(); got != 5 {
		t.Errorf("batch1 Available() = %d, want 5", got)
	}
	if got := mustBatch(t, p, "batch2").Available(); got != 30 {
		t.Errorf("batch2 Available() = %d, want 30", got)
	}
}

func TestChangeBatchQuantityUnknownBatch(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	tests := []struct {
		name    string
		batches []*domain.Batch
		ref     string
	}{
		{"product without batches", nil, "batch1"},
		{"ref of no batch", []*domain.Batch{newBatch("batch1", sku, 10, noETA)}, "batch2"},
		{"ref differs in case", []*domain.Batch{newBatch("batch1", sku, 10, noETA)}, "BATCH1"},
		{"empty ref", []*domain.Batch{newBatch("batch1", sku, 10, noETA)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 0, tt.batches...)
			err := p.ChangeBatchQuantity(tt.ref, 5)
			if !errors.Is(err, domain.ErrUnknownBatch) {
				t.Fatalf("error = %v, want ErrUnknownBatch", err)
			}
			assertEvents(t, p.Events(), nil)
			if p.Changed() {
				t.Error("Changed() = true")
			}
			for _, b := range p.Batches {
				if b.Purchased != 10 {
					t.Errorf("batch %s Purchased = %d, want 10", b.Ref, b.Purchased)
				}
			}
		})
	}
}

func TestChangeBatchQuantitySameQuantityLeavesProductUnchanged(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	p := domain.NewProduct(sku, 0, newBatch("batch1", sku, 10, noETA))
	if err := p.ChangeBatchQuantity("batch1", 10); err != nil {
		t.Fatal(err)
	}
	if p.Changed() {
		t.Error("Changed() = true after setting the same quantity")
	}
	assertEvents(t, p.Events(), nil)
}
