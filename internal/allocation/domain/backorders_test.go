package domain_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/fail"
)

const waitedSKU = "WAITED-LAMP"

// Lines of the shop's customers, and of the book's API, used throughout.
var (
	ann  = shopLine("ann-1", waitedSKU, 5, "ann")
	bob  = shopLine("bob-1", waitedSKU, 2, "bob")
	cat  = shopLine("cat-1", waitedSKU, 3, "cat")
	vic  = vipLine("vic-1", waitedSKU, 3, "vic")
	val  = vipLine("val-1", waitedSKU, 2, "val")
	book = line("book-1", waitedSKU, 2)
)

// bo returns the line as it waits, seq-th to join the list.
func bo(l domain.OrderLine, seq int64) domain.Backorder {
	return domain.Backorder{OrderLine: l, Seq: seq}
}

// asVIP returns the line of a customer who became a VIP.
func asVIP(l domain.OrderLine) domain.OrderLine { l.VIP = true; return l }

// served: the waiting list gave the line the stock of batch ref.
func served(l domain.OrderLine, ref string) domain.Event {
	return domain.Allocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: ref, Customer: l.Customer, Backorder: true}
}

// took: the line was allocated to ref without waiting.
func took(l domain.OrderLine, ref string) domain.Event {
	return domain.Allocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: ref, Customer: l.Customer}
}

// waits: the shop line joined the waiting list.
func waits(l domain.OrderLine) domain.Event {
	return domain.OutOfStock{SKU: l.SKU, OrderID: l.OrderID, Qty: l.Qty, Customer: l.Customer, Waiting: true}
}

// outOfStock: the line of the book's API found no stock, and does not wait.
func outOfStock(l domain.OrderLine) domain.Event {
	return domain.OutOfStock{SKU: l.SKU, OrderID: l.OrderID, Qty: l.Qty}
}

func created(ref string, qty int) domain.Event {
	return domain.BatchCreated{Ref: ref, SKU: waitedSKU, Qty: qty}
}

func cancelled(l domain.OrderLine) domain.Event {
	return domain.BackorderCancelled{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty}
}

func shrankFrom(l domain.OrderLine, ref string) domain.Event {
	return domain.Deallocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: ref, Reason: domain.ReasonBatchShrank}
}

func addBatch(ref string, qty int, eta time.Time) func(p *domain.Product) (string, error) {
	return func(p *domain.Product) (string, error) { return "", p.AddBatch(ref, qty, eta) }
}

func allocate(l domain.OrderLine) func(p *domain.Product) (string, error) {
	return func(p *domain.Product) (string, error) { return p.Allocate(l) }
}

func deallocate(l domain.OrderLine) func(p *domain.Product) (string, error) {
	return func(p *domain.Product) (string, error) { return p.Deallocate(l) }
}

func promote(customer string) func(p *domain.Product) (string, error) {
	return func(p *domain.Product) (string, error) { p.PromoteVIP(customer); return "", nil }
}

// full is a warehouse batch with no unit left: o0 holds all of it.
func full() []*domain.Batch {
	return []*domain.Batch{batchWith("b1", waitedSKU, 4, noETA, line("o0", waitedSKU, 4))}
}

// withFree is a warehouse batch b1 of 10 units with free left: o0 holds
// the others.
func withFree(free int) func() []*domain.Batch {
	return func() []*domain.Batch {
		return []*domain.Batch{batchWith("b1", waitedSKU, 10, noETA, line("o0", waitedSKU, 10-free))}
	}
}

// backorderCase is one change of a product loaded with batches and a
// waiting list.
type backorderCase struct {
	name    string
	policy  domain.Policy
	batches func() []*domain.Batch // as loaded; nil: none
	waiting []domain.Backorder     // as stored, in any order: Rank ranks them as a repository does
	act     func(p *domain.Product) (string, error)

	wantRef     string
	wantErr     error
	wantEvents  []domain.Event
	wantWaiting []domain.Backorder
	// wantLines are the lines of the batches named after the change; the
	// others must be as loaded.
	wantLines map[string][]domain.OrderLine
}

func runBackorderCases(t *testing.T, tests []backorderCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var batches, loaded []*domain.Batch
			if tt.batches != nil {
				batches, loaded = tt.batches(), tt.batches()
			}
			p := domain.NewProduct(waitedSKU, 3, batches...)
			p.Policy = tt.policy
			p.Waiting = domain.Rank(slices.Clone(tt.waiting))

			ref, err := tt.act(p)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if ref != tt.wantRef {
				t.Errorf("ref = %q, want %q", ref, tt.wantRef)
			}
			assertEvents(t, p.Events(), tt.wantEvents)
			assertWaiting(t, p, tt.wantWaiting)
			if got, want := p.Changed(), changes(tt.wantEvents); got != want {
				t.Errorf("Changed() = %v, want %v", got, want)
			}
			for _, l := range loaded {
				want, ok := tt.wantLines[l.Ref]
				if !ok {
					want = l.Lines
				}
				b := mustBatch(t, p, l.Ref)
				assertLines(t, b, want)
				if b.Allocated != total(want) {
					t.Errorf("batch %s Allocated = %d, want %d", b.Ref, b.Allocated, total(want))
				}
			}
			for ref, want := range tt.wantLines {
				b := mustBatch(t, p, ref)
				assertLines(t, b, want)
				if b.Available() < 0 {
					t.Errorf("batch %s Available() = %d", ref, b.Available())
				}
			}
		})
	}
}

// changes reports whether events record a change: anything but the out of
// stock of a line that does not wait.
func changes(events []domain.Event) bool {
	return slices.ContainsFunc(events, func(e domain.Event) bool {
		o, ok := e.(domain.OutOfStock)
		return !ok || o.Waiting
	})
}

