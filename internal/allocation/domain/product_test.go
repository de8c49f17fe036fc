package domain_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

func TestNewProduct(t *testing.T) {
	p := domain.NewProduct("LAMP", 7, newBatch("b1", "LAMP", 10, noETA))
	if p.SKU != "LAMP" {
		t.Errorf("SKU = %q, want %q", p.SKU, "LAMP")
	}
	if p.Version != 7 {
		t.Errorf("Version = %d, want 7", p.Version)
	}
	if p.Changed() {
		t.Error("freshly loaded product reports Changed() = true")
	}
	if evs := p.Events(); len(evs) != 0 {
		t.Errorf("freshly loaded product has events %v", evs)
	}
	if p.Batch("b1") == nil {
		t.Error("Batch(b1) = nil")
	}
	if b := p.Batch("nope"); b != nil {
		t.Errorf("Batch(nope) = %+v, want nil", b)
	}

	empty := domain.NewProduct("LAMP", 0)
	if len(empty.Batches) != 0 || empty.Changed() || len(empty.Events()) != 0 {
		t.Errorf("empty product = %+v, changed %v, events %v", empty, empty.Changed(), empty.Events())
	}
}

// permutations returns every ordering of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			out = append(out, q)
		}
	}
	return out
}

func TestNewProductOrdersBatchesByPreference(t *testing.T) {
	type spec struct {
		ref string
		eta time.Time
	}
	// In preference order: warehouse stock first (by ref), then shipments by
	// ETA, ties broken by ref. "ship-a" sorts last despite its ref because it
	// arrives latest.
	want := []spec{
		{"wh-a", noETA},
		{"wh-b", noETA},
		{"ship-c", tomorrow},
		{"ship-z", tomorrow.In(time.FixedZone("UTC+5", 5*3600))}, // same instant
		{"ship-a", later},
	}
	wantRefs := make([]string, len(want))
	for i, s := range want {
		wantRefs[i] = s.ref
	}
	perms := permutations(len(want))
	if len(perms) != 120 {
		t.Fatalf("got %d permutations, want 120", len(perms))
	}
	for _, perm := range perms {
		batches := make([]*domain.Batch, len(perm))
		for i, j := range perm {
			batches[i] = newBatch(want[j].ref, "LAMP", 10, want[j].eta)
		}
		given := batchRefsOf(batches)
		p := domain.NewProduct("LAMP", 0, batches...)
		if diff := cmp.Diff(wantRefs, batchRefs(p)); diff != "" {
			t.Errorf("NewProduct with batches %v: order mismatch (-want +got):\n%s", given, diff)
		}
	}
}

func batchRefsOf(bs []*domain.Batch) []string {
	refs := make([]string, len(bs))
	for i, b := range bs {
		refs[i] = b.Ref
	}
	return refs
}

