package service_test

// Handlers racing one another on one sku, and the read model when the
// events of two flows interleave.

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
)

func TestConcurrentCommandsKeepTheProductConsistent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 60, noETA)
	f.createBatch(t, "b2", "S", 60, tomorrow)

	const orders = 30 // 30 × 5 = 150 > 120: some run out of stock
	var wg sync.WaitGroup
	errs := make([]error, orders)
	for i := range orders {
		wg.Go(func() {
			_, errs[i] = f.bus.Handle(t.Context(), domain.Allocate{OrderID: fmt.Sprintf("o%02d", i), SKU: "S", Qty: 5})
		})
	}
	// ChangeBatchQuantity takes no lock of the sku: it races the
	// allocations, and the version check sorts them out.
	for _, qty := range []int{40, 55, 30} {
		wg.Go(func() {
			if _, err := f.bus.Handle(t.Context(), domain.ChangeBatchQuantity{Ref: "b1", Qty: qty}); err != nil {
				t.Errorf("ChangeBatchQuantity %d: %v", qty, err)
			}
		})
	}
	wg.Wait()

	for i, err := range errs {
		if err != nil && !errors.Is(err, domain.ErrOutOfStock) {
			t.Errorf("Allocate o%02d: %v", i, err)
		}
	}
	seen := map[string]string{}
	for _, ref := range []string{"b1", "b2"} {
		b := f.store.batch(ref)
		if b.Allocated > b.Purchased {
			t.Errorf("batch %s: allocated %d of %d", ref, b.Allocated, b.Purchased)
		}
		for _, l := range b.Lines {
			if other, dup := seen[l.OrderID]; dup {
				t.Errorf("order %s allocated in %s and %s", l.OrderID, other, ref)
			}
			seen[l.OrderID] = ref
		}
	}
	if len(seen) == 0 {
		t.Error("nothing was allocated")
	}
}

// A command's events are dispatched after it released the sku's lock, so
// another flow can move the line first; the late Allocated must not put
// back a row for a batch the line left.
//
// Deterministic replay of: Allocate o1 commits (b1); before its Allocated is
// dispatched, ChangeBatchQuantity shrinks b1, o1 is deallocated and
// reallocated to b2 and the read model says b2; then Allocate's dispatch
// says b1.
func TestReadModelWhenFlowsInterleave(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)

	// Allocate, through the handler, its events not yet dispatched.
	ctx := messaging.StartFlow(t.Context(), "")
	_, late, err := f.handlers.Allocate(ctx, domain.Allocate{OrderID: "o1", SKU: "S", Qty: 5})
	if err != nil {
		t.Fatal(err)
	}
	f.handle(t, domain.ChangeBatchQuantity{Ref: "b1", Qty: 1})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b2"}})

	f.bus.Dispatch(ctx, late)
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 5,
		Lines: []domain.OrderLine{line("o1", "S", 5)}})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b2"}})
}