// VIP customers' lines first, then the oldest first.
func TestWaitingListPriority(t *testing.T) {
	a1 := shopLine("a-1", waitedSKU, 2, "ann")
	a2 := shopLine("a-2", waitedSKU, 2, "bob")
	a3 := shopLine("a-3", waitedSKU, 2, "cat")
	v1 := vipLine("v-1", waitedSKU, 2, "vic")
	v2 := vipLine("v-2", waitedSKU, 2, "val")
	runBackorderCases(t, []backorderCase{
		{
			name:    "a VIP who waited less is served before a non-VIP who waited longer",
			batches: full, waiting: []domain.Backorder{bo(cat, 1), bo(vic, 2)},
			act:         addBatch("b2", 3, noETA),
			wantEvents:  []domain.Event{created("b2", 3), served(vic, "b2")},
			wantWaiting: []domain.Backorder{bo(cat, 1)},
			wantLines:   map[string][]domain.OrderLine{"b2": {vic}},
		},
		{
			name:    "the same under fill",
			policy:  domain.Fill,
			batches: full, waiting: []domain.Backorder{bo(cat, 1), bo(vic, 2)},
			act:         addBatch("b2", 3, noETA),
			wantEvents:  []domain.Event{created("b2", 3), served(vic, "b2")},
			wantWaiting: []domain.Backorder{bo(cat, 1)},
			wantLines:   map[string][]domain.OrderLine{"b2": {vic}},
		},
		{
			name:    "oldest first",
			batches: full, waiting: []domain.Backorder{bo(a3, 7), bo(a1, 2), bo(a2, 5)},
			act:         addBatch("b2", 4, noETA),
			wantEvents:  []domain.Event{created("b2", 4), served(a1, "b2"), served(a2, "b2")},
			wantWaiting: []domain.Backorder{bo(a3, 7)},
			wantLines:   map[string][]domain.OrderLine{"b2": {a1, a2}},
		},
		{
			name:    "oldest first among VIPs, all of them before the others",
			batches: full, waiting: []domain.Backorder{bo(a1, 1), bo(v1, 3), bo(v2, 2)},
			act:         addBatch("b2", 4, noETA),
			wantEvents:  []domain.Event{created("b2", 4), served(v2, "b2"), served(v1, "b2")},
			wantWaiting: []domain.Backorder{bo(a1, 1)},
			wantLines:   map[string][]domain.OrderLine{"b2": {v2, v1}},
		},
		{
			name:    "stock for everyone: all served, in rank order",
			batches: full, waiting: []domain.Backorder{bo(a2, 4), bo(a1, 1), bo(v1, 9)},
			act:        addBatch("b2", 10, noETA),
			wantEvents: []domain.Event{created("b2", 10), served(v1, "b2"), served(a1, "b2"), served(a2, "b2")},
			wantLines:  map[string][]domain.OrderLine{"b2": {v1, a1, a2}},
		},
		{
			name:    "each served from its preferred batch",
			batches: full, waiting: []domain.Backorder{bo(a1, 1), bo(a2, 2)},
			act: func(p *domain.Product) (string, error) {
				return "", errors.Join(p.AddBatch("ship", 2, tomorrow), p.AddBatch("b2", 2, noETA))
			},
			// The shipment comes first and serves a1; b2, in the
			// warehouse, serves a2.
			wantEvents:  []domain.Event{domain.BatchCreated{Ref: "ship", SKU: waitedSKU, Qty: 2, ETA: domain.Date{Time: tomorrow}}, served(a1, "ship"), created("b2", 2), served(a2, "b2")},
			wantWaiting: nil,
			wantLines:   map[string][]domain.OrderLine{"ship": {a1}, "b2": {a2}},
		},
	})
}

// Lines rank as they join: a VIP's ahead of every non-VIP's, behind the
// VIPs who joined before.
func TestWaitingListRanksLinesAsTheyJoin(t *testing.T) {
	p := domain.NewProduct(waitedSKU, 0, full()...)
	for _, l := range []domain.OrderLine{ann, bob, vic, val, cat} {
		if _, err := p.Allocate(l); !errors.Is(err, domain.ErrOutOfStock) {
			t.Fatalf("Allocate(%s): %v, want ErrOutOfStock", l.OrderID, err)
		}
	}
	assertWaiting(t, p, []domain.Backorder{bo(vic, 3), bo(val, 4), bo(ann, 1), bo(bob, 2), bo(cat, 5)})
	assertEvents(t, p.Events(), []domain.Event{waits(ann), waits(bob), waits(vic), waits(val), waits(cat)})

	p = reload(p)
	if err := p.AddBatch("b2", 5, noETA); err != nil {
		t.Fatal(err)
	}
	assertEvents(t, p.Events(), []domain.Event{created("b2", 5), served(vic, "b2"), served(val, "b2")})
	assertWaiting(t, p, []domain.Backorder{bo(ann, 1), bo(bob, 2), bo(cat, 5)})
}