func TestAllocatePrefersWarehouseThenEarliestThenRef(t *testing.T) {
	const sku = "RETRO-CLOCK"
	tests := []struct {
		name    string
		batches func() []*domain.Batch // in scrambled order
		line    domain.OrderLine
		wantRef string
	}{
		{
			name: "prefers warehouse stock over shipments",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("shipment-batch", sku, 100, tomorrow),
					newBatch("in-stock-batch", sku, 100, noETA),
				}
			},
			line:    line("oref", sku, 10),
			wantRef: "in-stock-batch",
		},
		{
			name: "prefers warehouse stock even over an earlier-sorting ref and past eta",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("a-shipment", sku, 100, today.AddDate(-1, 0, 0)),
					newBatch("z-in-stock", sku, 100, noETA),
				}
			},
			line:    line("oref", sku, 10),
			wantRef: "z-in-stock",
		},
		{
			name: "prefers earlier shipments",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("normal-batch", sku, 100, tomorrow.AddDate(0, 0, 1)),
					newBatch("slow-batch", sku, 100, later),
					newBatch("speedy-batch", sku, 100, tomorrow),
				}
			},
			line:    line("order1", sku, 10),
			wantRef: "speedy-batch",
		},
		{
			name: "eta beats ref",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("a", sku, 100, later),
					newBatch("z", sku, 100, tomorrow),
				}
			},
			line:    line("o", sku, 1),
			wantRef: "z",
		},
		{
			name: "same eta broken by ref",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("batch-c", sku, 100, tomorrow),
					newBatch("batch-a", sku, 100, tomorrow),
					newBatch("batch-b", sku, 100, tomorrow),
				}
			},
			line:    line("o", sku, 1),
			wantRef: "batch-a",
		},
		{
			name: "same instant in another zone is a tie broken by ref",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("batch-b", sku, 100, tomorrow),
					newBatch("batch-a", sku, 100, tomorrow.In(time.FixedZone("UTC-8", -8*3600))),
				}
			},
			line:    line("o", sku, 1),
			wantRef: "batch-a",
		},
		{
			name: "warehouse batches broken by ref",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("wh-2", sku, 100, noETA),
					newBatch("wh-1", sku, 100, noETA),
				}
			},
			line:    line("o", sku, 1),
			wantRef: "wh-1",
		},
		{
			name: "falls back to a shipment when warehouse stock is too small",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("shipment", sku, 100, tomorrow),
					newBatch("in-stock", sku, 5, noETA),
				}
			},
			line:    line("o", sku, 10),
			wantRef: "shipment",
		},
		{
			name: "skips a full earliest shipment",
			batches: func() []*domain.Batch {
				full := newBatch("early", sku, 10, tomorrow)
				full.Allocated = 10
				return []*domain.Batch{newBatch("late", sku, 10, later), full}
			},
			line:    line("o", sku, 1),
			wantRef: "late",
		},
		{
			name: "skips a batch of another sku",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("right-sku", sku, 100, later),
					newBatch("wrong-sku", "OTHER", 100, noETA),
				}
			},
			line:    line("o", sku, 1),
			wantRef: "right-sku",
		},
		{
			name: "line that exactly fills the preferred batch goes there",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("shipment", sku, 100, tomorrow),
					newBatch("in-stock", sku, 10, noETA),
				}
			},
			line:    line("o", sku, 10),
			wantRef: "in-stock",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 0, tt.batches()...)
			before := map[string]int{}
			for _, b := range p.Batches {
				before[b.Ref] = b.Available()
			}
			ref, err := p.Allocate(tt.line)
			if err != nil {
				t.Fatalf("Allocate: unexpected error %v", err)
			}
			if ref != tt.wantRef {
				t.Errorf("Allocate returned %q, want %q", ref, tt.wantRef)
			}
			for _, b := range p.Batches {
				want := before[b.Ref]
				if b.Ref == tt.wantRef {
					want -= tt.line.Qty
				}
				if got := b.Available(); got != want {
					t.Errorf("batch %s Available() = %d, want %d", b.Ref, got, want)
				}
			}
			assertEvents(t, p.Events(), []domain.Event{
				domain.Allocated{OrderID: tt.line.OrderID, SKU: tt.line.SKU, Qty: tt.line.Qty, BatchRef: tt.wantRef},
			})
		})
	}
}

func TestAllocateReturnsRefAndRaisesAllocatedInOrder(t *testing.T) {
	const sku = "BLUE-VASE"
	p := domain.NewProduct(sku, 3,
		newBatch("ship", sku, 100, tomorrow),
		newBatch("stock", sku, 10, noETA),
	)
	lines := []struct {
		line    domain.OrderLine
		wantRef string
	}{
		{line("o1", sku, 6), "stock"},
		{line("o2", sku, 5), "ship"}, // only 4 left in stock
		{line("o3", sku, 4), "stock"},
		{line("o4", sku, 1), "ship"},
	}
	var want []domain.Event
	for _, l := range lines {
		ref, err := p.Allocate(l.line)
		if err != nil {
			t.Fatalf("Allocate(%+v): %v", l.line, err)
		}
		if ref != l.wantRef {
			t.Errorf("Allocate(%+v) = %q, want %q", l.line, ref, l.wantRef)
		}
		want = append(want, domain.Allocated{OrderID: l.line.OrderID, SKU: sku, Qty: l.line.Qty, BatchRef: l.wantRef})
		if !p.Changed() {
			t.Errorf("after Allocate(%+v): Changed() = false", l.line)
		}
	}
	assertEvents(t, p.Events(), want)
	if p.Version != 3 {
		t.Errorf("Version = %d, want it left at the loaded version 3", p.Version)
	}
	assertLines(t, mustBatch(t, p, "stock"), []domain.OrderLine{lines[0].line, lines[2].line})
	assertLines(t, mustBatch(t, p, "ship"), []domain.OrderLine{lines[1].line, lines[3].line})
	if got := mustBatch(t, p, "stock").Available(); got != 0 {
		t.Errorf("stock Available() = %d, want 0", got)
	}
	if got := mustBatch(t, p, "ship").Available(); got != 94 {
		t.Errorf("ship Available() = %d, want 94", got)
	}
}

