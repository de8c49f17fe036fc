package domain_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

func TestDeallocate(t *testing.T) {
	const sku = "ANTIQUE-SOFA"
	o1 := line("o1", sku, 3)
	o2 := line("o2", sku, 4)
	o3 := line("o3", sku, 5)
	requested := func(l domain.OrderLine, ref string) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: ref, Reason: domain.ReasonRequested}
	}
	// Every case starts from: stock (10, warehouse) holding o1 and o2 and
	// ship (100, tomorrow) holding o3, all allocated in this session.
	tests := []struct {
		name       string
		lines      []domain.OrderLine // deallocated in turn; the last is checked
		wantRef    string
		wantErr    error
		wantEvents []domain.Event // raised by the deallocations
		wantStock  []domain.OrderLine
		wantShip   []domain.OrderLine
	}{
		{
			name:       "frees the stock of an allocated line",
			lines:      []domain.OrderLine{o2},
			wantRef:    "stock",
			wantEvents: []domain.Event{requested(o2, "stock")},
			wantStock:  []domain.OrderLine{o1},
			wantShip:   []domain.OrderLine{o3},
		},
		{
			name:       "keeps the other lines in order",
			lines:      []domain.OrderLine{o1},
			wantRef:    "stock",
			wantEvents: []domain.Event{requested(o1, "stock")},
			wantStock:  []domain.OrderLine{o2},
			wantShip:   []domain.OrderLine{o3},
		},
		{
			name:       "finds the line in a less preferred batch",
			lines:      []domain.OrderLine{o3},
			wantRef:    "ship",
			wantEvents: []domain.Event{requested(o3, "ship")},
			wantStock:  []domain.OrderLine{o1, o2},
			wantShip:   nil,
		},
		{
			name:       "several lines",
			lines:      []domain.OrderLine{o3, o1, o2},
			wantRef:    "stock",
			wantEvents: []domain.Event{requested(o3, "ship"), requested(o1, "stock"), requested(o2, "stock")},
		},
		{
			name:      "line never allocated",
			lines:     []domain.OrderLine{line("o9", sku, 3)},
			wantErr:   domain.ErrNotAllocated,
			wantStock: []domain.OrderLine{o1, o2},
			wantShip:  []domain.OrderLine{o3},
		},
		{
			name:      "same order, different qty",
			lines:     []domain.OrderLine{line("o1", sku, 4)},
			wantErr:   domain.ErrNotAllocated,
			wantStock: []domain.OrderLine{o1, o2},
			wantShip:  []domain.OrderLine{o3},
		},
		{
			name:      "same order, other sku",
			lines:     []domain.OrderLine{line("o1", "OTHER", 3)},
			wantErr:   domain.ErrNotAllocated,
			wantStock: []domain.OrderLine{o1, o2},
			wantShip:  []domain.OrderLine{o3},
		},
		{
			name:       "twice",
			lines:      []domain.OrderLine{o1, o1},
			wantErr:    domain.ErrNotAllocated,
			wantEvents: []domain.Event{requested(o1, "stock")},
			wantStock:  []domain.OrderLine{o2},
			wantShip:   []domain.OrderLine{o3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 0,
				newBatch("ship", sku, 100, tomorrow),
				newBatch("stock", sku, 10, noETA),
			)
			for _, l := range []domain.OrderLine{o1, o2, o3} {
				mustAllocate(t, p, l)
			}
			if got := mustBatch(t, p, "ship").Lines; len(got) != 1 || got[0] != o3 {
				t.Fatalf("setup: ship lines = %v, want [o3]", got)
			}
			n := len(p.Events())

			var ref string
			var err error
			for i, l := range tt.lines {
				ref, err = p.Deallocate(l)
				if i < len(tt.lines)-1 && err != nil {
					t.Fatalf("Deallocate(%+v): %v", l, err)
				}
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Deallocate error = %v, want %v", err, tt.wantErr)
				}
				if ref != "" {
					t.Errorf("Deallocate returned ref %q with its error", ref)
				}
			} else {
				if err != nil {
					t.Fatalf("Deallocate: unexpected error %v", err)
				}
				if ref != tt.wantRef {
					t.Errorf("Deallocate returned %q, want %q", ref, tt.wantRef)
				}
			}
			assertEvents(t, eventsSince(p, n), tt.wantEvents)

			for _, c := range []struct {
				ref   string
				lines []domain.OrderLine
			}{{"stock", tt.wantStock}, {"ship", tt.wantShip}} {
				b := mustBatch(t, p, c.ref)
				assertLines(t, b, c.lines)
				sum := 0
				for _, l := range c.lines {
					sum += l.Qty
				}
				if b.Allocated != sum {
					t.Errorf("batch %s Allocated = %d, want %d", b.Ref, b.Allocated, sum)
				}
				if got, want := b.Available(), b.Purchased-sum; got != want {
					t.Errorf("batch %s Available() = %d, want %d", b.Ref, got, want)
				}
			}
		})
	}
}