// Strict keeps stock too little for the first in line for it; fill gives
// it to smaller lines behind. First in line: ann (5), then bob (2), then
// cat (3).
func TestWaitingListPolicy(t *testing.T) {
	waiting := []domain.Backorder{bo(ann, 1), bo(bob, 2), bo(cat, 3)}
	tests := []struct {
		qty        int
		policy     domain.Policy
		wantServed []domain.OrderLine
	}{
		{2, domain.Strict, nil},
		{2, domain.Fill, []domain.OrderLine{bob}},
		{4, domain.Strict, nil},
		{4, domain.Fill, []domain.OrderLine{bob}}, // cat does not fit in the 2 left
		{5, domain.Strict, []domain.OrderLine{ann}},
		{5, domain.Fill, []domain.OrderLine{ann}}, // enough for the first: it takes it
		{6, domain.Strict, []domain.OrderLine{ann}},
		{6, domain.Fill, []domain.OrderLine{ann}},
		{7, domain.Strict, []domain.OrderLine{ann, bob}},
		{8, domain.Strict, []domain.OrderLine{ann, bob}}, // 1 left: stays for cat
		{9, domain.Fill, []domain.OrderLine{ann, bob}},
		{10, domain.Strict, []domain.OrderLine{ann, bob, cat}},
		{10, domain.Fill, []domain.OrderLine{ann, bob, cat}},
	}
	var cases []backorderCase
	for _, tt := range tests {
		c := backorderCase{
			name:    fmt.Sprintf("%s, %d units", tt.policy, tt.qty),
			policy:  tt.policy,
			batches: full, waiting: waiting,
			act:        addBatch("b2", tt.qty, noETA),
			wantEvents: []domain.Event{created("b2", tt.qty)},
			wantLines:  map[string][]domain.OrderLine{"b2": tt.wantServed},
		}
		for _, w := range waiting {
			if slices.Contains(tt.wantServed, w.OrderLine) {
				c.wantEvents = append(c.wantEvents, served(w.OrderLine, "b2"))
			} else {
				c.wantWaiting = append(c.wantWaiting, w)
			}
		}
		cases = append(cases, c)
	}
	cases = append(cases,
		backorderCase{
			name:    "fill: a larger line behind, too large as well, is passed over",
			policy:  domain.Fill,
			batches: full, waiting: []domain.Backorder{bo(cat, 1), bo(ann, 2), bo(bob, 3)},
			act:         addBatch("b2", 2, noETA),
			wantEvents:  []domain.Event{created("b2", 2), served(bob, "b2")},
			wantWaiting: []domain.Backorder{bo(cat, 1), bo(ann, 2)},
			wantLines:   map[string][]domain.OrderLine{"b2": {bob}},
		},
		backorderCase{
			name:   "fill: a line is not split between batches",
			policy: domain.Fill,
			// b1 has 2 free, b2 brings 2: 4 units, but no batch holds 3.
			batches: withFree(2), waiting: []domain.Backorder{bo(ann, 1), bo(cat, 2)},
			act:         addBatch("b2", 2, tomorrow),
			wantEvents:  []domain.Event{domain.BatchCreated{Ref: "b2", SKU: waitedSKU, Qty: 2, ETA: domain.Date{Time: tomorrow}}},
			wantWaiting: []domain.Backorder{bo(ann, 1), bo(cat, 2)},
		},
	)
	runBackorderCases(t, cases)
}

// A line no batch can take, however much stock there is in all: lines are
// not split between batches.
func TestWaitingLineLargerThanAnyBatch(t *testing.T) {
	big := shopLine("big-1", waitedSKU, 50, "ann")
	// b1 (10) and b2 (20) are free: 30 units, but no batch holds 50.
	batches := func() []*domain.Batch {
		return []*domain.Batch{newBatch("b1", waitedSKU, 10, noETA), newBatch("b2", waitedSKU, 20, tomorrow)}
	}
	waiting := []domain.Backorder{bo(big, 1), bo(bob, 2)}
	runBackorderCases(t, []backorderCase{
		{
			name:    "strict: the stock stays for it, even 60 units in three batches",
			batches: batches, waiting: waiting,
			act:         addBatch("b3", 30, later),
			wantEvents:  []domain.Event{domain.BatchCreated{Ref: "b3", SKU: waitedSKU, Qty: 30, ETA: domain.Date{Time: later}}},
			wantWaiting: waiting,
		},
		{
			name:    "fill: the lines behind it take the stock",
			policy:  domain.Fill,
			batches: batches, waiting: waiting,
			act:         addBatch("b3", 30, later),
			wantEvents:  []domain.Event{domain.BatchCreated{Ref: "b3", SKU: waitedSKU, Qty: 30, ETA: domain.Date{Time: later}}, served(bob, "b1")},
			wantWaiting: []domain.Backorder{bo(big, 1)},
			wantLines:   map[string][]domain.OrderLine{"b1": {bob}},
		},
		{
			name:    "strict: a batch that holds it serves it, then the others",
			batches: batches, waiting: waiting,
			act:        addBatch("b4", 60, noETA),
			wantEvents: []domain.Event{created("b4", 60), served(big, "b4"), served(bob, "b1")},
			wantLines:  map[string][]domain.OrderLine{"b4": {big}, "b1": {bob}},
		},
		{
			name:    "a new shop line larger than any batch waits",
			batches: batches,
			act:     allocate(big), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{waits(big)},
			wantWaiting: []domain.Backorder{bo(big, 1)},
		},
		{
			name:    "a new line of the book's API larger than any batch is out of stock",
			batches: batches,
			act:     allocate(line("book-1", waitedSKU, 50)), wantErr: domain.ErrOutOfStock,
			wantEvents: []domain.Event{outOfStock(line("book-1", waitedSKU, 50))},
		},
	})
}

