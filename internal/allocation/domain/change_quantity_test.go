package domain_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

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
	// Lines pushed out of batch1 are allocated again to batch2 in the same
	// change, oldest first: the reverse of the order they were pushed out.
	moved := func(l domain.OrderLine) domain.Event {
		return domain.Allocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: "batch2"}
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
		wantMoved     []domain.OrderLine // batch2's lines after the change
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
			name:          "short by one deallocates the latest line, allocated again to the other batch",
			purchased:     20,
			newQty:        19,
			wantEvents:    []domain.Event{changed(19), shrank(o4), moved(o4)},
			wantLines:     []domain.OrderLine{o1, o2, o3},
			wantAvailable: 4,
			wantMoved:     []domain.OrderLine{o4},
		},
		{
			name:          "short by exactly one line deallocates just that line",
			purchased:     20,
			newQty:        15,
			wantEvents:    []domain.Event{changed(15), shrank(o4), moved(o4)},
			wantLines:     []domain.OrderLine{o1, o2, o3},
			wantAvailable: 0,
			wantMoved:     []domain.OrderLine{o4},
		},
		{
			name:          "deallocates latest first until available is not negative",
			purchased:     20,
			newQty:        9,
			wantEvents:    []domain.Event{changed(9), shrank(o4), shrank(o3), shrank(o2), moved(o2), moved(o3), moved(o4)},
			wantLines:     []domain.OrderLine{o1},
			wantAvailable: 4,
			wantMoved:     []domain.OrderLine{o2, o3, o4},
		},
		{
			name:          "zero deallocates every line, latest first",
			purchased:     20,
			newQty:        0,
			wantEvents:    []domain.Event{changed(0), shrank(o4), shrank(o3), shrank(o2), shrank(o1), moved(o1), moved(o2), moved(o3), moved(o4)},
			wantLines:     nil,
			wantAvailable: 0,
			wantMoved:     []domain.OrderLine{o1, o2, o3, o4},
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
			if got, want := b.Allocated, total(tt.wantLines); got != want {
				t.Errorf("Allocated = %d, want %d", got, want)
			}
			other := mustBatch(t, p, "batch2")
			assertLines(t, other, tt.wantMoved)
			if got, want := other.Allocated, total(tt.wantMoved); got != want {
				t.Errorf("batch2 Allocated = %d, want %d", got, want)
			}
			if len(p.Waiting) != 0 {
				t.Errorf("Waiting = %v, want none (lines of the book's API never wait)", p.Waiting)
			}
		})
	}
}

// The lines a repository loads are oldest first; the newest must go first,
// whatever their sizes, so that the earliest customers keep their stock.
// The lines pushed out are then allocated again in the same change, oldest
// first, the shrunk batch included: a small late line may fit back in the
// room a bigger one left. With no other batch, a line of the book's API
// that fits nowhere is out of stock.
func TestChangeBatchQuantityDeallocatesLoadedLinesNewestFirst(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	small := line("early-small", sku, 2)
	big := line("middle-big", sku, 10)
	late := line("late", sku, 3)
	ev := func(l domain.OrderLine) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: "b", Reason: domain.ReasonBatchShrank}
	}
	back := func(l domain.OrderLine) domain.Event {
		return domain.Allocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: "b"}
	}
	out := func(l domain.OrderLine) domain.Event {
		return domain.OutOfStock{SKU: sku, OrderID: l.OrderID, Qty: l.Qty}
	}
	tests := []struct {
		name        string
		newQty      int
		wantDealloc []domain.OrderLine
		wantAfter   []domain.Event // the reallocation of the lines deallocated
		wantLines   []domain.OrderLine
	}{
		{"latest line is enough", 12, []domain.OrderLine{late}, []domain.Event{out(late)}, []domain.OrderLine{small, big}},
		{
			"latest line not enough, so the one before goes too", 11, []domain.OrderLine{late, big},
			[]domain.Event{out(big), back(late)}, []domain.OrderLine{small, late},
		},
		{
			"small latest line goes even if a bigger one alone would do", 10, []domain.OrderLine{late, big},
			[]domain.Event{out(big), back(late)}, []domain.OrderLine{small, late},
		},
		{"down to the first", 1, []domain.OrderLine{late, big, small}, []domain.Event{out(small), out(big), out(late)}, nil},
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
			want = append(want, tt.wantAfter...)
			assertEvents(t, p.Events(), want)
			assertLines(t, b, tt.wantLines)
			if b.Available() < 0 {
				t.Errorf("Available() = %d, want >= 0", b.Available())
			}
			if got, want := b.Allocated, total(tt.wantLines); got != want {
				t.Errorf("Allocated = %d, want %d", got, want)
			}
			if !p.Changed() {
				t.Error("Changed() = false")
			}
		})
	}
}

