package domain_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

// The versions events carry, compared exactly (no ignoreVersions): a
// change carries the version it commits, Version+1, whatever else the
// session changed; OutOfStock, which changes nothing, the version it was
// read at: Version, or Version+1 once the session changed the product.
func TestEventVersions(t *testing.T) {
	const sku = "VERSIONED-LAMP"
	o1 := line("o1", sku, 3)
	o2 := line("o2", sku, 4)
	// loaded is the product as stored at version 7: b1 (warehouse, 10)
	// holding o1 and o2, loaded; b2 (tomorrow, 5), empty.
	loaded := func() *domain.Product {
		return domain.NewProduct(sku, 7,
			batchWith("b1", sku, 10, noETA, o1, o2),
			newBatch("b2", sku, 5, tomorrow),
		)
	}
	fresh := func() *domain.Product { return domain.NewProduct(sku, 0) }
	// waiting is loaded as well, with w1 (6, carol's) then w2 (5, dave's)
	// waiting: b2's 5 units stay for w1 (the policy is strict).
	waiting := func() *domain.Product {
		p := loaded()
		p.Waiting = []domain.Backorder{
			{OrderLine: shopLine("w1", sku, 6, "carol"), Seq: 1},
			{OrderLine: shopLine("w2", sku, 5, "dave"), Seq: 2},
		}
		return p
	}
	changed := func(ref string, qty, dispatched, seq, v int) domain.Event {
		return domain.BatchQuantityChanged{Ref: ref, SKU: sku, Qty: qty, Dispatched: dispatched, ReportSeq: seq, Version: v}
	}
	dealloc := func(l domain.OrderLine, ref, reason string, v int) domain.Event {
		return domain.Deallocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref, Reason: reason, Version: v}
	}
	allocated := func(l domain.OrderLine, ref string, v int) domain.Event {
		return domain.Allocated{OrderID: l.OrderID, SKU: sku, Qty: l.Qty, BatchRef: ref, Version: v}
	}
	outOfStock := func(l domain.OrderLine, v int) domain.Event {
		return domain.OutOfStock{SKU: sku, OrderID: l.OrderID, Qty: l.Qty, Version: v}
	}
	tests := []struct {
		name        string
		product     func() *domain.Product
		act         func(p *domain.Product) error
		want        []domain.Event
		wantChanged bool
	}{
		{
			name:    "create: a new product's first batch commits version 1",
			product: fresh,
			act:     func(p *domain.Product) error { return p.AddBatch("b1", 10, noETA) },
			want: []domain.Event{
				domain.BatchCreated{Ref: "b1", SKU: sku, Qty: 10, Version: 1},
			},
			wantChanged: true,
		},
		{
			name:    "create: batches added in one session commit one version",
			product: loaded,
			act: func(p *domain.Product) error {
				return errors.Join(p.AddBatch("b3", 1, later), p.AddBatch("b4", 2, noETA))
			},
			want: []domain.Event{
				domain.BatchCreated{Ref: "b3", SKU: sku, Qty: 1, ETA: domain.Date{Time: later}, Version: 8},
				domain.BatchCreated{Ref: "b4", SKU: sku, Qty: 2, Version: 8},
			},
			wantChanged: true,
		},
		{
			name:        "allocate",
			product:     loaded,
			act:         func(p *domain.Product) error { _, err := p.Allocate(line("o3", sku, 2)); return err },
			want:        []domain.Event{allocated(line("o3", sku, 2), "b1", 8)},
			wantChanged: true,
		},
		{
			name:    "allocating the same line again raises nothing",
			product: loaded,
			act:     func(p *domain.Product) error { _, err := p.Allocate(o1); return err },
		},
		{
			name:    "out of stock, nothing changed before: the version read",
			product: loaded,
			act: func(p *domain.Product) error {
				_, err := p.Allocate(line("o3", sku, 9))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{outOfStock(line("o3", sku, 9), 7)},
		},
		{
			name:    "out of stock of a product never stored: version 0",
			product: fresh,
			act: func(p *domain.Product) error {
				_, err := p.Allocate(line("o3", sku, 1))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{domain.OutOfStock{SKU: sku, OrderID: "o3", Qty: 1, UnknownSKU: true}}, // no batch of it exists
		},
		{
			name:    "out of stock after an allocation in the session: the version the allocation commits",
			product: loaded,
			act: func(p *domain.Product) error {
				if _, err := p.Allocate(line("o3", sku, 3)); err != nil { // b1 full
					return err
				}
				_, err := p.Allocate(line("o4", sku, 6)) // b2 holds 5
				return ignore(err, domain.ErrOutOfStock)
			},
			want:        []domain.Event{allocated(line("o3", sku, 3), "b1", 8), outOfStock(line("o4", sku, 6), 8)},
			wantChanged: true,
		},
		{
			name:    "out of stock after a deallocation in the session",
			product: loaded,
			act: func(p *domain.Product) error {
				if _, err := p.Deallocate(o1); err != nil {
					return err
				}
				_, err := p.Allocate(line("o4", sku, 11))
				return ignore(err, domain.ErrOutOfStock)
			},
			want:        []domain.Event{dealloc(o1, "b1", domain.ReasonRequested, 8), outOfStock(line("o4", sku, 11), 8)},
			wantChanged: true,
		},
		{
			name:    "out of stock before an allocation in the session: read before the change",
			product: loaded,
			act: func(p *domain.Product) error {
				if _, err := p.Allocate(line("o4", sku, 6)); !errors.Is(err, domain.ErrOutOfStock) {
					return err
				}
				_, err := p.Allocate(line("o3", sku, 3))
				return err
			},
			want:        []domain.Event{outOfStock(line("o4", sku, 6), 7), allocated(line("o3", sku, 3), "b1", 8)},
			wantChanged: true,
		},
		{
			name:    "out of stock twice, nothing changed: both the version read",
			product: loaded,
			act: func(p *domain.Product) error {
				_, err1 := p.Allocate(line("o3", sku, 6))
				_, err2 := p.Allocate(line("o4", sku, 7))
				return errors.Join(ignore(err1, domain.ErrOutOfStock), ignore(err2, domain.ErrOutOfStock))
			},
			want: []domain.Event{outOfStock(line("o3", sku, 6), 7), outOfStock(line("o4", sku, 7), 7)},
		},
		{
			name:        "deallocate",
			product:     loaded,
			act:         func(p *domain.Product) error { _, err := p.Deallocate(o2); return err },
			want:        []domain.Event{dealloc(o2, "b1", domain.ReasonRequested, 8)},
			wantChanged: true,
		},
		{
			name:    "change quantity, and the lines it deallocates",
			product: loaded,
			act:     func(p *domain.Product) error { return p.ChangeBatchQuantity("b1", 2) },
			want: []domain.Event{
				changed("b1", 2, 0, 0, 8),
				dealloc(o2, "b1", domain.ReasonBatchShrank, 8),
				dealloc(o1, "b1", domain.ReasonBatchShrank, 8),
				// Placed again oldest first: o1 takes b2's room, o2 finds none.
				allocated(o1, "b2", 8), // allocated again in the change
				outOfStock(o2, 8),      // read after the change
			},
			wantChanged: true,
		},
		{
			name:    "change quantity to the same quantity raises nothing",
			product: loaded,
			act:     func(p *domain.Product) error { return p.ChangeBatchQuantity("b1", 10) },
		},
		{
			name:    "dispatch",
			product: loaded,
			act:     func(p *domain.Product) error { return p.Dispatch("o1", "b1", 3) },
			want: []domain.Event{
				changed("b1", 7, 3, 0, 8),
				dealloc(o1, "b1", domain.ReasonDispatched, 8),
			},
			wantChanged: true,
		},
		{
			name:    "dispatch of a released line that shrinks the batch",
			product: loaded,
			act:     func(p *domain.Product) error { return p.Dispatch("o9", "b1", 5) },
			want: []domain.Event{
				changed("b1", 5, 5, 0, 8),
				dealloc(o2, "b1", domain.ReasonBatchShrank, 8),
				allocated(o2, "b2", 8),
			},
			wantChanged: true,
		},
		{
			name:    "dispatch, legacy form",
			product: loaded,
			act:     func(p *domain.Product) error { return p.Dispatch("o2", "", 4) },
			want: []domain.Event{
				changed("b1", 6, 4, 0, 8),
				dealloc(o2, "b1", domain.ReasonDispatched, 8),
			},
			wantChanged: true,
		},
		{
			name:    "damage report, and the lines it deallocates",
			product: loaded,
			act: func(p *domain.Product) error {
				return p.ReportStock("b1", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 4})
			},
			want: []domain.Event{
				changed("b1", 6, 0, 1, 8),
				dealloc(o2, "b1", domain.ReasonBatchShrank, 8),
				allocated(o2, "b2", 8),
			},
			wantChanged: true,
		},
		{
			name:    "count report",
			product: loaded,
			act: func(p *domain.Product) error {
				return p.ReportStock("b2", domain.StockReport{Seq: 3, Kind: domain.ReportCount, Qty: 4})
			},
			want:        []domain.Event{changed("b2", 4, 0, 3, 8)},
			wantChanged: true,
		},
		{
			name:    "a shop line that waits: the waiting list is the product's, a change at the version it commits",
			product: loaded,
			act: func(p *domain.Product) error {
				_, err := p.Allocate(shopLine("o3", sku, 6, "carol"))
				return ignore(err, domain.ErrOutOfStock)
			},
			want:        []domain.Event{domain.OutOfStock{SKU: sku, OrderID: "o3", Qty: 6, Customer: "carol", Waiting: true, Version: 8}},
			wantChanged: true,
		},
		{
			name:    "a shop line of a product never stored waits at version 1",
			product: fresh,
			act: func(p *domain.Product) error {
				_, err := p.Allocate(shopLine("o3", sku, 1, "carol"))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{
				domain.OutOfStock{SKU: sku, OrderID: "o3", Qty: 1, Customer: "carol", Waiting: true, UnknownSKU: true, Version: 1},
			},
			wantChanged: true,
		},
		{
			name:    "a waiting line served by a new batch",
			product: waiting,
			act:     func(p *domain.Product) error { return p.AddBatch("b3", 6, noETA) },
			want: []domain.Event{
				domain.BatchCreated{Ref: "b3", SKU: sku, Qty: 6, Version: 8},
				domain.Allocated{OrderID: "w1", SKU: sku, Qty: 6, BatchRef: "b3", Customer: "carol", Backorder: true, Version: 8},
				domain.Allocated{OrderID: "w2", SKU: sku, Qty: 5, BatchRef: "b2", Customer: "dave", Backorder: true, Version: 8},
			},
			wantChanged: true,
		},
		{
			name:    "a waiting line served by a deallocation",
			product: waiting,
			act:     func(p *domain.Product) error { _, err := p.Deallocate(o2); return err },
			want: []domain.Event{
				dealloc(o2, "b1", domain.ReasonRequested, 8),
				domain.Allocated{OrderID: "w1", SKU: sku, Qty: 6, BatchRef: "b1", Customer: "carol", Backorder: true, Version: 8},
				domain.Allocated{OrderID: "w2", SKU: sku, Qty: 5, BatchRef: "b2", Customer: "dave", Backorder: true, Version: 8},
			},
			wantChanged: true,
		},
		{
			name:    "a waiting line cancelled",
			product: waiting,
			act:     func(p *domain.Product) error { _, err := p.Deallocate(shopLine("w1", sku, 6, "carol")); return err },
			want: []domain.Event{
				domain.BackorderCancelled{OrderID: "w1", SKU: sku, Qty: 6, Version: 8},
				domain.Allocated{OrderID: "w2", SKU: sku, Qty: 5, BatchRef: "b2", Customer: "dave", Backorder: true, Version: 8},
			},
			wantChanged: true,
		},
		{
			name:    "a waiting line served once its customer is a VIP",
			product: waiting,
			act: func(p *domain.Product) error {
				p.PromoteVIP("dave") // w2 (5) is first in line now, and fits in b2
				return nil
			},
			want: []domain.Event{
				domain.Allocated{OrderID: "w2", SKU: sku, Qty: 5, BatchRef: "b2", Customer: "dave", Backorder: true, Version: 8},
			},
			wantChanged: true,
		},
		{
			name:    "a line of the book's API behind the waiting list: out of stock at the version read",
			product: waiting,
			act: func(p *domain.Product) error {
				_, err := p.Allocate(line("o3", sku, 1))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{outOfStock(line("o3", sku, 1), 7)},
		},
		{
			name:    "stale report raises nothing",
			product: loaded,
			act: func(p *domain.Product) error {
				return p.ReportStock("b1", domain.StockReport{Seq: 0, Kind: domain.ReportDamage, Qty: 4})
			},
		},
		{
			name:    "every change of a session commits the same version, and the out of stock after them reads it",
			product: loaded,
			act: func(p *domain.Product) error {
				_, err1 := p.Allocate(line("o3", sku, 3))
				err2 := p.Dispatch("o1", "b1", 3)
				err3 := p.ReportStock("b2", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 1})
				_, err4 := p.Deallocate(o2)
				err5 := p.AddBatch("b3", 1, later)
				_, err6 := p.Allocate(line("o4", sku, 20))
				return errors.Join(err1, err2, err3, err4, err5, ignore(err6, domain.ErrOutOfStock))
			},
			want: []domain.Event{
				allocated(line("o3", sku, 3), "b1", 8),
				changed("b1", 7, 3, 0, 8),
				dealloc(o1, "b1", domain.ReasonDispatched, 8),
				changed("b2", 4, 0, 1, 8),
				dealloc(o2, "b1", domain.ReasonRequested, 8),
				domain.BatchCreated{Ref: "b3", SKU: sku, Qty: 1, ETA: domain.Date{Time: later}, Version: 8},
				outOfStock(line("o4", sku, 20), 8),
			},
			wantChanged: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.product()
			if err := tt.act(p); err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, p.Events()); diff != "" {
				t.Errorf("events, versions included (-want +got):\n%s", diff)
			}
			if p.Changed() != tt.wantChanged {
				t.Errorf("Changed() = %v, want %v", p.Changed(), tt.wantChanged)
			}
		})
	}
}