// A new line while others wait. b1 has 3 units free; ann (5) waits for
// more.
func TestAllocateBehindTheWaitingList(t *testing.T) {
	o0 := line("o0", waitedSKU, 7)
	free3 := withFree(3)
	annWaits := []domain.Backorder{bo(ann, 1)}
	bigVIP := vipLine("vip-big", waitedSKU, 5, "vera")
	runBackorderCases(t, []backorderCase{
		{
			name:    "strict: a shop line behind waits, though the stock would fit it",
			batches: free3, waiting: annWaits,
			act: allocate(bob), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{waits(bob)},
			wantWaiting: []domain.Backorder{bo(ann, 1), bo(bob, 2)},
		},
		{
			name:    "fill: a shop line behind takes the stock the first cannot",
			policy:  domain.Fill,
			batches: free3, waiting: annWaits,
			act: allocate(bob), wantRef: "b1",
			wantEvents:  []domain.Event{took(bob, "b1")},
			wantWaiting: annWaits,
			wantLines:   map[string][]domain.OrderLine{"b1": {o0, bob}},
		},
		{
			name:    "fill: a shop line that fits nowhere waits behind",
			policy:  domain.Fill,
			batches: free3, waiting: annWaits,
			act: allocate(shopLine("bob-2", waitedSKU, 4, "bob")), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{waits(shopLine("bob-2", waitedSKU, 4, "bob"))},
			wantWaiting: []domain.Backorder{bo(ann, 1), bo(shopLine("bob-2", waitedSKU, 4, "bob"), 2)},
		},
		{
			name:    "strict: a VIP's line goes first, and is served when it fits",
			batches: free3, waiting: annWaits,
			act: allocate(val), wantRef: "b1",
			wantEvents:  []domain.Event{took(val, "b1")},
			wantWaiting: annWaits,
			wantLines:   map[string][]domain.OrderLine{"b1": {o0, val}},
		},
		{
			name:    "strict: a VIP's line that does not fit waits first in line",
			batches: free3, waiting: annWaits,
			act: allocate(bigVIP), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{waits(bigVIP)},
			wantWaiting: []domain.Backorder{bo(bigVIP, 2), bo(ann, 1)},
		},
		{
			name:    "strict: a VIP's line behind a waiting VIP waits, though the stock would fit it",
			batches: free3, waiting: []domain.Backorder{bo(bigVIP, 1)},
			act: allocate(val), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{waits(val)},
			wantWaiting: []domain.Backorder{bo(bigVIP, 1), bo(val, 2)},
		},
		{
			name:    "strict: a line of the book's API is out of stock, and does not wait: the product is unchanged",
			batches: free3, waiting: annWaits,
			act: allocate(book), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{outOfStock(book)},
			wantWaiting: annWaits,
		},
		{
			name:    "fill: a line of the book's API takes the stock the first cannot",
			policy:  domain.Fill,
			batches: free3, waiting: annWaits,
			act: allocate(book), wantRef: "b1",
			wantEvents:  []domain.Event{took(book, "b1")},
			wantWaiting: annWaits,
			wantLines:   map[string][]domain.OrderLine{"b1": {o0, book}},
		},
		{
			name:    "nobody waits: a shop line takes the stock",
			batches: free3,
			act:     allocate(bob), wantRef: "b1",
			wantEvents: []domain.Event{took(bob, "b1")},
			wantLines:  map[string][]domain.OrderLine{"b1": {o0, bob}},
		},
		{
			name:    "nobody waits: a shop line that does not fit waits",
			batches: free3,
			act:     allocate(ann), wantErr: domain.ErrOutOfStock,
			wantEvents:  []domain.Event{waits(ann)},
			wantWaiting: annWaits,
		},
		{
			name: "a shop line of a sku nobody stocks waits, and says so",
			act:  allocate(ann), wantErr: domain.ErrOutOfStock,
			wantEvents: []domain.Event{
				domain.OutOfStock{SKU: waitedSKU, OrderID: ann.OrderID, Qty: ann.Qty, Customer: "ann", Waiting: true, UnknownSKU: true},
			},
			wantWaiting: annWaits,
		},
	})
}

