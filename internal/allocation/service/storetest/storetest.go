// Package storetest is the contract every allocation store (service.Store)
// must meet: one suite, run against each adapter (SQLite, PostgreSQL).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Run runs the contract suite. newStore returns an empty store, built with
// the registry service.Messages().
func Run(t *testing.T, newStore func(t *testing.T) service.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s service.Store)
	}{
		{"AddAndGet", testAddAndGet},
		{"GetMissing", testGetMissing},
		{"GetForOrderLoadsOnlyThatOrder", testGetForOrder},
		{"GetByBatchRefLoadsLinesInOrder", testGetByBatchRef},
		{"GetByBatchRefLoadsTheOrdersLines", testGetByBatchRefForOrder},
		{"RollbackOnError", testRollback},
		{"StaleVersionConflicts", testStaleVersion},
		{"EventsReturnedWithEnvelopes", testEvents},
		{"InboxSkipsHandledMessage", testInbox},
		{"ReadModel", testReadModel},
		{"ChangesPersist", testChangesPersist},
		{"DispatchedAndReportSeqPersist", testLedgerPersists},
		{"DispatchOfAMovedLinePersists", testDispatchMovedLine},
		{"ConcurrentAllocationsNeverOversell", testConcurrent},
		{"BackordersPersist", testBackorders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

var ctx = context.Background()

func eta(s string) time.Time {
	d, err := domain.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d.Time
}

// addBatches adds batches of sku in one transaction.
func addBatches(t *testing.T, s service.Store, sku string, batches ...domain.Batch) {
	t.Helper()
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().Get(ctx, sku)
		if errors.Is(err, fail.NotFound) {
			p = domain.NewProduct(sku, 0)
			uow.Products().Add(p)
		} else if err != nil {
			return err
		}
		for _, b := range batches {
			if err := p.AddBatch(b.Ref, b.Purchased, b.ETA); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("adding batches: %v", err)
	}
}

func allocate(t *testing.T, s service.Store, line domain.OrderLine) string {
	t.Helper()
	var ref string
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, line.SKU, line.OrderID)
		if err != nil {
			return err
		}
		ref, err = p.Allocate(line)
		return err
	})
	if err != nil {
		t.Fatalf("allocating %v: %v", line, err)
	}
	return ref
}

// load returns the product as loaded by get.
func load(t *testing.T, s service.Store, get func(context.Context, service.ProductRepository) (*domain.Product, error)) *domain.Product {
	t.Helper()
	var p *domain.Product
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		var err error
		p, err = get(ctx, uow.Products())
		return err
	})
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	return p
}

func get(sku string) func(context.Context, service.ProductRepository) (*domain.Product, error) {
	return func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
		return r.Get(ctx, sku)
	}
}

type batchState struct {
	Ref                   string
	Purchased, Allocated  int
	ETA                   string
	Lines                 []domain.OrderLine
	Dispatched, ReportSeq int
}

func state(p *domain.Product) []batchState {
	var out []batchState
	for _, b := range p.Batches {
		out = append(out, batchState{b.Ref, b.Purchased, b.Allocated, domain.Date{Time: b.ETA}.String(), b.Lines, b.Dispatched, b.ReportSeq})
	}
	return out
}

// change loads the product of the batch ref, with the lines of orderID
// wherever they are when not empty, and changes it with fn, in one
// transaction.
func change(t *testing.T, s service.Store, ref, orderID string, fn func(p *domain.Product) error) []messaging.Raised {
	t.Helper()
	raised, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, ref, orderID)
		if err != nil {
			return err
		}
		return fn(p)
	})
	if err != nil {
		t.Fatalf("changing the product of batch %s: %v", ref, err)
	}
	return raised
}

func byBatch(ref, orderID string) func(context.Context, service.ProductRepository) (*domain.Product, error) {
	return func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
		return r.GetByBatchRef(ctx, ref, orderID)
	}
}

