package service_test

// The handlers through the bus, on the fake store: the book's
// tests/unit/test_handlers.py.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

func assertEvents(t *testing.T, got, want []domain.Event) {
	t.Helper()
	if diff := cmp.Diff(want, got, ignoreVersions); diff != "" {
		t.Errorf("events in the outbox (-want +got):\n%s", diff)
	}
}

func assertView(t *testing.T, s *fakeStore, orderID string, want []service.AllocationView) {
	t.Helper()
	got, err := s.Allocations(t.Context(), orderID)
	if err != nil {
		t.Fatalf("Allocations(%s): %v", orderID, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allocations of %s (-want +got):\n%s", orderID, diff)
	}
}

func assertBatch(t *testing.T, s *fakeStore, want domain.Batch) {
	t.Helper()
	if diff := cmp.Diff(&want, s.batch(want.Ref)); diff != "" {
		t.Errorf("stored batch %s (-want +got):\n%s", want.Ref, diff)
	}
}

// CreateBatch

func TestCreateBatchForNewProduct(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "CRUNCHY-ARMCHAIR", 100, noETA)

	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "CRUNCHY-ARMCHAIR", Purchased: 100})
	if got := f.store.version("CRUNCHY-ARMCHAIR"); got != 1 {
		t.Errorf("version = %d, want 1", got)
	}
	if got := f.store.committedCount(); got != 1 {
		t.Errorf("committed = %d, want 1", got)
	}
	assertEvents(t, f.store.events(), []domain.Event{
		domain.BatchCreated{Ref: "b1", SKU: "CRUNCHY-ARMCHAIR", Qty: 100},
	})
}

func TestCreateBatchForExistingProduct(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "GARISH-RUG", 100, noETA)
	f.createBatch(t, "b2", "GARISH-RUG", 99, tomorrow)

	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "GARISH-RUG", Purchased: 100})
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "GARISH-RUG", Purchased: 99, ETA: tomorrow})
	if got := f.store.version("GARISH-RUG"); got != 2 {
		t.Errorf("version = %d, want 2", got)
	}
	assertEvents(t, f.store.events(), []domain.Event{
		domain.BatchCreated{Ref: "b1", SKU: "GARISH-RUG", Qty: 100},
		domain.BatchCreated{Ref: "b2", SKU: "GARISH-RUG", Qty: 99, ETA: domain.Date{Time: tomorrow}},
	})
}

func TestCreateBatchDuplicateRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmd  domain.CreateBatch
	}{
		{"same sku", domain.CreateBatch{Ref: "b1", SKU: "LAMP", Qty: 5}},
		{"another sku", domain.CreateBatch{Ref: "b1", SKU: "TABLE", Qty: 5}},
		{"another sku that exists", domain.CreateBatch{Ref: "b1", SKU: "CHAIR", Qty: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.createBatch(t, "b1", "LAMP", 10, noETA)
			f.createBatch(t, "c1", "CHAIR", 10, noETA)
			committed, outbox := f.store.committedCount(), f.store.outboxLen()

			_, err := f.bus.Handle(t.Context(), tt.cmd)
			if !errors.Is(err, domain.ErrDuplicateBatch) {
				t.Fatalf("Handle: err = %v, want ErrDuplicateBatch", err)
			}
			if got := f.store.committedCount(); got != committed {
				t.Errorf("committed = %d, want %d", got, committed)
			}
			if got := f.store.outboxLen(); got != outbox {
				t.Errorf("outbox has %d messages, want %d", got, outbox)
			}
			assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "LAMP", Purchased: 10})
			if got := f.store.version(tt.cmd.SKU); tt.cmd.SKU == "TABLE" && got != 0 {
				t.Errorf("product TABLE was stored at version %d", got)
			}
		})
	}
}