// Every way stock comes serves the waiting list, in the same change.
func TestStockThatComesServesTheWaitingList(t *testing.T) {
	w := shopLine("w-1", waitedSKU, 4, "carol")
	o1 := line("o1", waitedSKU, 3)
	o2 := line("o2", waitedSKU, 4)
	// b1 (warehouse, 10) is full: o1 (6) and o2 (4); w (4) waits.
	fullOf := func() []*domain.Batch {
		return []*domain.Batch{batchWith("b1", waitedSKU, 10, noETA, line("o1", waitedSKU, 6), o2)}
	}
	wWaits := []domain.Backorder{bo(w, 1)}
	changed := func(qty, dispatched, seq int) domain.Event {
		return domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: qty, Dispatched: dispatched, ReportSeq: seq}
	}
	// b1 (warehouse, 7) holds o2 (4): 3 free; ship (tomorrow, 5) holds o1
	// (3): 2 free. w (4) fits neither.
	split := func() []*domain.Batch {
		return []*domain.Batch{
			batchWith("b1", waitedSKU, 7, noETA, o2),
			batchWith("ship", waitedSKU, 5, tomorrow, o1),
		}
	}
	runBackorderCases(t, []backorderCase{
		{
			name:    "a new batch",
			batches: fullOf, waiting: wWaits,
			act:        addBatch("b2", 4, noETA),
			wantEvents: []domain.Event{created("b2", 4), served(w, "b2")},
			wantLines:  map[string][]domain.OrderLine{"b2": {w}},
		},
		{
			name:    "a new batch too small",
			batches: fullOf, waiting: wWaits,
			act:         addBatch("b2", 3, noETA),
			wantEvents:  []domain.Event{created("b2", 3)},
			wantWaiting: wWaits,
		},
		{
			name:    "a quantity raised by change_batch_quantity",
			batches: fullOf, waiting: wWaits,
			act:        func(p *domain.Product) (string, error) { return "", p.ChangeBatchQuantity("b1", 14) },
			wantEvents: []domain.Event{changed(14, 0, 0), served(w, "b1")},
			wantLines:  map[string][]domain.OrderLine{"b1": {line("o1", waitedSKU, 6), o2, w}},
		},
		{
			name:    "a quantity raised, not enough",
			batches: fullOf, waiting: wWaits,
			act:         func(p *domain.Product) (string, error) { return "", p.ChangeBatchQuantity("b1", 13) },
			wantEvents:  []domain.Event{changed(13, 0, 0)},
			wantWaiting: wWaits,
		},
		{
			name:    "a count that raises the quantity",
			batches: fullOf, waiting: wWaits,
			act: func(p *domain.Product) (string, error) {
				return "", p.ReportStock("b1", domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 15})
			},
			wantEvents: []domain.Event{changed(15, 0, 1), served(w, "b1")},
			wantLines:  map[string][]domain.OrderLine{"b1": {line("o1", waitedSKU, 6), o2, w}},
		},
		{
			name:    "a line deallocated",
			batches: fullOf, waiting: wWaits,
			act: deallocate(o2), wantRef: "b1",
			wantEvents: []domain.Event{
				domain.Deallocated{OrderID: "o2", SKU: waitedSKU, Qty: 4, BatchRef: "b1", Reason: domain.ReasonRequested},
				served(w, "b1"),
			},
			wantLines: map[string][]domain.OrderLine{"b1": {line("o1", waitedSKU, 6), w}},
		},
		{
			name:    "a dispatch from another batch than the one holding the line",
			batches: split, waiting: wWaits,
			// 3 units leave b1 for o1, which ship held: ship has 5 free.
			act: func(p *domain.Product) (string, error) { return "", p.Dispatch("o1", "b1", 3) },
			wantEvents: []domain.Event{
				domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: 4, Dispatched: 3},
				domain.Deallocated{OrderID: "o1", SKU: waitedSKU, Qty: 3, BatchRef: "ship", Reason: domain.ReasonDispatched},
				served(w, "ship"),
			},
			wantLines: map[string][]domain.OrderLine{"b1": {o2}, "ship": {w}},
		},
		{
			name:    "a dispatch from the line's own batch frees nothing",
			batches: split, waiting: wWaits,
			act: func(p *domain.Product) (string, error) { return "", p.Dispatch("o1", "ship", 3) },
			wantEvents: []domain.Event{
				domain.BatchQuantityChanged{Ref: "ship", SKU: waitedSKU, Qty: 2, Dispatched: 3},
				domain.Deallocated{OrderID: "o1", SKU: waitedSKU, Qty: 3, BatchRef: "ship", Reason: domain.ReasonDispatched},
			},
			wantWaiting: wWaits,
			wantLines:   map[string][]domain.OrderLine{"ship": nil},
		},
		{
			name: "strict: the first in line cancelled, the next fits",
			// b1 has 3 free: ann (5) is first, bob (2) behind her.
			batches: withFree(3), waiting: []domain.Backorder{bo(ann, 1), bo(bob, 2)},
			act:        deallocate(ann),
			wantEvents: []domain.Event{cancelled(ann), served(bob, "b1")},
			wantLines:  map[string][]domain.OrderLine{"b1": {line("o0", waitedSKU, 7), bob}},
		},
		{
			name:    "strict: a line behind the first cancelled, the first still does not fit",
			batches: withFree(3), waiting: []domain.Backorder{bo(ann, 1), bo(cat, 2), bo(bob, 3)},
			act:         deallocate(cat),
			wantEvents:  []domain.Event{cancelled(cat)},
			wantWaiting: []domain.Backorder{bo(ann, 1), bo(bob, 3)},
		},
		{
			name:    "a waiting line cancelled with another quantity is not found",
			batches: withFree(3), waiting: []domain.Backorder{bo(ann, 1)},
			act: deallocate(shopLine(ann.OrderID, waitedSKU, 4, "ann")), wantErr: domain.ErrNotAllocated,
			wantWaiting: []domain.Backorder{bo(ann, 1)},
		},
		{
			name:    "a count that lowers the quantity serves nobody",
			batches: withFree(3), waiting: []domain.Backorder{bo(ann, 1)},
			act: func(p *domain.Product) (string, error) {
				return "", p.ReportStock("b1", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 1})
			},
			wantEvents:  []domain.Event{changed(9, 0, 1)},
			wantWaiting: []domain.Backorder{bo(ann, 1)},
		},
	})
}