func testAddAndGet(t *testing.T, s service.Store) {
	addBatches(t, s, "LAMP",
		domain.Batch{Ref: "ship-2", Purchased: 20, ETA: eta("2011-01-02")},
		domain.Batch{Ref: "warehouse", Purchased: 10},
		domain.Batch{Ref: "ship-1", Purchased: 30, ETA: eta("2011-01-01")},
	)
	p := load(t, s, get("LAMP"))
	want := []batchState{
		{Ref: "warehouse", Purchased: 10},
		{Ref: "ship-1", Purchased: 30, ETA: "2011-01-01"},
		{Ref: "ship-2", Purchased: 20, ETA: "2011-01-02"},
	}
	if diff := cmp.Diff(want, state(p)); diff != "" {
		t.Errorf("loaded batches (-want +got):\n%s", diff)
	}
	if p.Version != 1 || p.SKU != "LAMP" || p.Changed() {
		t.Errorf("loaded product sku %s version %d changed %v, want LAMP 1 false", p.SKU, p.Version, p.Changed())
	}
	addBatches(t, s, "LAMP", domain.Batch{Ref: "ship-3", Purchased: 5, ETA: eta("2011-01-03")})
	if v := load(t, s, get("LAMP")).Version; v != 2 {
		t.Errorf("version after a second change = %d, want 2", v)
	}
}

func testGetMissing(t *testing.T, s service.Store) {
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		if _, err := uow.Products().Get(ctx, "NOPE"); !errors.Is(err, fail.NotFound) {
			return fmt.Errorf("Get of a missing sku: %v, want ErrNotFound", err)
		}
		if _, err := uow.Products().GetForOrder(ctx, "NOPE", "o1"); !errors.Is(err, fail.NotFound) {
			return fmt.Errorf("GetForOrder of a missing sku: %v, want ErrNotFound", err)
		}
		if _, err := uow.Products().GetByBatchRef(ctx, "nope", ""); !errors.Is(err, fail.NotFound) {
			return fmt.Errorf("GetByBatchRef of a missing batch: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testGetForOrder(t *testing.T, s service.Store) {
	addBatches(t, s, "RUG", domain.Batch{Ref: "b1", Purchased: 10}, domain.Batch{Ref: "b2", Purchased: 10, ETA: eta("2011-01-01")})
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "RUG", Qty: 8})
	allocate(t, s, domain.OrderLine{OrderID: "o2", SKU: "RUG", Qty: 5})
	allocate(t, s, domain.OrderLine{OrderID: "o3", SKU: "RUG", Qty: 1})
	p := load(t, s, func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
		return r.GetForOrder(ctx, "RUG", "o2")
	})
	want := []batchState{
		{Ref: "b1", Purchased: 10, Allocated: 9},
		{Ref: "b2", Purchased: 10, Allocated: 5, ETA: "2011-01-01", Lines: []domain.OrderLine{{OrderID: "o2", SKU: "RUG", Qty: 5}}},
	}
	if diff := cmp.Diff(want, state(p)); diff != "" {
		t.Errorf("loaded for order o2 (-want +got):\n%s", diff)
	}
	if got := load(t, s, get("RUG")); got.Batches[0].Lines != nil || got.Batches[1].Lines != nil {
		t.Errorf("Get loaded lines: %v", state(got))
	}
}

func testGetByBatchRef(t *testing.T, s service.Store) {
	addBatches(t, s, "SOFA", domain.Batch{Ref: "s1", Purchased: 10}, domain.Batch{Ref: "s2", Purchased: 10, ETA: eta("2012-05-01")})
	for _, o := range []string{"c", "a", "b"} {
		allocate(t, s, domain.OrderLine{OrderID: o, SKU: "SOFA", Qty: 3})
	}
	allocate(t, s, domain.OrderLine{OrderID: "d", SKU: "SOFA", Qty: 3}) // to s2
	p := load(t, s, func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
		return r.GetByBatchRef(ctx, "s1", "")
	})
	want := []batchState{
		{Ref: "s1", Purchased: 10, Allocated: 9, Lines: []domain.OrderLine{{OrderID: "c", SKU: "SOFA", Qty: 3}, {OrderID: "a", SKU: "SOFA", Qty: 3}, {OrderID: "b", SKU: "SOFA", Qty: 3}}},
		{Ref: "s2", Purchased: 10, Allocated: 3, ETA: "2012-05-01"},
	}
	if diff := cmp.Diff(want, state(p)); diff != "" {
		t.Errorf("loaded by batch s1 (-want +got):\n%s", diff)
	}
}