func TestAllocateOutOfStock(t *testing.T) {
	const sku = "SMALL-FORK"
	tests := []struct {
		name    string
		batches func() []*domain.Batch
		line    domain.OrderLine
	}{
		{
			name:    "no batches",
			batches: func() []*domain.Batch { return nil },
			line:    line("o1", sku, 1),
		},
		{
			name:    "single batch too small",
			batches: func() []*domain.Batch { return []*domain.Batch{newBatch("b1", sku, 10, noETA)} },
			line:    line("o1", sku, 11),
		},
		{
			name: "every batch too small though their sum is enough",
			batches: func() []*domain.Batch {
				return []*domain.Batch{
					newBatch("b1", sku, 6, noETA),
					newBatch("b2", sku, 6, tomorrow),
				}
			},
			line: line("o1", sku, 7),
		},
		{
			name: "batch full with allocations whose lines are not loaded",
			batches: func() []*domain.Batch {
				b := newBatch("b1", sku, 10, noETA)
				b.Allocated = 10
				return []*domain.Batch{b}
			},
			line: line("o1", sku, 1),
		},
		{
			name: "batch shrank below what was allocated",
			batches: func() []*domain.Batch {
				b := newBatch("b1", sku, 5, noETA)
				b.Allocated = 8
				return []*domain.Batch{b}
			},
			line: line("o1", sku, 1),
		},
		{
			name:    "only a batch of another sku has stock",
			batches: func() []*domain.Batch { return []*domain.Batch{newBatch("b1", "OTHER", 100, noETA)} },
			line:    line("o1", sku, 1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 0, tt.batches()...)
			before := map[string]domain.Batch{}
			for _, b := range p.Batches {
				before[b.Ref] = *b
			}
			ref, err := p.Allocate(tt.line)
			if !errors.Is(err, domain.ErrOutOfStock) {
				t.Fatalf("Allocate error = %v, want one wrapping ErrOutOfStock", err)
			}
			if ref != "" {
				t.Errorf("Allocate returned ref %q with its error, want empty", ref)
			}
			assertEvents(t, p.Events(), []domain.Event{
				domain.OutOfStock{SKU: tt.line.SKU, OrderID: tt.line.OrderID, Qty: tt.line.Qty, UnknownSKU: len(p.Batches) == 0},
			})
			if p.Changed() {
				t.Error("Changed() = true after running out of stock; OutOfStock must not mark the product changed")
			}
			for _, b := range p.Batches {
				if diff := cmp.Diff(before[b.Ref], *b); diff != "" {
					t.Errorf("batch %s changed (-before +after):\n%s", b.Ref, diff)
				}
			}
		})
	}
}

func TestAllocateOutOfStockAfterAllocation(t *testing.T) {
	const sku = "SMALL-FORK"
	p := domain.NewProduct(sku, 0, newBatch("batch1", sku, 10, today))
	mustAllocate(t, p, line("order1", sku, 10))

	_, err := p.Allocate(line("order2", sku, 1))
	if !errors.Is(err, domain.ErrOutOfStock) {
		t.Fatalf("Allocate error = %v, want ErrOutOfStock", err)
	}
	assertEvents(t, p.Events(), []domain.Event{
		domain.Allocated{OrderID: "order1", SKU: sku, Qty: 10, BatchRef: "batch1"},
		domain.OutOfStock{SKU: sku, OrderID: "order2", Qty: 1},
	})
	if !p.Changed() {
		t.Error("Changed() = false; the earlier allocation changed the product")
	}
}