// A line a shrinking batch pushes out, with nowhere to go: a shop line
// waits, and stock that comes later brings it back; a line of the book's
// API is out of stock and gone. Each step a session of its own.
func TestLinePushedOutWithNowhereToGo(t *testing.T) {
	o1 := line("o1", waitedSKU, 5)
	damage := func(p *domain.Product) error {
		return p.ReportStock("b1", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 3})
	}
	count := func(p *domain.Product) error {
		return p.ReportStock("b1", domain.StockReport{Seq: 2, Kind: domain.ReportCount, Qty: 9})
	}
	damaged := domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: 7, ReportSeq: 1}
	counted := domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: 9, ReportSeq: 2}
	tests := []struct {
		name        string
		pushed      domain.OrderLine // the latest line of b1, after o1
		waiting     []domain.Backorder
		wantDamage  []domain.Event
		wantWaiting []domain.Backorder // after the damage
		wantCount   []domain.Event
		wantAfter   []domain.Backorder // after the count
	}{
		{
			name:        "a shop line waits, and comes back",
			pushed:      shopLine("s-1", waitedSKU, 4, "carol"),
			wantDamage:  []domain.Event{damaged, shrankFrom(shopLine("s-1", waitedSKU, 4, "carol"), "b1"), waits(shopLine("s-1", waitedSKU, 4, "carol"))},
			wantWaiting: []domain.Backorder{bo(shopLine("s-1", waitedSKU, 4, "carol"), 1)},
			wantCount:   []domain.Event{counted, served(shopLine("s-1", waitedSKU, 4, "carol"), "b1")},
		},
		{
			name:        "a line of the book's API is out of stock, and does not come back",
			pushed:      line("b-1", waitedSKU, 4),
			wantDamage:  []domain.Event{damaged, shrankFrom(line("b-1", waitedSKU, 4), "b1"), outOfStock(line("b-1", waitedSKU, 4))},
			wantCount:   []domain.Event{counted},
			wantWaiting: nil,
		},
		{
			name:        "a shop line waits behind the lines waiting already",
			pushed:      shopLine("s-1", waitedSKU, 4, "carol"),
			waiting:     []domain.Backorder{bo(cat, 4)},
			wantDamage:  []domain.Event{damaged, shrankFrom(shopLine("s-1", waitedSKU, 4, "carol"), "b1"), waits(shopLine("s-1", waitedSKU, 4, "carol"))},
			wantWaiting: []domain.Backorder{bo(cat, 4), bo(shopLine("s-1", waitedSKU, 4, "carol"), 5)},
			// 4 free: cat (3) is first.
			wantCount: []domain.Event{counted, served(cat, "b1")},
			wantAfter: []domain.Backorder{bo(shopLine("s-1", waitedSKU, 4, "carol"), 5)},
		},
		{
			name:        "a VIP's line waits ahead of the others",
			pushed:      vipLine("s-1", waitedSKU, 4, "vic"),
			waiting:     []domain.Backorder{bo(cat, 4)},
			wantDamage:  []domain.Event{damaged, shrankFrom(vipLine("s-1", waitedSKU, 4, "vic"), "b1"), waits(vipLine("s-1", waitedSKU, 4, "vic"))},
			wantWaiting: []domain.Backorder{bo(vipLine("s-1", waitedSKU, 4, "vic"), 5), bo(cat, 4)},
			wantCount:   []domain.Event{counted, served(vipLine("s-1", waitedSKU, 4, "vic"), "b1")},
			wantAfter:   []domain.Backorder{bo(cat, 4)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// b1 (10) holds o1 (5) and the pushed line (4): damage of 3
			// leaves 7, and pushes the latest out; a count of 9 then frees 4.
			p := domain.NewProduct(waitedSKU, 1, batchWith("b1", waitedSKU, 10, noETA, o1, tt.pushed))
			p.Waiting = tt.waiting
			if err := damage(p); err != nil {
				t.Fatal(err)
			}
			assertEvents(t, p.Events(), tt.wantDamage)
			assertWaiting(t, p, tt.wantWaiting)
			assertLines(t, mustBatch(t, p, "b1"), []domain.OrderLine{o1})
			if !p.Changed() {
				t.Error("Changed() = false after the damage")
			}

			p = reload(p)
			if err := count(p); err != nil {
				t.Fatal(err)
			}
			assertEvents(t, p.Events(), tt.wantCount)
			assertWaiting(t, p, tt.wantAfter)
			b := mustBatch(t, p, "b1")
			if b.Available() < 0 {
				t.Errorf("b1 Available() = %d", b.Available())
			}
		})
	}
}

// Shop lines pushed out together join the waiting list oldest first: the
// older line gets the lower Seq, and is served first when stock comes. b1
// (10) holds ann (5), then bob (2); damage of 9 pushes out bob, then ann,
// and neither fits in the unit left; a count of 6 then frees 6, enough
// for ann but not for both.
func TestLinesPushedOutWaitOldestFirst(t *testing.T) {
	tests := []struct {
		name        string
		waiting     []domain.Backorder
		wantWaiting []domain.Backorder // after the damage
		wantCount   []domain.Event
		wantAfter   []domain.Backorder // after the count
	}{
		{
			name:        "on an empty list",
			wantWaiting: []domain.Backorder{bo(ann, 1), bo(bob, 2)},
			wantCount:   []domain.Event{served(ann, "b1")},
			wantAfter:   []domain.Backorder{bo(bob, 2)},
		},
		{
			name:        "behind the lines waiting already",
			waiting:     []domain.Backorder{bo(cat, 4)},
			wantWaiting: []domain.Backorder{bo(cat, 4), bo(ann, 5), bo(bob, 6)},
			// 6 free: cat (3) first, then ann (5) does not fit, and the
			// list is strict.
			wantCount: []domain.Event{served(cat, "b1")},
			wantAfter: []domain.Backorder{bo(ann, 5), bo(bob, 6)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.NewProduct(waitedSKU, 1, batchWith("b1", waitedSKU, 10, noETA, ann, bob))
			p.Waiting = slices.Clone(tt.waiting)
			if err := p.ReportStock("b1", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 9}); err != nil {
				t.Fatal(err)
			}
			assertEvents(t, p.Events(), []domain.Event{
				domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: 1, ReportSeq: 1},
				shrankFrom(bob, "b1"), shrankFrom(ann, "b1"),
				waits(ann), waits(bob),
			})
			assertWaiting(t, p, tt.wantWaiting)
			assertLines(t, mustBatch(t, p, "b1"), nil)

			p = reload(p)
			if err := p.ReportStock("b1", domain.StockReport{Seq: 2, Kind: domain.ReportCount, Qty: 6}); err != nil {
				t.Fatal(err)
			}
			want := append([]domain.Event{domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: 6, ReportSeq: 2}}, tt.wantCount...)
			assertEvents(t, p.Events(), want)
			assertWaiting(t, p, tt.wantAfter)
		})
	}
}