// testGetByBatchRefForOrder: loaded by a batch ref for an order, the
// product holds every line of the batch, and the order's lines of the
// product elsewhere; not other orders' lines of the other batches.
func testGetByBatchRefForOrder(t *testing.T, s service.Store) {
	addBatches(t, s, "BENCH",
		domain.Batch{Ref: "n1", Purchased: 5},
		domain.Batch{Ref: "n2", Purchased: 10, ETA: eta("2012-05-01")},
		domain.Batch{Ref: "n3", Purchased: 10, ETA: eta("2013-05-01")},
	)
	addBatches(t, s, "STOOL", domain.Batch{Ref: "x1", Purchased: 10})
	for _, l := range []struct {
		orderID string
		qty     int
		want    string
	}{{"a", 3, "n1"}, {"b", 2, "n1"}, {"c", 4, "n2"}, {"o", 3, "n2"}, {"d", 5, "n3"}} {
		if ref := allocate(t, s, domain.OrderLine{OrderID: l.orderID, SKU: "BENCH", Qty: l.qty}); ref != l.want {
			t.Fatalf("setup: %s allocated to %s, want %s", l.orderID, ref, l.want)
		}
	}
	allocate(t, s, domain.OrderLine{OrderID: "o", SKU: "STOOL", Qty: 1}) // the order's line of another sku
	a := domain.OrderLine{OrderID: "a", SKU: "BENCH", Qty: 3}
	b := domain.OrderLine{OrderID: "b", SKU: "BENCH", Qty: 2}
	c := domain.OrderLine{OrderID: "c", SKU: "BENCH", Qty: 4}
	o := domain.OrderLine{OrderID: "o", SKU: "BENCH", Qty: 3}
	d := domain.OrderLine{OrderID: "d", SKU: "BENCH", Qty: 5}
	tests := []struct {
		name         string
		ref, orderID string
		want         [3][]domain.OrderLine // the lines of n1, n2, n3
	}{
		{"the order's line in another batch", "n1", "o", [3][]domain.OrderLine{{a, b}, {o}, nil}},
		{"the order's line in the batch", "n2", "o", [3][]domain.OrderLine{nil, {c, o}, nil}},
		{"an order in a third batch", "n1", "d", [3][]domain.OrderLine{{a, b}, nil, {d}}},
		{"an order with no line", "n3", "zz", [3][]domain.OrderLine{nil, nil, {d}}},
		{"no order", "n1", "", [3][]domain.OrderLine{{a, b}, nil, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := load(t, s, byBatch(tt.ref, tt.orderID))
			want := []batchState{
				{Ref: "n1", Purchased: 5, Allocated: 5, Lines: tt.want[0]},
				{Ref: "n2", Purchased: 10, Allocated: 7, ETA: "2012-05-01", Lines: tt.want[1]},
				{Ref: "n3", Purchased: 10, Allocated: 5, ETA: "2013-05-01", Lines: tt.want[2]},
			}
			if diff := cmp.Diff(want, state(p)); diff != "" {
				t.Errorf("GetByBatchRef(%s, %q) (-want +got):\n%s", tt.ref, tt.orderID, diff)
			}
		})
	}
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		_, err := uow.Products().GetByBatchRef(ctx, "nope", "o")
		return err
	})
	if !errors.Is(err, fail.NotFound) {
		t.Errorf("GetByBatchRef of a missing batch, for an order: %v, want ErrNotFound", err)
	}
}