func TestDeallocateLoadedLine(t *testing.T) {
	const sku = "ANTIQUE-SOFA"
	l := line("o1", sku, 4)
	b := newBatch("b1", sku, 10, noETA)
	b.Lines = []domain.OrderLine{l}
	b.Allocated = 9 // 5 more held by lines that were not loaded
	p := domain.NewProduct(sku, 0, b)

	ref, err := p.Deallocate(l)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "b1" {
		t.Errorf("ref = %q, want b1", ref)
	}
	if b.Allocated != 5 || b.Available() != 5 {
		t.Errorf("Allocated, Available() = %d, %d; want 5, 5", b.Allocated, b.Available())
	}
	if !p.Changed() {
		t.Error("Changed() = false after Deallocate")
	}
	assertEvents(t, p.Events(), []domain.Event{
		domain.Deallocated{OrderID: "o1", SKU: sku, Qty: 4, BatchRef: "b1", Reason: domain.ReasonRequested},
	})
}

func TestDeallocateNotAllocatedLeavesProductUnchanged(t *testing.T) {
	const sku = "ANTIQUE-SOFA"
	tests := []struct {
		name   string
		loaded []domain.OrderLine
		line   domain.OrderLine
	}{
		{"no lines loaded", nil, line("o1", sku, 1)},
		{"same order with a different qty loaded", []domain.OrderLine{line("o1", sku, 2)}, line("o1", sku, 1)},
		{"other order loaded", []domain.OrderLine{line("o2", sku, 1)}, line("o1", sku, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatch("b1", sku, 10, noETA)
			b.Lines = tt.loaded
			for _, l := range tt.loaded {
				b.Allocated += l.Qty
			}
			before := *b
			p := domain.NewProduct(sku, 0, b)

			ref, err := p.Deallocate(tt.line)
			if !errors.Is(err, domain.ErrNotAllocated) {
				t.Fatalf("error = %v, want ErrNotAllocated", err)
			}
			if ref != "" {
				t.Errorf("ref = %q, want empty", ref)
			}
			if p.Changed() {
				t.Error("Changed() = true")
			}
			assertEvents(t, p.Events(), nil)
			if diff := cmp.Diff(before, *b); diff != "" {
				t.Errorf("batch changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestDeallocateThenAllocateAgain(t *testing.T) {
	const sku = "ANTIQUE-SOFA"
	p := domain.NewProduct(sku, 0, newBatch("b1", sku, 10, noETA))
	l := line("o1", sku, 10)
	mustAllocate(t, p, l)
	if _, err := p.Deallocate(l); err != nil {
		t.Fatal(err)
	}
	if ref := mustAllocate(t, p, l); ref != "b1" {
		t.Errorf("Allocate after Deallocate = %q, want b1", ref)
	}
	assertEvents(t, p.Events(), []domain.Event{
		domain.Allocated{OrderID: "o1", SKU: sku, Qty: 10, BatchRef: "b1"},
		domain.Deallocated{OrderID: "o1", SKU: sku, Qty: 10, BatchRef: "b1", Reason: domain.ReasonRequested},
		domain.Allocated{OrderID: "o1", SKU: sku, Qty: 10, BatchRef: "b1"},
	})
	if got := mustBatch(t, p, "b1").Available(); got != 0 {
		t.Errorf("Available() = %d, want 0", got)
	}
}

func TestDeallocatedLine(t *testing.T) {
	e := domain.Deallocated{OrderID: "o1", SKU: "S", Qty: 3, BatchRef: "b", Reason: domain.ReasonRequested}
	if diff := cmp.Diff(line("o1", "S", 3), e.Line()); diff != "" {
		t.Errorf("Line() mismatch (-want +got):\n%s", diff)
	}
}