// invalidCommands are commands that fail validation, by kind.
var invalidCommands = []struct {
	name string
	cmd  any
}{
	{"CreateBatch empty ref", domain.CreateBatch{SKU: "S", Qty: 1}},
	{"CreateBatch blank sku", domain.CreateBatch{Ref: "b", SKU: "  ", Qty: 1}},
	{"CreateBatch zero qty", domain.CreateBatch{Ref: "b", SKU: "S"}},
	{"CreateBatch negative qty", domain.CreateBatch{Ref: "b", SKU: "S", Qty: -1}},
	{"CreateBatch ref too long", domain.CreateBatch{Ref: strings.Repeat("r", domain.MaxRefLen+1), SKU: "S", Qty: 1}},
	{"Allocate empty order", domain.Allocate{SKU: "S", Qty: 1}},
	{"Allocate empty sku", domain.Allocate{OrderID: "o", Qty: 1}},
	{"Allocate zero qty", domain.Allocate{OrderID: "o", SKU: "S"}},
	{"ChangeBatchQuantity empty ref", domain.ChangeBatchQuantity{Qty: 1}},
	{"ChangeBatchQuantity negative qty", domain.ChangeBatchQuantity{Ref: "b1", Qty: -1}},
	{"Deallocate empty order", domain.Deallocate{SKU: "S", Qty: 1}},
	{"Deallocate negative qty", domain.Deallocate{OrderID: "o1", SKU: "S", Qty: -2}},
}

func TestInvalidCommandsCommitNothing(t *testing.T) {
	t.Parallel()
	for _, tt := range invalidCommands {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.createBatch(t, "b1", "S", 10, noETA)
			f.allocate(t, "o1", "S", 2)
			committed, attempts, outbox := f.store.committedCount(), f.store.attemptsCount(), f.store.outboxLen()

			_, err := f.bus.Handle(t.Context(), tt.cmd)
			if !errors.Is(err, fail.Invalid) {
				t.Fatalf("Handle: err = %v, want ErrInvalid", err)
			}
			if !messaging.IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = false", err)
			}
			if got := f.store.committedCount(); got != committed {
				t.Errorf("committed = %d, want %d", got, committed)
			}
			if got := f.store.attemptsCount(); got != attempts {
				t.Errorf("a transaction was begun for an invalid command")
			}
			if got := f.store.outboxLen(); got != outbox {
				t.Errorf("outbox has %d messages, want %d", got, outbox)
			}
		})
	}
}

// Allocate

func TestAllocateReturnsBatchRef(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "shipment", "POPULAR-CURTAINS", 100, tomorrow)
	f.createBatch(t, "in-stock", "POPULAR-CURTAINS", 100, noETA)
	committed := f.store.committedCount()

	if got := f.allocate(t, "o1", "POPULAR-CURTAINS", 10); got != "in-stock" {
		t.Errorf("Allocate returned %q, want the warehouse batch", got)
	}
	// The command's transaction, and the read model's.
	if got := f.store.committedCount(); got != committed+2 {
		t.Errorf("committed = %d, want %d", got, committed+2)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "in-stock", SKU: "POPULAR-CURTAINS", Purchased: 100, Allocated: 10,
		Lines: []domain.OrderLine{line("o1", "POPULAR-CURTAINS", 10)}})
	assertEvents(t, f.store.eventsSince(2), []domain.Event{
		domain.Allocated{OrderID: "o1", SKU: "POPULAR-CURTAINS", Qty: 10, BatchRef: "in-stock"},
	})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "POPULAR-CURTAINS", BatchRef: "in-stock"}})
}

func TestAllocateUnknownSKU(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "AREALSKU", 100, noETA)
	committed, outbox := f.store.committedCount(), f.store.outboxLen()

	_, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o1", SKU: "NONEXISTENTSKU", Qty: 10})
	if !errors.Is(err, service.ErrInvalidSKU) {
		t.Fatalf("Handle: err = %v, want ErrInvalidSKU", err)
	}
	if !strings.Contains(err.Error(), "NONEXISTENTSKU") {
		t.Errorf("error %q does not name the sku", err)
	}
	if got := f.store.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
	if got := f.store.outboxLen(); got != outbox {
		t.Errorf("outbox has %d messages, want %d", got, outbox)
	}
}

func TestAllocateOutOfStockCommitsTheEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "POPULAR-CURTAINS", 9, noETA)
	committed, version := f.store.committedCount(), f.store.version("POPULAR-CURTAINS")

	res, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o1", SKU: "POPULAR-CURTAINS", Qty: 10})
	if !errors.Is(err, domain.ErrOutOfStock) {
		t.Fatalf("Handle: err = %v, want ErrOutOfStock", err)
	}
	if res != "" {
		t.Errorf("Handle returned %v, want no batch ref", res)
	}
	if got := f.store.committedCount(); got != committed+1 {
		t.Errorf("committed = %d, want %d: the OutOfStock event must be committed", got, committed+1)
	}
	assertEvents(t, f.store.eventsSince(1), []domain.Event{
		domain.OutOfStock{SKU: "POPULAR-CURTAINS", OrderID: "o1", Qty: 10},
	})
	if raised := f.store.raised(); raised[len(raised)-1].Envelope.Channel != service.ChannelOutOfStock {
		t.Errorf("OutOfStock went to channel %q", raised[len(raised)-1].Envelope.Channel)
	}
	// Running out of stock changes no product.
	if got := f.store.version("POPULAR-CURTAINS"); got != version {
		t.Errorf("version = %d, want %d", got, version)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "POPULAR-CURTAINS", Purchased: 9})
	assertView(t, f.store, "o1", nil)
}

func TestAllocateSameLineTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, tomorrow)
	f.createBatch(t, "b2", "S", 10, later)
	first := f.allocate(t, "o1", "S", 4)
	// A better batch arrives: the line keeps its batch all the same.
	f.createBatch(t, "b0", "S", 10, noETA)
	second := f.allocate(t, "o1", "S", 4)

	if first != "b1" || second != first {
		t.Errorf("allocations went to %q then %q, want b1 both times", first, second)
	}
	var allocated int
	for _, ev := range f.store.events() {
		if _, ok := ev.(domain.Allocated); ok {
			allocated++
		}
	}
	if allocated != 1 {
		t.Errorf("%d Allocated events, want 1", allocated)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 4,
		Lines: []domain.OrderLine{line("o1", "S", 4)}})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b1"}})
}

func TestAllocateSameOrderOtherQuantity(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.allocate(t, "o1", "S", 4)
	n := f.store.outboxLen()

	_, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o1", SKU: "S", Qty: 5})
	if !errors.Is(err, domain.ErrLineConflict) {
		t.Fatalf("Handle: err = %v, want ErrLineConflict", err)
	}
	if got := f.store.outboxLen(); got != n {
		t.Errorf("outbox has %d messages, want %d", got, n)
	}
}

func TestAllocatePrefersWarehouseThenEarliest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		batches map[string]time.Time
		want    string
	}{
		{"warehouse over shipment", map[string]time.Time{"ship": tomorrow, "stock": noETA}, "stock"},
		{"earliest shipment", map[string]time.Time{"slow": later, "fast": tomorrow}, "fast"},
		{"ref breaks ties", map[string]time.Time{"b": tomorrow, "a": tomorrow}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			for ref, eta := range tt.batches {
				f.createBatch(t, ref, "S", 10, eta)
			}
			if got := f.allocate(t, "o1", "S", 10); got != tt.want {
				t.Errorf("allocated to %q, want %q", got, tt.want)
			}
		})
	}
}

// ChangeBatchQuantity

func TestChangeBatchQuantityUnknownBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	committed := f.store.committedCount()

	_, err := f.bus.Handle(t.Context(), domain.ChangeBatchQuantity{Ref: "nope", Qty: 5})
	if !errors.Is(err, domain.ErrUnknownBatch) {
		t.Fatalf("Handle: err = %v, want ErrUnknownBatch", err)
	}
	if got := f.store.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
}

func TestChangeBatchQuantityChangesAvailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "ADORABLE-SETTEE", 100, noETA)
	f.handle(t, domain.ChangeBatchQuantity{Ref: "b1", Qty: 50})

	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "ADORABLE-SETTEE", Purchased: 50})
	assertEvents(t, f.store.eventsSince(1), []domain.Event{
		domain.BatchQuantityChanged{Ref: "b1", SKU: "ADORABLE-SETTEE", Qty: 50},
	})

	// The same quantity again changes nothing.
	v := f.store.version("ADORABLE-SETTEE")
	f.handle(t, domain.ChangeBatchQuantity{Ref: "b1", Qty: 50})
	if got := f.store.version("ADORABLE-SETTEE"); got != v {
		t.Errorf("version = %d, want %d", got, v)
	}
	if got := f.store.outboxLen(); got != 2 {
		t.Errorf("outbox has %d messages, want 2", got)
	}
}