func TestAllocateSameLineTwiceIsIdempotent(t *testing.T) {
	const sku = "DECORATIVE-TRINKET"
	tests := []struct {
		name string
		// setup returns a product with the line already allocated.
		setup   func(t *testing.T, l domain.OrderLine) *domain.Product
		wantRef string
	}{
		{
			name: "allocated earlier in the same session",
			setup: func(t *testing.T, l domain.OrderLine) *domain.Product {
				p := domain.NewProduct(sku, 0,
					newBatch("ship", sku, 100, tomorrow),
					newBatch("stock", sku, 20, noETA),
				)
				mustAllocate(t, p, l)
				return p
			},
			wantRef: "stock",
		},
		{
			name: "loaded by the repository in a less preferred batch",
			setup: func(t *testing.T, l domain.OrderLine) *domain.Product {
				ship := newBatch("ship", sku, 100, tomorrow)
				ship.Lines = []domain.OrderLine{l}
				ship.Allocated = l.Qty
				return domain.NewProduct(sku, 0, ship, newBatch("stock", sku, 20, noETA))
			},
			wantRef: "ship",
		},
		{
			name: "loaded in a batch that has since shrunk below its allocations",
			setup: func(t *testing.T, l domain.OrderLine) *domain.Product {
				b := newBatch("shrunk", sku, 1, noETA)
				b.Lines = []domain.OrderLine{l}
				b.Allocated = l.Qty
				return domain.NewProduct(sku, 0, b)
			},
			wantRef: "shrunk",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := line("order-1", sku, 10)
			p := tt.setup(t, l)
			nEvents := len(p.Events())
			changed := p.Changed()
			b := mustBatch(t, p, tt.wantRef)
			allocated := b.Allocated

			for i := range 2 {
				ref, err := p.Allocate(l)
				if err != nil {
					t.Fatalf("repeat Allocate #%d: unexpected error %v", i+1, err)
				}
				if ref != tt.wantRef {
					t.Errorf("repeat Allocate #%d returned %q, want %q", i+1, ref, tt.wantRef)
				}
			}
			assertEvents(t, eventsSince(p, nEvents), nil)
			if p.Changed() != changed {
				t.Errorf("Changed() = %v after repeat allocation, want %v", p.Changed(), changed)
			}
			if b.Allocated != allocated {
				t.Errorf("Allocated = %d after repeat allocation, want %d (not doubled)", b.Allocated, allocated)
			}
			assertLines(t, b, []domain.OrderLine{l})
			for _, other := range p.Batches {
				if other != b && len(other.Lines) != 0 {
					t.Errorf("batch %s also holds lines %v", other.Ref, other.Lines)
				}
			}
		})
	}
}

func TestAllocateSameOrderOtherLineIsNotIdempotent(t *testing.T) {
	const sku = "DECORATIVE-TRINKET"
	p := domain.NewProduct(sku, 0, newBatch("stock", sku, 20, noETA))
	mustAllocate(t, p, line("order-1", sku, 5))
	// Another order with the same quantity is a different line.
	if ref := mustAllocate(t, p, line("order-2", sku, 5)); ref != "stock" {
		t.Errorf("Allocate(order-2) = %q, want stock", ref)
	}
	if got := mustBatch(t, p, "stock").Available(); got != 10 {
		t.Errorf("Available() = %d, want 10", got)
	}
	if n := len(p.Events()); n != 2 {
		t.Errorf("got %d events, want 2: %v", n, p.Events())
	}
}