// A customer who becomes a VIP: their waiting lines rank with the VIPs',
// by age, and the list is served again.
func TestPromoteVIP(t *testing.T) {
	bob2 := shopLine("bob-2", waitedSKU, 1, "bob")
	runBackorderCases(t, []backorderCase{
		{
			name:    "their lines are served first when they fit",
			batches: withFree(2), waiting: []domain.Backorder{bo(ann, 1), bo(bob, 2)},
			act:         promote("bob"),
			wantEvents:  []domain.Event{served(asVIP(bob), "b1")},
			wantWaiting: []domain.Backorder{bo(ann, 1)},
			wantLines:   map[string][]domain.OrderLine{"b1": {line("o0", waitedSKU, 8), asVIP(bob)}},
		},
		{
			// The rank alone is no change: a repository ranks the list it
			// loads by the VIP customers it knows.
			name:    "their lines rank with the VIPs', by age, nothing to serve",
			batches: full, waiting: []domain.Backorder{bo(ann, 1), bo(bob, 2), bo(cat, 3), bo(vic, 4), bo(bob2, 5)},
			act:         promote("bob"),
			wantWaiting: []domain.Backorder{bo(asVIP(bob), 2), bo(vic, 4), bo(asVIP(bob2), 5), bo(ann, 1), bo(cat, 3)},
		},
		{
			name:    "a customer with nothing waiting: nothing changes",
			batches: withFree(2), waiting: []domain.Backorder{bo(ann, 1)},
			act:         promote("zoe"),
			wantWaiting: []domain.Backorder{bo(ann, 1)},
		},
		{
			name:    "a VIP already: nothing changes",
			batches: withFree(2), waiting: []domain.Backorder{bo(ann, 1), bo(vic, 2)},
			act:         promote("vic"),
			wantWaiting: []domain.Backorder{bo(vic, 2), bo(ann, 1)},
		},
	})
}

// A customer's allocated lines become VIP lines too: pushed out of a
// shrinking batch, they wait as a VIP's.
func TestPromoteVIPMarksAllocatedLines(t *testing.T) {
	p := domain.NewProduct(waitedSKU, 1, batchWith("b1", waitedSKU, 7, noETA, ann, bob))
	p.Waiting = []domain.Backorder{bo(cat, 1)}
	p.PromoteVIP("bob")
	if diff := cmp.Diff([]domain.OrderLine{ann, asVIP(bob)}, mustBatch(t, p, "b1").Lines); diff != "" {
		t.Errorf("b1 lines (-want +got):\n%s", diff)
	}
	if err := p.ChangeBatchQuantity("b1", 5); err != nil {
		t.Fatal(err)
	}
	assertWaiting(t, p, []domain.Backorder{bo(asVIP(bob), 2), bo(cat, 1)})
}

// Allocating a line that waits already: it waits on; with another
// quantity, the caller is mistaken.
func TestAllocateLineAlreadyWaiting(t *testing.T) {
	annWaits := []domain.Backorder{bo(ann, 1)}
	runBackorderCases(t, []backorderCase{
		{
			name:    "same quantity: out of stock again, without a new event",
			batches: withFree(3), waiting: annWaits,
			act: allocate(ann), wantErr: domain.ErrOutOfStock,
			wantWaiting: annWaits,
		},
		{
			name:    "same quantity, under fill",
			policy:  domain.Fill,
			batches: withFree(3), waiting: annWaits,
			act: allocate(ann), wantErr: domain.ErrOutOfStock,
			wantWaiting: annWaits,
		},
		{
			name:    "another quantity: a conflict",
			batches: withFree(3), waiting: annWaits,
			act: allocate(shopLine(ann.OrderID, waitedSKU, 2, "ann")), wantErr: domain.ErrLineConflict,
			wantWaiting: annWaits,
		},
		{
			name:    "served since: its batch",
			batches: withFree(3), waiting: annWaits,
			act: func(p *domain.Product) (string, error) {
				if err := p.AddBatch("b2", 5, noETA); err != nil {
					return "", err
				}
				return p.Allocate(ann)
			},
			wantRef:    "b2",
			wantEvents: []domain.Event{created("b2", 5), served(ann, "b2")},
			wantLines:  map[string][]domain.OrderLine{"b2": {ann}},
		},
	})
}