func testRollback(t *testing.T, s service.Store) {
	addBatches(t, s, "CHAIR", domain.Batch{Ref: "c1", Purchased: 10})
	boom := errors.New("boom")
	raised, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "CHAIR", "o1")
		if err != nil {
			return err
		}
		if _, err := p.Allocate(domain.OrderLine{OrderID: "o1", SKU: "CHAIR", Qty: 4}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || raised != nil {
		t.Fatalf("Transact = %v, %v; want nil, boom", raised, err)
	}
	p := load(t, s, get("CHAIR"))
	if p.Batches[0].Allocated != 0 || p.Version != 1 {
		t.Errorf("after rollback: allocated %d version %d, want 0 and 1", p.Batches[0].Allocated, p.Version)
	}
}

func testStaleVersion(t *testing.T, s service.Store) {
	addBatches(t, s, "TABLE", domain.Batch{Ref: "t1", Purchased: 10})
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "TABLE", Qty: 1}) // version 2
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "TABLE", "o2")
		if err != nil {
			return err
		}
		p.Version = 1 // as if loaded before o1's allocation
		_, err = p.Allocate(domain.OrderLine{OrderID: "o2", SKU: "TABLE", Qty: 1})
		return err
	})
	if !errors.Is(err, messaging.ErrConcurrentUpdate) {
		t.Fatalf("saving at a stale version: %v, want ErrConcurrentUpdate", err)
	}
	if got := load(t, s, get("TABLE")); got.Batches[0].Allocated != 1 || got.Version != 2 {
		t.Errorf("after the conflict: allocated %d version %d, want 1 and 2", got.Batches[0].Allocated, got.Version)
	}
	// A second product created meanwhile conflicts too.
	_, err = s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("TABLE", 0)
		uow.Products().Add(p)
		return p.AddBatch("t2", 1, time.Time{})
	})
	if !errors.Is(err, messaging.ErrConcurrentUpdate) {
		t.Fatalf("adding an existing product: %v, want ErrConcurrentUpdate", err)
	}
}

func testEvents(t *testing.T, s service.Store) {
	corr := "flow-1"
	mctx := messaging.WithMeta(ctx, messaging.Meta{MessageID: "cmd-1", CorrelationID: corr})
	raised, err := s.Transact(mctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("LAMP", 0)
		uow.Products().Add(p)
		if err := p.AddBatch("l1", 1, time.Time{}); err != nil {
			return err
		}
		p.Allocate(domain.OrderLine{OrderID: "o1", SKU: "LAMP", Qty: 1})
		p.Allocate(domain.OrderLine{OrderID: "o2", SKU: "LAMP", Qty: 1}) // out of stock
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []any
	for _, r := range raised {
		got = append(got, r.Event)
		if r.Envelope.CorrelationID != corr || r.Envelope.CausationID != "cmd-1" || r.Envelope.ID == "" || r.Envelope.Key != "LAMP" {
			t.Errorf("envelope %+v: want correlation %s, causation cmd-1, an id, key LAMP", r.Envelope, corr)
		}
	}
	want := []any{
		domain.BatchCreated{Ref: "l1", SKU: "LAMP", Qty: 1, Version: 1},
		domain.Allocated{OrderID: "o1", SKU: "LAMP", Qty: 1, BatchRef: "l1", Version: 1},
		domain.OutOfStock{SKU: "LAMP", OrderID: "o2", Qty: 1, Version: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("raised events (-want +got):\n%s", diff)
	}
	// Only OutOfStock: the product does not change, the event is still kept.
	raised, err = s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "LAMP", "o3")
		if err != nil {
			return err
		}
		p.Allocate(domain.OrderLine{OrderID: "o3", SKU: "LAMP", Qty: 1})
		return nil
	})
	if err != nil || len(raised) != 1 {
		t.Fatalf("out of stock alone: %v, %v; want one event", raised, err)
	}
	if v := load(t, s, get("LAMP")).Version; v != 1 {
		t.Errorf("version after an out-of-stock = %d, want 1", v)
	}
}