func TestAllocateLineConflict(t *testing.T) {
	const sku = "DECORATIVE-TRINKET"
	tests := []struct {
		name     string
		preload  bool
		first    domain.OrderLine
		conflict domain.OrderLine
	}{
		{"more in the same session", false, line("o1", sku, 5), line("o1", sku, 6)},
		{"less in the same session", false, line("o1", sku, 5), line("o1", sku, 1)},
		{"different qty of a loaded line", true, line("o1", sku, 5), line("o1", sku, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatch("stock", sku, 20, noETA)
			if tt.preload {
				b.Lines = []domain.OrderLine{tt.first}
				b.Allocated = tt.first.Qty
			}
			p := domain.NewProduct(sku, 0, b)
			if !tt.preload {
				mustAllocate(t, p, tt.first)
			}
			nEvents, changed := len(p.Events()), p.Changed()

			ref, err := p.Allocate(tt.conflict)
			if !errors.Is(err, domain.ErrLineConflict) {
				t.Fatalf("Allocate(%+v) error = %v, want ErrLineConflict", tt.conflict, err)
			}
			if ref != "" {
				t.Errorf("Allocate returned ref %q with its error, want empty", ref)
			}
			assertEvents(t, eventsSince(p, nEvents), nil)
			if p.Changed() != changed {
				t.Errorf("Changed() = %v, want %v", p.Changed(), changed)
			}
			if b.Allocated != tt.first.Qty {
				t.Errorf("Allocated = %d, want %d", b.Allocated, tt.first.Qty)
			}
			assertLines(t, b, []domain.OrderLine{tt.first})
		})
	}
}

func TestAddBatchKeepsPreferenceOrder(t *testing.T) {
	const sku = "GARDEN-GNOME"
	mid := today.AddDate(0, 0, 5)
	initial := func() *domain.Product {
		// Scrambled on purpose; NewProduct sorts them to wh-m, s-b, s-d.
		return domain.NewProduct(sku, 0,
			newBatch("s-d", sku, 10, later),
			newBatch("wh-m", sku, 10, noETA),
			newBatch("s-b", sku, 10, tomorrow),
		)
	}
	tests := []struct {
		name string
		ref  string
		eta  time.Time
		want []string
	}{
		{"shipment between two others", "s-c", mid, []string{"wh-m", "s-b", "s-c", "s-d"}},
		{"shipment between two others despite its ref", "a-mid", mid, []string{"wh-m", "s-b", "a-mid", "s-d"}},
		{"warehouse batch before the other by ref", "wh-a", noETA, []string{"wh-a", "wh-m", "s-b", "s-d"}},
		{"warehouse batch after the other by ref", "wh-z", noETA, []string{"wh-m", "wh-z", "s-b", "s-d"}},
		{"warehouse batch ahead of shipments despite its ref", "zzz", noETA, []string{"wh-m", "zzz", "s-b", "s-d"}},
		{"same eta, earlier ref", "s-a", tomorrow, []string{"wh-m", "s-a", "s-b", "s-d"}},
		{"same eta, later ref", "s-bb", tomorrow, []string{"wh-m", "s-b", "s-bb", "s-d"}},
		{"earliest shipment despite its ref", "s-z", today, []string{"wh-m", "s-z", "s-b", "s-d"}},
		{"latest shipment", "s-a", later.AddDate(0, 0, 1), []string{"wh-m", "s-b", "s-d", "s-a"}},
		{"same eta as the last, later ref", "s-e", later, []string{"wh-m", "s-b", "s-d", "s-e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := initial()
			if diff := cmp.Diff([]string{"wh-m", "s-b", "s-d"}, batchRefs(p)); diff != "" {
				t.Fatalf("initial order mismatch (-want +got):\n%s", diff)
			}
			if err := p.AddBatch(tt.ref, 10, tt.eta); err != nil {
				t.Fatalf("AddBatch: %v", err)
			}
			if diff := cmp.Diff(tt.want, batchRefs(p)); diff != "" {
				t.Errorf("order after AddBatch(%s) mismatch (-want +got):\n%s", tt.ref, diff)
			}
		})
	}
}