// Session after session, as a store saves them: joining the waiting list,
// being served and leaving it are changes at the version they commit; an
// out of stock that changes nothing reads the stored version.
func TestBackorderVersionsFollowTheStoredVersion(t *testing.T) {
	w := shopLine("w-1", waitedSKU, 3, "carol")
	sessions := []struct {
		act  func(p *domain.Product) error
		want []domain.Event
	}{
		{
			act: func(p *domain.Product) error { _, err := p.Allocate(w); return ignore(err, domain.ErrOutOfStock) },
			want: []domain.Event{
				domain.OutOfStock{SKU: waitedSKU, OrderID: "w-1", Qty: 3, Customer: "carol", Waiting: true, UnknownSKU: true, Version: 1},
			},
		},
		{
			act:  func(p *domain.Product) error { return p.AddBatch("b1", 2, noETA) },
			want: []domain.Event{domain.BatchCreated{Ref: "b1", SKU: waitedSKU, Qty: 2, Version: 2}},
		},
		{
			// Strict: the 2 units stay for w.
			act: func(p *domain.Product) error {
				_, err := p.Allocate(line("o1", waitedSKU, 1))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{domain.OutOfStock{SKU: waitedSKU, OrderID: "o1", Qty: 1, Version: 2}},
		},
		{
			act: func(p *domain.Product) error { return p.ChangeBatchQuantity("b1", 3) },
			want: []domain.Event{
				domain.BatchQuantityChanged{Ref: "b1", SKU: waitedSKU, Qty: 3, Version: 3},
				domain.Allocated{OrderID: "w-1", SKU: waitedSKU, Qty: 3, BatchRef: "b1", Customer: "carol", Backorder: true, Version: 3},
			},
		},
		{
			act: func(p *domain.Product) error {
				_, err := p.Allocate(shopLine("w-2", waitedSKU, 1, "dave"))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{domain.OutOfStock{SKU: waitedSKU, OrderID: "w-2", Qty: 1, Customer: "dave", Waiting: true, Version: 4}},
		},
		{
			act: func(p *domain.Product) error {
				_, err := p.Deallocate(shopLine("w-2", waitedSKU, 1, "dave"))
				return err
			},
			want: []domain.Event{domain.BackorderCancelled{OrderID: "w-2", SKU: waitedSKU, Qty: 1, Version: 5}},
		},
	}
	p := domain.NewProduct(waitedSKU, 0)
	for i, s := range sessions {
		if i > 0 {
			p = reload(p)
		}
		if err := s.act(p); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		if diff := cmp.Diff(s.want, p.Events()); diff != "" {
			t.Errorf("session %d at version %d: events (-want +got):\n%s", i+1, p.Version, diff)
		}
		if got, want := p.Changed(), changes(s.want); got != want {
			t.Errorf("session %d: Changed() = %v, want %v", i+1, got, want)
		}
	}
	if p.Version != 4 {
		t.Errorf("last session loaded at version %d, want 4", p.Version)
	}
}

// longWaitingList returns n waiting lines of 1 to 3 units, one in ten a
// VIP's, ranked; and the units the first k of them want.
func longWaitingList(n, k int) ([]domain.Backorder, int) {
	ws := make([]domain.Backorder, n)
	for i := range ws {
		l := shopLine(fmt.Sprintf("order-%05d", i), waitedSKU, 1+i%3, fmt.Sprintf("customer-%05d", i))
		l.VIP = i%10 == 7
		ws[i] = bo(l, int64(i+1))
	}
	ws = domain.Rank(ws)
	units := 0
	for _, w := range ws[:k] {
		units += w.Qty
	}
	return ws, units
}

// Stock for 6,000 lines of a list of 10,000 fills them in order, in one
// change, at once.
func TestServeLongWaitingList(t *testing.T) {
	const n, k = 10_000, 6_000
	ws, units := longWaitingList(n, k)
	for _, policy := range []domain.Policy{domain.Strict, domain.Fill} {
		t.Run(policy.String(), func(t *testing.T) {
			p := domain.NewProduct(waitedSKU, 1, full()...)
			p.Policy = policy
			p.Waiting = slices.Clone(ws)

			start := time.Now()
			if err := p.AddBatch("b2", units, noETA); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("serving %d lines took %v", k, d)
			}
			want := []domain.Event{created("b2", units)}
			for _, w := range ws[:k] {
				want = append(want, served(w.OrderLine, "b2"))
			}
			assertEvents(t, p.Events(), want)
			assertWaiting(t, p, ws[k:])
			if b := mustBatch(t, p, "b2"); b.Available() != 0 || len(b.Lines) != k {
				t.Errorf("b2: %d available, %d lines; want 0, %d", b.Available(), len(b.Lines), k)
			}
		})
	}
}

func BenchmarkServeWaitingList(b *testing.B) {
	const n, k = 10_000, 6_000
	ws, units := longWaitingList(n, k)
	for b.Loop() {
		b.StopTimer()
		p := domain.NewProduct(waitedSKU, 1, full()...)
		p.Waiting = slices.Clone(ws)
		b.StartTimer()
		if err := p.AddBatch("b2", units, noETA); err != nil {
			b.Fatal(err)
		}
		if len(p.Waiting) != n-k {
			b.Fatalf("%d lines left waiting, want %d", len(p.Waiting), n-k)
		}
	}
	b.ReportMetric(k, "lines/op")
}

func TestParsePolicy(t *testing.T) {
	for _, name := range []string{"strict", "fill"} {
		p, err := domain.ParsePolicy(name)
		if err != nil {
			t.Fatalf("ParsePolicy(%q): %v", name, err)
		}
		if p.String() != name {
			t.Errorf("ParsePolicy(%q).String() = %q", name, p.String())
		}
	}
	if domain.Policy(0) != domain.Strict {
		t.Error("the zero policy is not strict")
	}
	for _, bad := range []string{"", "Strict", "FILL", "first", " fill"} {
		if _, err := domain.ParsePolicy(bad); !errors.Is(err, fail.Invalid) {
			t.Errorf("ParsePolicy(%q) error = %v, want an invalid-input error", bad, err)
		}
	}
}

// The warehouse ships a line it still saw in its batch while this service
// had pushed it out to the waiting list (the news crossed): the line
// leaves the waiting list, and stock that comes later does not serve it a
// second time.
func TestDispatchOfAWaitingLineTakesItOffTheList(t *testing.T) {
	const sku = "CROSSED-LAMP"
	for _, ref := range []string{"b", ""} {
		t.Run("batch "+ref, func(t *testing.T) {
			l := shopLine("o1", sku, 3, "ann")
			p := domain.NewProduct(sku, 0, batchWith("b", sku, 3, noETA, l))
			if err := p.ChangeBatchQuantity("b", 0); err != nil { // damage: the line waits
				t.Fatal(err)
			}
			if len(p.Waiting) != 1 {
				t.Fatalf("waiting %v, want o1", p.Waiting)
			}
			if err := p.Dispatch("o1", ref, 3); err != nil {
				t.Fatal(err)
			}
			if len(p.Waiting) != 0 {
				t.Fatalf("waiting %v after the dispatch, want none", p.Waiting)
			}
			if !slices.ContainsFunc(p.Events(), func(e domain.Event) bool { _, ok := e.(domain.BackorderCancelled); return ok }) {
				t.Errorf("events %v, want the line off the waiting list", p.Events())
			}
			if err := p.AddBatch("later", 10, noETA); err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Events() {
				if a, ok := e.(domain.Allocated); ok && a.OrderID == "o1" {
					t.Errorf("the dispatched line was served again: %+v", a)
				}
			}
		})
	}
}