func TestChangeBatchQuantityReallocates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "batch1", "INDIFFERENT-TABLE", 50, noETA)
	f.createBatch(t, "batch2", "INDIFFERENT-TABLE", 50, tomorrow)
	f.allocate(t, "order1", "INDIFFERENT-TABLE", 20)
	f.allocate(t, "order2", "INDIFFERENT-TABLE", 20)
	n := f.store.outboxLen()

	res, err := f.bus.Handle(t.Context(), domain.ChangeBatchQuantity{Ref: "batch1", Qty: 25})
	if err != nil || res != nil {
		t.Fatalf("Handle = %v, %v; want nil, nil", res, err)
	}

	assertEvents(t, f.store.eventsSince(n), []domain.Event{
		domain.BatchQuantityChanged{Ref: "batch1", SKU: "INDIFFERENT-TABLE", Qty: 25},
		domain.Deallocated{OrderID: "order2", SKU: "INDIFFERENT-TABLE", Qty: 20, BatchRef: "batch1", Reason: domain.ReasonBatchShrank},
		domain.Allocated{OrderID: "order2", SKU: "INDIFFERENT-TABLE", Qty: 20, BatchRef: "batch2"},
	})
	assertBatch(t, f.store, domain.Batch{Ref: "batch1", SKU: "INDIFFERENT-TABLE", Purchased: 25, Allocated: 20,
		Lines: []domain.OrderLine{line("order1", "INDIFFERENT-TABLE", 20)}})
	assertBatch(t, f.store, domain.Batch{Ref: "batch2", SKU: "INDIFFERENT-TABLE", Purchased: 50, ETA: tomorrow, Allocated: 20,
		Lines: []domain.OrderLine{line("order2", "INDIFFERENT-TABLE", 20)}})
	assertView(t, f.store, "order1", []service.AllocationView{{SKU: "INDIFFERENT-TABLE", BatchRef: "batch1"}})
	assertView(t, f.store, "order2", []service.AllocationView{{SKU: "INDIFFERENT-TABLE", BatchRef: "batch2"}})
	if rows := f.store.viewRows(); len(rows) != 2 {
		t.Errorf("read model rows = %v, want one per order", rows)
	}
}

func TestChangeBatchQuantityReallocatesSeveralLines(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	for _, o := range []string{"o1", "o2", "o3"} {
		f.allocate(t, o, "S", 3)
	}
	f.handle(t, domain.ChangeBatchQuantity{Ref: "b1", Qty: 0})

	for _, o := range []string{"o1", "o2", "o3"} {
		assertView(t, f.store, o, []service.AllocationView{{SKU: "S", BatchRef: "b2"}})
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 0})
	// Lines leave the shrinking batch newest first, and are placed again
	// oldest first.
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 9,
		Lines: []domain.OrderLine{line("o1", "S", 3), line("o2", "S", 3), line("o3", "S", 3)}})
	if rows := f.store.viewRows(); len(rows) != 3 {
		t.Errorf("read model rows = %v, want 3", rows)
	}
}