// ignore returns nil for an error that is target, and err otherwise.
func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// Session after session, as a store saves them: a change carries the
// version the product is stored at once it commits, and an out of stock
// alone (nothing stored) the version the product is stored at already.
func TestEventVersionsFollowTheStoredVersion(t *testing.T) {
	const sku = "VERSIONED-LAMP"
	type session struct {
		act  func(p *domain.Product) error
		want []domain.Event
	}
	sessions := []session{
		{
			act:  func(p *domain.Product) error { return p.AddBatch("b1", 5, noETA) },
			want: []domain.Event{domain.BatchCreated{Ref: "b1", SKU: sku, Qty: 5, Version: 1}},
		},
		{
			act:  func(p *domain.Product) error { _, err := p.Allocate(line("o1", sku, 5)); return err },
			want: []domain.Event{domain.Allocated{OrderID: "o1", SKU: sku, Qty: 5, BatchRef: "b1", Version: 2}},
		},
		{
			act: func(p *domain.Product) error {
				_, err := p.Allocate(line("o2", sku, 1))
				return ignore(err, domain.ErrOutOfStock)
			},
			want: []domain.Event{domain.OutOfStock{SKU: sku, OrderID: "o2", Qty: 1, Version: 2}},
		},
		{
			act: func(p *domain.Product) error { return p.Dispatch("o1", "b1", 5) },
			want: []domain.Event{
				domain.BatchQuantityChanged{Ref: "b1", SKU: sku, Qty: 0, Dispatched: 5, Version: 3},
				domain.Deallocated{OrderID: "o1", SKU: sku, Qty: 5, BatchRef: "b1", Reason: domain.ReasonDispatched, Version: 3},
			},
		},
		{
			act: func(p *domain.Product) error {
				return p.ReportStock("b1", domain.StockReport{Seq: 1, Kind: domain.ReportCount, Qty: 0, Dispatched: 5})
			},
			want: []domain.Event{domain.BatchQuantityChanged{Ref: "b1", SKU: sku, Qty: 0, Dispatched: 5, ReportSeq: 1, Version: 4}},
		},
		{
			act:  func(p *domain.Product) error { return p.ChangeBatchQuantity("b1", 8) },
			want: []domain.Event{domain.BatchQuantityChanged{Ref: "b1", SKU: sku, Qty: 8, Dispatched: 5, ReportSeq: 1, Version: 5}},
		},
		{
			act: func(p *domain.Product) error {
				_, err := p.Allocate(line("o2", sku, 1))
				return err
			},
			want: []domain.Event{domain.Allocated{OrderID: "o2", SKU: sku, Qty: 1, BatchRef: "b1", Version: 6}},
		},
		{
			act:  func(p *domain.Product) error { _, err := p.Deallocate(line("o2", sku, 1)); return err },
			want: []domain.Event{domain.Deallocated{OrderID: "o2", SKU: sku, Qty: 1, BatchRef: "b1", Reason: domain.ReasonRequested, Version: 7}},
		},
		{
			act: func(p *domain.Product) error {
				return p.ReportStock("b1", domain.StockReport{Seq: 2, Kind: domain.ReportDamage, Qty: 1})
			},
			want: []domain.Event{domain.BatchQuantityChanged{Ref: "b1", SKU: sku, Qty: 7, Dispatched: 5, ReportSeq: 2, Version: 8}},
		},
	}
	p := domain.NewProduct(sku, 0)
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
	}
	if p.Version != 7 {
		t.Errorf("last session loaded at version %d, want 7", p.Version)
	}
}