func testInbox(t *testing.T, s service.Store) {
	addBatches(t, s, "LAMP", domain.Batch{Ref: "l1", Purchased: 10})
	mctx := messaging.WithMeta(ctx, messaging.Meta{MessageID: "m-1", CorrelationID: "m-1", Consumer: "test/consumer"})
	calls := 0
	fn := func(ctx context.Context, uow service.UnitOfWork) error {
		calls++ // each call allocates another order
		p, err := uow.Products().GetForOrder(ctx, "LAMP", fmt.Sprint("o", calls))
		if err != nil {
			return err
		}
		_, err = p.Allocate(domain.OrderLine{OrderID: fmt.Sprint("o", calls), SKU: "LAMP", Qty: 1})
		return err
	}
	if _, err := s.Transact(mctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transact(mctx, fn); !errors.Is(err, messaging.ErrAlreadyHandled) {
		t.Fatalf("second handling: %v, want ErrAlreadyHandled", err)
	}
	other := messaging.WithMeta(ctx, messaging.Meta{MessageID: "m-1", CorrelationID: "m-1", Consumer: "test/other"})
	if _, err := s.Transact(other, fn); err != nil {
		t.Fatalf("another consumer, same message: %v", err)
	}
	if got := load(t, s, get("LAMP")).Batches[0].Allocated; got != 2 {
		t.Errorf("%d allocated, want 2: one for each consumer", got)
	}
	// A message handled already that now fails (its effect makes it fail:
	// a deallocation delivered again) is reported as handled.
	refused := errors.New("refused: applied already")
	if _, err := s.Transact(mctx, func(context.Context, service.UnitOfWork) error { return refused }); !errors.Is(err, messaging.ErrAlreadyHandled) {
		t.Errorf("a handled message whose handler now fails: %v, want ErrAlreadyHandled", err)
	}
	// A failed handling is not recorded: the message is handled again.
	failing := messaging.WithMeta(ctx, messaging.Meta{MessageID: "m-2", Consumer: "test/consumer"})
	s.Transact(failing, func(context.Context, service.UnitOfWork) error { return errors.New("boom") })
	if _, err := s.Transact(failing, func(context.Context, service.UnitOfWork) error { return nil }); err != nil {
		t.Errorf("after a failed handling: %v, want it handled", err)
	}
}

func testReadModel(t *testing.T, s service.Store) {
	write := func(f func(service.ReadModel) error) {
		t.Helper()
		if _, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error { return f(uow.ReadModel()) }); err != nil {
			t.Fatal(err)
		}
	}
	view := func(orderID string, want ...service.AllocationView) {
		t.Helper()
		got, err := s.Allocations(ctx, orderID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("allocations of %s (-want +got):\n%s", orderID, diff)
		}
	}
	addBatches(t, s, "SKU-A", domain.Batch{Ref: "a1", Purchased: 10})
	addBatches(t, s, "SKU-B", domain.Batch{Ref: "b1", Purchased: 10}, domain.Batch{Ref: "b2", Purchased: 10, ETA: eta("2030-01-01")})
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "SKU-B", Qty: 10}) // b1
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "SKU-A", Qty: 1})
	allocate(t, s, domain.OrderLine{OrderID: "o2", SKU: "SKU-A", Qty: 1})
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o1", "SKU-B", "b1") })
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o1", "SKU-B", "b1") }) // twice: one row
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o1", "SKU-A", "a1") })
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o2", "SKU-A", "a1") })
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o3", "SKU-A", "a1") }) // not allocated: no row
	view("o1", service.AllocationView{SKU: "SKU-A", BatchRef: "a1"}, service.AllocationView{SKU: "SKU-B", BatchRef: "b1"})
	view("o3")

	// Reallocated: b1 shrinks, o1 moves to b2.
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, "b1", "")
		if err != nil {
			return err
		}
		return p.ChangeBatchQuantity("b1", 5)
	})
	if err != nil {
		t.Fatal(err)
	}
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "SKU-B", Qty: 10}) // b2
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o1", "SKU-B", "b2") })
	write(func(r service.ReadModel) error { return r.SetAllocation(ctx, "o1", "SKU-B", "b1") })    // late: no effect
	write(func(r service.ReadModel) error { return r.RemoveAllocation(ctx, "o1", "SKU-B", "b1") }) // late: no effect
	write(func(r service.ReadModel) error { return r.RemoveAllocation(ctx, "o1", "SKU-A", "a1") }) // still allocated: no effect
	view("o1", service.AllocationView{SKU: "SKU-A", BatchRef: "a1"}, service.AllocationView{SKU: "SKU-B", BatchRef: "b2"})
	_, err = s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "SKU-A", "o1")
		if err != nil {
			return err
		}
		_, err = p.Deallocate(domain.OrderLine{OrderID: "o1", SKU: "SKU-A", Qty: 1})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	write(func(r service.ReadModel) error { return r.RemoveAllocation(ctx, "o1", "SKU-A", "a1") })
	view("o1", service.AllocationView{SKU: "SKU-B", BatchRef: "b2"})
	view("none")
}