func TestChangeBatchQuantityWithNowhereToReallocate(t *testing.T) {
	t.Parallel()
	f := newObservedFixture(t)
	f.createBatch(t, "b1", "S", 20, noETA)
	f.allocate(t, "o1", "S", 10)
	f.allocate(t, "o2", "S", 10)
	n := f.store.outboxLen()

	if _, err := f.bus.Handle(t.Context(), domain.ChangeBatchQuantity{Ref: "b1", Qty: 15}); err != nil {
		t.Fatalf("Handle: %v, want nil: running out of stock while reallocating is an outcome", err)
	}
	assertEvents(t, f.store.eventsSince(n), []domain.Event{
		domain.BatchQuantityChanged{Ref: "b1", SKU: "S", Qty: 15},
		domain.Deallocated{OrderID: "o2", SKU: "S", Qty: 10, BatchRef: "b1", Reason: domain.ReasonBatchShrank},
		domain.OutOfStock{SKU: "S", OrderID: "o2", Qty: 10},
	})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b1"}})
	assertView(t, f.store, "o2", nil)
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 15, Allocated: 10,
		Lines: []domain.OrderLine{line("o1", "S", 10)}})
	// Reallocate did not fail: nothing logged as an error, and every event
	// of the flow is marked dispatched.
	if errs := f.logs.errorRecords(); len(errs) != 0 {
		t.Errorf("logged errors: %v", errs)
	}
	marked := f.dispatch.marked()
	for _, r := range f.store.raised()[n:] {
		if !slices.Contains(marked, r.Envelope.ID) {
			t.Errorf("%T not marked dispatched", r.Event)
		}
	}
}

// Deallocate

func TestDeallocateFreesStock(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.allocate(t, "o1", "S", 10)
	if _, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o2", SKU: "S", Qty: 5}); !errors.Is(err, domain.ErrOutOfStock) {
		t.Fatalf("Allocate o2 before: err = %v, want ErrOutOfStock", err)
	}

	if ref := f.handle(t, domain.Deallocate{OrderID: "o1", SKU: "S", Qty: 10}); ref != "b1" {
		t.Errorf("Deallocate returned %v, want b1", ref)
	}
	if got := f.allocate(t, "o2", "S", 5); got != "b1" {
		t.Errorf("Allocate o2 after: %q, want b1", got)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 10, Allocated: 5,
		Lines: []domain.OrderLine{line("o2", "S", 5)}})
}

func TestDeallocateNotAllocated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmd  domain.Deallocate
	}{
		{"unknown sku", domain.Deallocate{OrderID: "o1", SKU: "NOPE", Qty: 3}},
		{"unknown order", domain.Deallocate{OrderID: "o9", SKU: "S", Qty: 3}},
		{"other quantity", domain.Deallocate{OrderID: "o1", SKU: "S", Qty: 4}},
		{"order of another sku", domain.Deallocate{OrderID: "t1", SKU: "S", Qty: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.createBatch(t, "b1", "S", 10, noETA)
			f.createBatch(t, "c1", "T", 10, noETA)
			f.allocate(t, "o1", "S", 3)
			f.allocate(t, "t1", "T", 3)
			committed, n := f.store.committedCount(), f.store.outboxLen()

			_, err := f.bus.Handle(t.Context(), tt.cmd)
			if !errors.Is(err, domain.ErrNotAllocated) {
				t.Fatalf("Handle: err = %v, want ErrNotAllocated", err)
			}
			if got := f.store.committedCount(); got != committed {
				t.Errorf("committed = %d, want %d", got, committed)
			}
			if got := f.store.outboxLen(); got != n {
				t.Errorf("outbox has %d messages, want %d", got, n)
			}
			assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b1"}})
		})
	}
}

func TestDeallocateRemovesReadModelRowAndDoesNotReallocate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	f.createBatch(t, "t1", "T", 10, noETA)
	f.allocate(t, "o1", "S", 3)
	f.allocate(t, "o1", "T", 1)
	n := f.store.outboxLen()

	f.handle(t, domain.Deallocate{OrderID: "o1", SKU: "S", Qty: 3})

	assertEvents(t, f.store.eventsSince(n), []domain.Event{
		domain.Deallocated{OrderID: "o1", SKU: "S", Qty: 3, BatchRef: "b1", Reason: domain.ReasonRequested},
	})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "T", BatchRef: "t1"}})
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 10})
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow})
}

// Version conflicts

