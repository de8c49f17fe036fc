package domain_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

func TestReportStock(t *testing.T) {
	const sku = "COUNTED-LAMP"
	o1 := line("o1", sku, 3)
	o2 := line("o2", sku, 2)
	o3 := line("o3", sku, 1)
	changed := func(qty, seq int) domain.Event {
		return domain.BatchQuantityChanged{Ref: "b1", SKU: sku, Qty: qty, Dispatched: 4, ReportSeq: seq}
	}
	shrank := func(l domain.OrderLine) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: "b1", Reason: domain.ReasonBatchShrank}
	}
	// The lines pushed out are allocated again in the same change, oldest
	// first: to b2, or back to b1 when they fit in the room left there.
	moved := func(l domain.OrderLine, ref string) domain.Event {
		return domain.Allocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref}
	}
	count := func(seq, qty, dispatched int) domain.StockReport {
		return domain.StockReport{Seq: seq, Kind: domain.ReportCount, Qty: qty, Dispatched: dispatched}
	}
	damage := func(seq, qty int) domain.StockReport {
		return domain.StockReport{Seq: seq, Kind: domain.ReportDamage, Qty: qty}
	}
	// Every case starts from b1 (warehouse): 10 units, 4 dispatched from it
	// so far, report 2 applied, holding o1, o2 and o3 (6 units), loaded by
	// its ref; and b2 (tomorrow, 20), empty: it takes the lines b1 can no
	// longer hold.
	tests := []struct {
		name       string
		ref        string // reported on when the case fails; b1 otherwise
		report     domain.StockReport
		wantErr    error
		wantEvents []domain.Event
		wantQty    int
		wantSeq    int
		wantLines  []domain.OrderLine
		wantB2     []domain.OrderLine
	}{
		{
			name:       "damage takes its units out",
			report:     damage(3, 1),
			wantEvents: []domain.Event{changed(9, 3)},
			wantQty:    9, wantSeq: 3, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:       "damage of every free unit deallocates nothing",
			report:     damage(3, 4),
			wantEvents: []domain.Event{changed(6, 3)},
			wantQty:    6, wantSeq: 3, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:   "damage beyond the free units deallocates the latest lines",
			report: damage(3, 6),
			// 4 left: o3 and o2 go; o2 goes to b2, then o3 fits back in the
			// unit o1 leaves.
			wantEvents: []domain.Event{changed(4, 3), shrank(o3), shrank(o2), moved(o2, "b2"), moved(o3, "b1")},
			wantQty:    4, wantSeq: 3, wantLines: []domain.OrderLine{o1, o3}, wantB2: []domain.OrderLine{o2},
		},
		{
			name:       "count that saw the dispatches the batch knows of",
			report:     count(3, 8, 4),
			wantEvents: []domain.Event{changed(8, 3)},
			wantQty:    8, wantSeq: 3, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name: "count taken before dispatches the batch knows of: they left after it",
			// 8 counted when 2 had been dispatched; 2 more left since.
			report:     count(3, 8, 2),
			wantEvents: []domain.Event{changed(6, 3)},
			wantQty:    6, wantSeq: 3, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name: "count that saw dispatches the batch has not heard of: they are still here until they arrive",
			// 8 counted after 6 had left; this service has heard of 4.
			report:     count(3, 8, 6),
			wantEvents: []domain.Event{changed(10, 3)},
			wantQty:    10, wantSeq: 3, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:       "count that confirms the quantity still records its seq",
			report:     count(3, 10, 4),
			wantEvents: []domain.Event{changed(10, 3)},
			wantQty:    10, wantSeq: 3, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:       "count below what is allocated deallocates the latest lines",
			report:     count(3, 3, 4),
			wantEvents: []domain.Event{changed(3, 3), shrank(o3), shrank(o2), moved(o2, "b2"), moved(o3, "b2")},
			wantQty:    3, wantSeq: 3, wantLines: []domain.OrderLine{o1}, wantB2: []domain.OrderLine{o2, o3},
		},
		{
			name:       "count below what is allocated, once the dispatches since are out",
			report:     count(3, 7, 1), // 7 counted, 3 dispatched since: 4
			wantEvents: []domain.Event{changed(4, 3), shrank(o3), shrank(o2), moved(o2, "b2"), moved(o3, "b1")},
			wantQty:    4, wantSeq: 3, wantLines: []domain.OrderLine{o1, o3}, wantB2: []domain.OrderLine{o2},
		},
		{
			name:   "count of nothing deallocates every line, latest first",
			report: count(3, 0, 4),
			wantEvents: []domain.Event{
				changed(0, 3), shrank(o3), shrank(o2), shrank(o1), moved(o1, "b2"), moved(o2, "b2"), moved(o3, "b2"),
			},
			wantQty: 0, wantSeq: 3, wantB2: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:       "a seq may skip numbers",
			report:     damage(9, 2),
			wantEvents: []domain.Event{changed(8, 9)},
			wantQty:    8, wantSeq: 9, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:    "stale count changes nothing",
			report:  count(1, 0, 0),
			wantQty: 10, wantSeq: 2, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:    "stale damage changes nothing",
			report:  damage(1, 5),
			wantQty: 10, wantSeq: 2, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:    "the report applied last, again, changes nothing",
			report:  damage(2, 5),
			wantQty: 10, wantSeq: 2, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:    "unknown batch",
			ref:     "b9",
			report:  damage(3, 1),
			wantErr: domain.ErrUnknownBatch,
			wantQty: 10, wantSeq: 2, wantLines: []domain.OrderLine{o1, o2, o3},
		},
		{
			name:    "empty ref",
			ref:     "",
			report:  count(3, 1, 4),
			wantErr: domain.ErrUnknownBatch,
			wantQty: 10, wantSeq: 2, wantLines: []domain.OrderLine{o1, o2, o3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b1 := batchWith("b1", sku, 10, noETA, o1, o2, o3)
			b1.Dispatched, b1.ReportSeq = 4, 2
			b2 := newBatch("b2", sku, 20, tomorrow)
			p := domain.NewProduct(sku, 0, b2, b1)
			ref := "b1"
			if tt.wantErr != nil {
				ref = tt.ref
			}

			err := p.ReportStock(ref, tt.report)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReportStock error = %v, want %v", err, tt.wantErr)
			}
			assertEvents(t, p.Events(), tt.wantEvents)
			if got, want := p.Changed(), len(tt.wantEvents) > 0; got != want {
				t.Errorf("Changed() = %v, want %v", got, want)
			}
			want := batchWith("b1", sku, tt.wantQty, noETA, tt.wantLines...)
			want.Dispatched, want.ReportSeq = 4, tt.wantSeq
			if diff := cmp.Diff(want, mustBatch(t, p, "b1"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("b1 after the report (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(batchWith("b2", sku, 20, tomorrow, tt.wantB2...), mustBatch(t, p, "b2"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("b2 after the report (-want +got):\n%s", diff)
			}
		})
	}
}