func testChangesPersist(t *testing.T, s service.Store) {
	addBatches(t, s, "BED", domain.Batch{Ref: "e1", Purchased: 10, ETA: eta("2020-01-01")}, domain.Batch{Ref: "e2", Purchased: 10, ETA: eta("2020-02-01")})
	for _, o := range []string{"o1", "o2", "o3"} {
		allocate(t, s, domain.OrderLine{OrderID: o, SKU: "BED", Qty: 3})
	}
	var raised []messaging.Raised
	raised, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, "e1", "")
		if err != nil {
			return err
		}
		return p.ChangeBatchQuantity("e1", 4) // o3, then o2 leave for e2
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(raised) != 5 {
		t.Errorf("raised %d events, want BatchQuantityChanged, two Deallocated and two Allocated", len(raised))
	}
	p := load(t, s, func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
		return r.GetByBatchRef(ctx, "e1", "")
	})
	want := []batchState{
		{Ref: "e1", Purchased: 4, Allocated: 3, ETA: "2020-01-01", Lines: []domain.OrderLine{{OrderID: "o1", SKU: "BED", Qty: 3}}},
		{Ref: "e2", Purchased: 10, Allocated: 6, ETA: "2020-02-01"},
	}
	if diff := cmp.Diff(want, state(p)); diff != "" {
		t.Errorf("after the change (-want +got):\n%s", diff)
	}
	// The line moved is in e2, and can be deallocated on request.
	if ref := allocate(t, s, domain.OrderLine{OrderID: "o3", SKU: "BED", Qty: 3}); ref != "e2" {
		t.Errorf("o3 reallocated to %s, want e2", ref)
	}
	_, err = s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "BED", "o3")
		if err != nil {
			return err
		}
		_, err = p.Deallocate(domain.OrderLine{OrderID: "o3", SKU: "BED", Qty: 3})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := load(t, s, get("BED")); p.Batches[1].Allocated != 3 {
		t.Errorf("e2 allocated %d after deallocation, want 3 (o2's)", p.Batches[1].Allocated)
	}
}