// The version travels in every event's JSON, beside what the warehouse
// needs of a batch's quantity.
func TestEventVersionJSON(t *testing.T) {
	tests := []struct {
		ev   domain.Event
		want string
	}{
		{domain.BatchCreated{Ref: "b1", SKU: "S", Qty: 10, Version: 1}, `{"ref":"b1","sku":"S","qty":10,"eta":null,"version":1}`},
		{
			domain.BatchQuantityChanged{Ref: "b1", SKU: "S", Qty: 7, Dispatched: 3, ReportSeq: 2, Version: 9},
			`{"batchref":"b1","sku":"S","qty":7,"dispatched":3,"report_seq":2,"version":9}`,
		},
		{domain.Allocated{OrderID: "o1", SKU: "S", Qty: 2, BatchRef: "b1", Version: 4}, `{"orderid":"o1","sku":"S","qty":2,"batchref":"b1","version":4}`},
		{
			domain.Deallocated{OrderID: "o1", SKU: "S", Qty: 2, BatchRef: "b1", Reason: domain.ReasonDispatched, Version: 5},
			`{"orderid":"o1","sku":"S","qty":2,"batchref":"b1","reason":"dispatched","version":5}`,
		},
		{domain.OutOfStock{SKU: "S", OrderID: "o1", Qty: 2, Version: 4}, `{"sku":"S","orderid":"o1","qty":2,"version":4}`},
		{domain.OutOfStock{SKU: "S"}, `{"sku":"S","version":0}`},
		{
			domain.OutOfStock{SKU: "S", OrderID: "o1", Qty: 2, Version: 4, Waiting: true, Customer: "carol"},
			`{"sku":"S","orderid":"o1","qty":2,"version":4,"waiting":true,"customer":"carol"}`,
		},
		{
			domain.Allocated{OrderID: "o1", SKU: "S", Qty: 2, BatchRef: "b1", Customer: "carol", Backorder: true, Version: 5},
			`{"orderid":"o1","sku":"S","qty":2,"batchref":"b1","customer":"carol","backorder":true,"version":5}`,
		},
		{domain.BackorderCancelled{OrderID: "o1", SKU: "S", Qty: 2, Version: 6}, `{"orderid":"o1","sku":"S","qty":2,"version":6}`},
		{domain.OutOfStock{SKU: "S", OrderID: "o1", Qty: 2, UnknownSKU: true}, `{"sku":"S","orderid":"o1","qty":2,"version":0,"unknown_sku":true}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.ev)
		if err != nil {
			t.Fatalf("Marshal(%T): %v", tt.ev, err)
		}
		if string(got) != tt.want {
			t.Errorf("Marshal(%T) = %s, want %s", tt.ev, got, tt.want)
		}
	}
}