func TestRetriesVersionConflicts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		conflicts   int
		wantErr     error
		wantRetries int
	}{
		{conflicts: 1, wantRetries: 1},
		{conflicts: 3, wantRetries: 3},
		{conflicts: 19, wantRetries: 19},
		{conflicts: 20, wantErr: messaging.ErrConcurrentUpdate, wantRetries: 19},
		{conflicts: 50, wantErr: messaging.ErrConcurrentUpdate, wantRetries: 19},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d conflicts", tt.conflicts), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.createBatch(t, "b1", "S", 10, noETA)
			committed, n := f.store.committedCount(), f.store.outboxLen()
			f.store.injectConflicts(tt.conflicts)

			res, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o1", SKU: "S", Qty: 2})
			if got := f.retryCount(); got != tt.wantRetries {
				t.Errorf("OnRetry called %d times, want %d", got, tt.wantRetries)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Handle: err = %v, want %v", err, tt.wantErr)
				}
				if messaging.IsPermanent(err) {
					t.Errorf("IsPermanent(%v) = true; a lost race is worth retrying", err)
				}
				if got := f.store.committedCount(); got != committed {
					t.Errorf("committed = %d, want %d", got, committed)
				}
				if got := f.store.outboxLen(); got != n {
					t.Errorf("outbox has %d messages, want %d", got, n)
				}
				return
			}
			if err != nil || res != "b1" {
				t.Fatalf("Handle = %v, %v; want b1, nil", res, err)
			}
			assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 10, Allocated: 2,
				Lines: []domain.OrderLine{line("o1", "S", 2)}})
			assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b1"}})
		})
	}
}

// A real lost race: while Allocate commits, ChangeBatchQuantity (which does
// not wait for the sku's lock) changes the product. Allocate runs again on
// the new state.
func TestRetryAfterConcurrentChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	f.store.setBeforeCommit(func() {
		if _, _, err := f.handlers.ChangeBatchQuantity(t.Context(), domain.ChangeBatchQuantity{Ref: "b1", Qty: 1}); err != nil {
			t.Errorf("concurrent ChangeBatchQuantity: %v", err)
		}
	})

	if got := f.allocate(t, "o1", "S", 5); got != "b2" {
		t.Errorf("allocated to %q, want b2: b1 shrank meanwhile", got)
	}
	if got := f.retryCount(); got != 1 {
		t.Errorf("OnRetry called %d times, want 1", got)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 1})
}

func TestRetryStopsWhenContextIsDone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.store.onRetry = cancel
	f.store.injectConflicts(5)

	_, err := f.bus.Handle(ctx, domain.Allocate{OrderID: "o1", SKU: "S", Qty: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle: err = %v, want context.Canceled", err)
	}
}

// IsPermanent

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("disk on fire"), false},
		{messaging.ErrConcurrentUpdate, false},
		{fmt.Errorf("%w: product S at version 3", messaging.ErrConcurrentUpdate), false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		// A product that does not exist is refused the same way until
		// something else creates it: no retry mends it (fail.Retryable).
		{fail.NotFound, true},
		{messaging.ErrAlreadyHandled, false},
		{fail.Invalid, true},
		{fail.Errorf(fail.Invalid, "qty must be a positive integer"), true},
		{fmt.Errorf("decoding: %w", fail.Errorf(fail.Invalid, "bad")), true},
		{domain.ErrUnknownBatch, true},
		{fmt.Errorf("%w b1", domain.ErrDuplicateBatch), true},
		{fmt.Errorf("%w: order o1", domain.ErrNotAllocated), true},
		{domain.ErrLineConflict, true},
		{fmt.Errorf("%w for sku S", domain.ErrOutOfStock), false}, // an outcome, see IsOutcome
		{fmt.Errorf("%w S", service.ErrInvalidSKU), true},
		{errors.Join(errors.New("other"), fail.Invalid), true},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.err != nil {
			name = tt.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			if got := messaging.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestIsOutcome(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("%w for sku S", domain.ErrOutOfStock), true},
		{domain.ErrUnknownBatch, false},
		{errors.New("disk on fire"), false},
	} {
		if got := fail.IsSettled(tt.err); got != tt.want {
			t.Errorf("IsOutcome(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// ignoreVersions leaves the events' versions out of a comparison: the
// tests of versions check them (the domain's versions_test.go).
var ignoreVersions = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Version" }, cmp.Ignore())