// testConcurrent races several service layers (as several processes would
// be) on one store: exactly the stock is allocated.
func testConcurrent(t *testing.T, s service.Store) {
	const stock, workers, perWorker = 50, 8, 15
	addBatches(t, s, "HOT", domain.Batch{Ref: "h1", Purchased: stock / 2}, domain.Batch{Ref: "h2", Purchased: stock - stock/2, ETA: eta("2030-01-01")})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ok, outOfStock atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers*perWorker)
	for w := range workers {
		bus := service.NewBus(service.NewHandlers(s), log, nil) // its own locks: another process
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				_, err := bus.Handle(ctx, domain.Allocate{OrderID: fmt.Sprintf("w%d-%d", w, i), SKU: "HOT", Qty: 1})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, domain.ErrOutOfStock):
					outOfStock.Add(1)
				default:
					errc <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("allocation failed: %v", err)
	}
	if ok.Load() != stock || outOfStock.Load() != workers*perWorker-stock {
		t.Errorf("%d allocated and %d out of stock, want %d and %d", ok.Load(), outOfStock.Load(), stock, workers*perWorker-stock)
	}
	p := load(t, s, get("HOT"))
	for _, b := range p.Batches {
		if b.Allocated != b.Purchased {
			t.Errorf("batch %s: %d of %d allocated", b.Ref, b.Allocated, b.Purchased)
		}
	}
}

// testLedgerPersists: a batch's Dispatched and ReportSeq survive a save and
// a load, whichever way the product is loaded, and the changes that do not
// concern them (allocations, the book's change_batch_quantity) keep them.
func testLedgerPersists(t *testing.T, s service.Store) {
	addBatches(t, s, "DESK", domain.Batch{Ref: "d1", Purchased: 10}, domain.Batch{Ref: "d2", Purchased: 10, ETA: eta("2030-01-01")})
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "DESK", Qty: 3}) // d1
	change(t, s, "d1", "o1", func(p *domain.Product) error { return p.Dispatch("o1", "d1", 3) })
	change(t, s, "d1", "", func(p *domain.Product) error {
		return p.ReportStock("d1", domain.StockReport{Seq: 2, Kind: domain.ReportCount, Qty: 6, Dispatched: 3})
	})
	change(t, s, "d2", "", func(p *domain.Product) error {
		return p.ReportStock("d2", domain.StockReport{Seq: 1, Kind: domain.ReportDamage, Qty: 1})
	})
	want := []batchState{
		{Ref: "d1", Purchased: 6, Dispatched: 3, ReportSeq: 2},
		{Ref: "d2", Purchased: 9, ETA: "2030-01-01", ReportSeq: 1},
	}
	check := func(when string, want []batchState) {
		t.Helper()
		loads := []struct {
			name string
			get  func(context.Context, service.ProductRepository) (*domain.Product, error)
		}{
			{"Get", get("DESK")},
			{"GetForOrder", func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetForOrder(ctx, "DESK", "nobody")
			}},
			{"GetByBatchRef", byBatch("d2", "")},
			{"GetByBatchRef for an order", byBatch("d2", "nobody")},
		}
		for _, l := range loads {
			if diff := cmp.Diff(want, state(load(t, s, l.get))); diff != "" {
				t.Errorf("%s, loaded by %s (-want +got):\n%s", when, l.name, diff)
			}
		}
	}
	check("after a dispatch and reports", want)

	// A stale report changes nothing, and is not saved.
	raised := change(t, s, "d1", "", func(p *domain.Product) error {
		return p.ReportStock("d1", domain.StockReport{Seq: 2, Kind: domain.ReportDamage, Qty: 5})
	})
	if len(raised) != 0 {
		t.Errorf("a stale report raised %d events", len(raised))
	}
	check("after a stale report", want)

	// Allocations, and the book's change of quantity, keep them.
	allocate(t, s, domain.OrderLine{OrderID: "o2", SKU: "DESK", Qty: 2}) // d1
	change(t, s, "d2", "", func(p *domain.Product) error { return p.ChangeBatchQuantity("d2", 12) })
	want[0].Allocated = 2
	want[1].Purchased = 12
	check("after an allocation and a change of quantity", want)
	p := load(t, s, byBatch("d1", ""))
	if diff := cmp.Diff([]domain.OrderLine{{OrderID: "o2", SKU: "DESK", Qty: 2}}, p.Batch("d1").Lines); diff != "" {
		t.Errorf("d1's lines (-want +got):\n%s", diff)
	}
}