func TestAddBatchSequenceMatchesNewProduct(t *testing.T) {
	const sku = "GARDEN-GNOME"
	specs := []struct {
		ref string
		eta time.Time
	}{
		{"e", later}, {"a", tomorrow}, {"w2", noETA}, {"c", today}, {"b", tomorrow},
		{"w1", noETA}, {"d", later}, {"f", today.AddDate(0, 0, 5)},
	}
	added := domain.NewProduct(sku, 0)
	var batches []*domain.Batch
	for _, s := range specs {
		if err := added.AddBatch(s.ref, 1, s.eta); err != nil {
			t.Fatalf("AddBatch(%s): %v", s.ref, err)
		}
		batches = append(batches, newBatch(s.ref, sku, 1, s.eta))
	}
	loaded := domain.NewProduct(sku, 0, batches...)
	want := []string{"w1", "w2", "c", "a", "b", "f", "d", "e"}
	if diff := cmp.Diff(want, batchRefs(loaded)); diff != "" {
		t.Errorf("NewProduct order mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, batchRefs(added)); diff != "" {
		t.Errorf("AddBatch order mismatch (-want +got):\n%s", diff)
	}
}

func TestAddBatchRaisesBatchCreated(t *testing.T) {
	const sku = "GARDEN-GNOME"
	tests := []struct {
		name string
		ref  string
		qty  int
		eta  time.Time
	}{
		{"warehouse stock", "wh", 100, noETA},
		{"shipment", "ship", 20, tomorrow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(sku, 4)
			if err := p.AddBatch(tt.ref, tt.qty, tt.eta); err != nil {
				t.Fatalf("AddBatch: %v", err)
			}
			assertEvents(t, p.Events(), []domain.Event{
				domain.BatchCreated{Ref: tt.ref, SKU: sku, Qty: tt.qty, ETA: domain.Date{Time: tt.eta}},
			})
			if !p.Changed() {
				t.Error("Changed() = false after AddBatch")
			}
			want := domain.Batch{Ref: tt.ref, SKU: sku, Purchased: tt.qty, ETA: tt.eta}
			if diff := cmp.Diff(want, *mustBatch(t, p, tt.ref)); diff != "" {
				t.Errorf("added batch mismatch (-want +got):\n%s", diff)
			}
			ev := p.Events()[0].(domain.BatchCreated)
			if got := ev.ETA.IsZero(); got != tt.eta.IsZero() {
				t.Errorf("BatchCreated.ETA.IsZero() = %v, want %v", got, tt.eta.IsZero())
			}
		})
	}
}

func TestAddBatchThenAllocate(t *testing.T) {
	const sku = "GARDEN-GNOME"
	p := domain.NewProduct(sku, 0, newBatch("ship", sku, 10, tomorrow))
	if err := p.AddBatch("stock", 10, noETA); err != nil {
		t.Fatal(err)
	}
	if ref := mustAllocate(t, p, line("o1", sku, 3)); ref != "stock" {
		t.Errorf("Allocate = %q, want the new warehouse batch", ref)
	}
}

func TestAddBatchDuplicate(t *testing.T) {
	const sku = "GARDEN-GNOME"
	tests := []struct {
		name  string
		setup func(t *testing.T) *domain.Product
		ref   string
		eta   time.Time
	}{
		{
			name:  "same ref as a loaded warehouse batch",
			setup: func(*testing.T) *domain.Product { return domain.NewProduct(sku, 0, newBatch("b1", sku, 10, noETA)) },
			ref:   "b1",
			eta:   noETA,
		},
		{
			name:  "same ref as a loaded shipment, other eta",
			setup: func(*testing.T) *domain.Product { return domain.NewProduct(sku, 0, newBatch("b1", sku, 10, tomorrow)) },
			ref:   "b1",
			eta:   later,
		},
		{
			name: "same ref as a batch added in this session",
			setup: func(t *testing.T) *domain.Product {
				p := domain.NewProduct(sku, 0)
				if err := p.AddBatch("b1", 10, tomorrow); err != nil {
					t.Fatal(err)
				}
				return p
			},
			ref: "b1",
			eta: tomorrow,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.setup(t)
			nEvents, changed := len(p.Events()), p.Changed()
			wantRefs := batchRefs(p)
			orig := *mustBatch(t, p, tt.ref)

			err := p.AddBatch(tt.ref, 99, tt.eta)
			if !errors.Is(err, domain.ErrDuplicateBatch) {
				t.Fatalf("AddBatch error = %v, want ErrDuplicateBatch", err)
			}
			assertEvents(t, eventsSince(p, nEvents), nil)
			if p.Changed() != changed {
				t.Errorf("Changed() = %v, want %v", p.Changed(), changed)
			}
			if diff := cmp.Diff(wantRefs, batchRefs(p)); diff != "" {
				t.Errorf("batches changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(orig, *mustBatch(t, p, tt.ref)); diff != "" {
				t.Errorf("existing batch changed (-want +got):\n%s", diff)
			}
		})
	}
}