// Reports are numbered per batch: one batch's seq says nothing of
// another's.
func TestReportStockSeqIsPerBatch(t *testing.T) {
	const sku = "COUNTED-LAMP"
	b1 := newBatch("b1", sku, 10, noETA)
	b1.ReportSeq = 5
	p := domain.NewProduct(sku, 0, b1, newBatch("b2", sku, 10, tomorrow))
	if err := p.ReportStock("b2", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 2}); err != nil {
		t.Fatal(err)
	}
	assertEvents(t, p.Events(), []domain.Event{domain.BatchQuantityChanged{Ref: "b2", SKU: sku, Qty: 8, ReportSeq: 1}})
	if b := mustBatch(t, p, "b1"); b.ReportSeq != 5 || b.Purchased != 10 {
		t.Errorf("b1 = %+v, want untouched", b)
	}
}

// The stories, each step a session of its own (the product
// reloaded between them, as a store would): the warehouse's messages about
// one batch arrive in whatever order their channels bring them.
func TestReportStockStories(t *testing.T) {
	const sku = "COUNTED-LAMP"
	o1 := line("o1", sku, 3)
	dispatch := step{name: "dispatch of o1's 3 units", do: func(p *domain.Product) error { return p.Dispatch("o1", "b1", 3) }}
	report := func(r domain.StockReport) func(p *domain.Product) error {
		return func(p *domain.Product) error { return p.ReportStock("b1", r) }
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			// Scenario A: the count includes the dispatch, which the
			// service heard of first.
			name: "count of 6 after the dispatch it includes",
			steps: []step{
				dispatch.want(7, 7, 3, 0),
				{
					name:    "count of 6, with 3 dispatched",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 6, Dispatched: 3}),
					wantQty: 6, wantAvailable: 6, wantDispatched: 3, wantSeq: 1,
				},
			},
		},
		{
			name: "count of 7 before the dispatch it includes",
			steps: []step{
				{
					name:    "count of 7, with 3 dispatched",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 7, Dispatched: 3}),
					wantQty: 10, wantAvailable: 7, wantDispatched: 0, wantSeq: 1, wantLines: []domain.OrderLine{o1},
				},
				dispatch.want(7, 7, 3, 1),
			},
		},
		{
			name: "count of 6 before the dispatch it includes: as when it comes after",
			steps: []step{
				{
					name:    "count of 6, with 3 dispatched",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 6, Dispatched: 3}),
					wantQty: 9, wantAvailable: 6, wantDispatched: 0, wantSeq: 1, wantLines: []domain.OrderLine{o1},
				},
				dispatch.want(6, 6, 3, 1),
			},
		},
		{
			name: "count taken before the dispatch, arriving after it",
			steps: []step{
				dispatch.want(7, 7, 3, 0),
				{
					name:    "count of 10, with nothing dispatched",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 10, Dispatched: 0}),
					wantQty: 7, wantAvailable: 7, wantDispatched: 3, wantSeq: 1,
				},
			},
		},
		{
			name: "damage of 1 after a dispatch of 3",
			steps: []step{
				dispatch.want(7, 7, 3, 0),
				{
					name:    "damage of 1",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 1}),
					wantQty: 6, wantAvailable: 6, wantDispatched: 3, wantSeq: 1,
				},
			},
		},
		{
			name: "damage of 1 before a dispatch of 3",
			steps: []step{
				{
					name:    "damage of 1",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 1}),
					wantQty: 9, wantAvailable: 6, wantSeq: 1, wantLines: []domain.OrderLine{o1},
				},
				dispatch.want(6, 6, 3, 1),
			},
		},
		{
			name: "the count, delivered again after the dispatch, changes nothing",
			steps: []step{
				{
					name:    "count of 7, with 3 dispatched",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 7, Dispatched: 3}),
					wantQty: 10, wantAvailable: 7, wantSeq: 1, wantLines: []domain.OrderLine{o1},
				},
				dispatch.want(7, 7, 3, 1),
				{
					name:    "count of 7 again",
					do:      report(domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 7, Dispatched: 3}),
					wantQty: 7, wantAvailable: 7, wantDispatched: 3, wantSeq: 1,
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A batch of 10 holding an order of 3.
			p := domain.NewProduct(sku, 0, newBatch("b1", sku, 10, noETA))
			mustAllocate(t, p, o1)
			for _, s := range tt.steps {
				p = reload(p)
				if err := s.do(p); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				b := mustBatch(t, p, "b1")
				got := [4]int{b.Purchased, b.Available(), b.Dispatched, b.ReportSeq}
				if want := [4]int{s.wantQty, s.wantAvailable, s.wantDispatched, s.wantSeq}; got != want {
					t.Errorf("after %s: quantity, available, dispatched, report seq = %v, want %v", s.name, got, want)
				}
				assertLines(t, b, s.wantLines)
			}
		})
	}
}

// step is a session of a story, and the batch it leaves.
type step struct {
	name                                            string
	do                                              func(p *domain.Product) error
	wantQty, wantAvailable, wantDispatched, wantSeq int
	wantLines                                       []domain.OrderLine
}

// want returns s expecting the batch given, without lines, after it.
func (s step) want(qty, available, dispatched, seq int) step {
	s.wantQty, s.wantAvailable, s.wantDispatched, s.wantSeq, s.wantLines = qty, available, dispatched, seq, nil
	return s
}