// testDispatchMovedLine: the goods of a line that moved to another batch
// leave the batch the warehouse named; the store saves the line's leaving
// the batch it moved to, and the batch named shrinking.
func testDispatchMovedLine(t *testing.T, s service.Store) {
	addBatches(t, s, "LAMP", domain.Batch{Ref: "m1", Purchased: 5}, domain.Batch{Ref: "m2", Purchased: 10, ETA: eta("2030-01-01")})
	allocate(t, s, domain.OrderLine{OrderID: "o0", SKU: "LAMP", Qty: 1}) // m1
	allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "LAMP", Qty: 2}) // m1
	// m1 shrinks: o1, the latest, moves to m2, in the change.
	change(t, s, "m1", "", func(p *domain.Product) error { return p.ChangeBatchQuantity("m1", 2) })
	if ref := allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "LAMP", Qty: 2}); ref != "m2" {
		t.Fatalf("o1 reallocated to %s, want m2", ref)
	}

	// The warehouse ships o1's 2 units from m1.
	raised := change(t, s, "m1", "o1", func(p *domain.Product) error { return p.Dispatch("o1", "m1", 2) })
	var got []any
	for _, r := range raised {
		got = append(got, r.Event)
	}
	wantEvents := []any{
		domain.BatchQuantityChanged{Ref: "m1", SKU: "LAMP", Qty: 0, Dispatched: 2, Version: 5},
		domain.Deallocated{OrderID: "o1", SKU: "LAMP", Qty: 2, BatchRef: "m2", Reason: domain.ReasonDispatched, Version: 5},
		domain.Deallocated{OrderID: "o0", SKU: "LAMP", Qty: 1, BatchRef: "m1", Reason: domain.ReasonBatchShrank, Version: 5},
		domain.Allocated{OrderID: "o0", SKU: "LAMP", Qty: 1, BatchRef: "m2", Version: 5},
	}
	if diff := cmp.Diff(wantEvents, got); diff != "" {
		t.Errorf("raised (-want +got):\n%s", diff)
	}
	want := []batchState{
		{Ref: "m1", Purchased: 0, Dispatched: 2},
		{Ref: "m2", Purchased: 10, Allocated: 1, ETA: "2030-01-01"},
	}
	if diff := cmp.Diff(want, state(load(t, s, byBatch("m1", "")))); diff != "" {
		t.Errorf("after the dispatch (-want +got):\n%s", diff)
	}
	want[1].Lines = []domain.OrderLine{{OrderID: "o0", SKU: "LAMP", Qty: 1}}
	if diff := cmp.Diff(want, state(load(t, s, byBatch("m2", "o1")))); diff != "" {
		t.Errorf("after the dispatch, loaded for o1 (-want +got):\n%s", diff)
	}
	if v := load(t, s, get("LAMP")).Version; v != 5 {
		t.Errorf("version %d, want 5", v)
	}
	// o0 is in m2; o1's line is gone, so it can be allocated anew.
	if ref := allocate(t, s, domain.OrderLine{OrderID: "o0", SKU: "LAMP", Qty: 1}); ref != "m2" {
		t.Errorf("o0 reallocated to %s, want m2", ref)
	}
	if ref := allocate(t, s, domain.OrderLine{OrderID: "o1", SKU: "LAMP", Qty: 2}); ref != "m2" {
		t.Errorf("o1 allocated again to %s, want m2", ref)
	}
}

// RunHooks checks what every store calls back: committed after a commit
// that stored messages in the outbox (to wake the relay), and only then.
// newStore returns a store that calls committed.
func RunHooks(t *testing.T, newStore func(t *testing.T, committed func()) service.Store) {
	var calls atomic.Int64
	s := newStore(t, func() { calls.Add(1) })
	ctx := context.Background()
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("LAMP", 0)
		uow.Products().Add(p)
		return p.AddBatch("b1", 10, time.Time{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("committed called %d times after a commit that raised an event, want 1", got)
	}
	_, err = s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		_, err := uow.Products().Get(ctx, "LAMP")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("committed called %d times in all after a commit that raised nothing, want 1", got)
	}
}