// The lines pushed out are placed again oldest first, so that an older
// line is not left out by a later one that took the room it needed. Batch
// a (warehouse, 10 free) is preferred to b (warehouse, 15, full); b
// shrinks to 11 and pushes out late, then middle-big. Placed latest first,
// late would take 3 of a's 10 and middle-big would fit nowhere; oldest
// first, middle-big takes a and late fits back in b: both keep their
// stock.
func TestChangeBatchQuantityPlacesPushedOutLinesOldestFirst(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	small := line("early-small", sku, 2)
	big := line("middle-big", sku, 10)
	late := line("late", sku, 3)
	p := domain.NewProduct(sku, 0,
		newBatch("a", sku, 10, noETA),
		batchWith("b", sku, 15, noETA, small, big, late),
	)
	if err := p.ChangeBatchQuantity("b", 11); err != nil {
		t.Fatal(err)
	}
	shrank := func(l domain.OrderLine) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: "b", Reason: domain.ReasonBatchShrank}
	}
	to := func(l domain.OrderLine, ref string) domain.Event {
		return domain.Allocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref}
	}
	assertEvents(t, p.Events(), []domain.Event{
		domain.BatchQuantityChanged{Ref: "b", SKU: sku, Qty: 11},
		shrank(late), shrank(big),
		to(big, "a"), to(late, "b"),
	})
	a, b := mustBatch(t, p, "a"), mustBatch(t, p, "b")
	assertLines(t, a, []domain.OrderLine{big})
	assertLines(t, b, []domain.OrderLine{small, late})
	if a.Available() != 0 || b.Available() != 6 {
		t.Errorf("Available() = a %d, b %d, want a 0, b 6", a.Available(), b.Available())
	}
}

// A line pushed out of a shrinking batch is allocated again in the change
// itself, at the version the change commits: to another batch, or, when
// none can take it, to the waiting list (a shop line) or out of stock (a
// line of the book's API, read after the change).
func TestChangeBatchQuantityReallocatesDeallocatedLinesInTheChange(t *testing.T) {
	const sku = "INDIFFERENT-TABLE"
	order1 := line("order1", sku, 20)
	book := line("order2", sku, 20)
	shop := shopLine("order2", sku, 20, "carol")
	tests := []struct {
		name        string
		order2      domain.OrderLine
		batch2      int // batch2's quantity
		wantAfter   domain.Event
		wantBatch2  []domain.OrderLine
		wantWaiting []domain.Backorder
	}{
		{
			name:   "to another batch",
			order2: book, batch2: 50,
			wantAfter:  domain.Allocated{OrderID: "order2", SKU: sku, Qty: 20, BatchRef: "batch2", Version: 4},
			wantBatch2: []domain.OrderLine{book},
		},
		{
			name:   "a shop line to another batch",
			order2: shop, batch2: 50,
			wantAfter:  domain.Allocated{OrderID: "order2", SKU: sku, Qty: 20, BatchRef: "batch2", Customer: "carol", Version: 4},
			wantBatch2: []domain.OrderLine{shop},
		},
		{
			name:   "no room elsewhere: a line of the book's API is out of stock",
			order2: book, batch2: 19,
			wantAfter: domain.OutOfStock{SKU: sku, OrderID: "order2", Qty: 20, Version: 4},
		},
		{
			name:   "no room elsewhere: a shop line waits",
			order2: shop, batch2: 19,
			wantAfter:   domain.OutOfStock{SKU: sku, OrderID: "order2", Qty: 20, Customer: "carol", Waiting: true, Version: 4},
			wantWaiting: []domain.Backorder{{OrderLine: shop, Seq: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 3,
				batchWith("batch1", sku, 50, noETA, order1, tt.order2),
				newBatch("batch2", sku, tt.batch2, tomorrow),
			)
			if err := p.ChangeBatchQuantity("batch1", 25); err != nil {
				t.Fatal(err)
			}
			want := []domain.Event{
				domain.BatchQuantityChanged{Ref: "batch1", SKU: sku, Qty: 25, Version: 4},
				domain.Deallocated{OrderID: "order2", SKU: sku, Qty: 20, BatchRef: "batch1", Reason: domain.ReasonBatchShrank, Version: 4},
				tt.wantAfter,
			}
			if diff := cmp.Diff(want, p.Events()); diff != "" {
				t.Errorf("events, versions included (-want +got):\n%s", diff)
			}
			if !p.Changed() {
				t.Error("Changed() = false")
			}
			b1 := mustBatch(t, p, "batch1")
			assertLines(t, b1, []domain.OrderLine{order1})
			if got := b1.Available(); got != 5 {
				t.Errorf("batch1 Available() = %d, want 5", got)
			}
			b2 := mustBatch(t, p, "batch2")
			assertLines(t, b2, tt.wantBatch2)
			if got, want := b2.Available(), tt.batch2-total(tt.wantBatch2); got != want {
				t.Errorf("batch2 Available() = %d, want %d", got, want)
			}
			assertWaiting(t, p, tt.wantWaiting)
		})
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
