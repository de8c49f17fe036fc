package pggroup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/adapters/pggroup"
	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
)

// The product cache (cache.go) answers the hot path from memory and
// verifies what it trusted when it writes. Two stores on one database
// stand for two instances of the service: each must see what the other
// committed, whatever its cache remembers.
func TestCache(t *testing.T) {
	type instances struct {
		a, b   *service.Handlers
		storeA *pggroup.Store
	}
	allocate := func(t *testing.T, h *service.Handlers, order string, qty int) (string, error) {
		t.Helper()
		ref, _, err := h.Allocate(context.Background(), domain.Allocate{OrderID: order, SKU: "LAMP", Qty: qty})
		if err != nil {
			return "", err
		}
		return ref.(string), nil
	}
	mustAllocate := func(t *testing.T, h *service.Handlers, order string, qty int, want string) {
		t.Helper()
		ref, err := allocate(t, h, order, qty)
		if err != nil || ref != want {
			t.Fatalf("allocating %s: %q, %v; want %q", order, ref, err, want)
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, in instances)
	}{
		{"the same line twice keeps its batch", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o1", 2, "warehouse")
			mustAllocate(t, in.a, "o1", 2, "warehouse")
			if got := allocated(t, in.storeA, "warehouse"); got != 2 {
				t.Errorf("warehouse allocated %d, want 2", got)
			}
		}},
		{"the same order with another quantity conflicts", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o1", 2, "warehouse")
			if _, err := allocate(t, in.a, "o1", 3); !errors.Is(err, domain.ErrLineConflict) {
				t.Errorf("allocating o1 again with another quantity: %v, want ErrLineConflict", err)
			}
		}},
		{"another instance's allocations count", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o1", 5, "warehouse") // a remembers 5 of 10 allocated
			mustAllocate(t, in.b, "o2", 5, "warehouse") // the warehouse is full
			mustAllocate(t, in.a, "o3", 1, "ship")      // not an 11th unit from the warehouse
			if got := allocated(t, in.storeA, "warehouse"); got != 10 {
				t.Errorf("warehouse allocated %d, want 10", got)
			}
		}},
		{"another instance's new stock counts", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o1", 10, "warehouse")
			mustAllocate(t, in.a, "o2", 10, "ship") // a remembers both batches full
			if _, _, err := in.b.ChangeBatchQuantity(context.Background(), domain.ChangeBatchQuantity{Ref: "ship", Qty: 20}); err != nil {
				t.Fatal(err)
			}
			mustAllocate(t, in.a, "o3", 5, "ship") // not out of stock
		}},
		{"a line allocated by another instance is found", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o0", 1, "warehouse")
			mustAllocate(t, in.b, "o1", 2, "warehouse")
			mustAllocate(t, in.a, "o1", 2, "warehouse") // the same line, not a second one
			if got := allocated(t, in.storeA, "warehouse"); got != 3 {
				t.Errorf("warehouse allocated %d, want 3", got)
			}
		}},
		{"deallocating reads the order's line", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o1", 2, "warehouse")
			ref, _, err := in.a.Deallocate(context.Background(), domain.Deallocate{OrderID: "o1", SKU: "LAMP", Qty: 2})
			if err != nil || ref != "warehouse" {
				t.Fatalf("deallocating: %v, %v", ref, err)
			}
			if got := allocated(t, in.storeA, "warehouse"); got != 0 {
				t.Errorf("warehouse allocated %d after deallocating, want 0", got)
			}
		}},
		{"out of stock is checked against the database", func(t *testing.T, in instances) {
			mustAllocate(t, in.a, "o1", 10, "warehouse")
			mustAllocate(t, in.a, "o2", 10, "ship")
			if _, err := allocate(t, in.a, "o3", 1); !errors.Is(err, domain.ErrOutOfStock) {
				t.Fatalf("allocating past the stock: %v, want ErrOutOfStock", err)
			}
			if _, _, err := in.b.Deallocate(context.Background(), domain.Deallocate{OrderID: "o1", SKU: "LAMP", Qty: 10}); err != nil {
				t.Fatal(err)
			}
			mustAllocate(t, in.a, "o3", 1, "warehouse")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newPool(t)
			var stores [2]*pggroup.Store
			for i := range stores {
				plain, err := allocpg.Open(context.Background(), pool, service.Messages(), nil)
				if err != nil {
					t.Fatal(err)
				}
				s := pggroup.New(plain, pggroup.Config{})
				t.Cleanup(s.Close)
				stores[i] = s
			}
			a, b := service.NewHandlers(stores[0]), service.NewHandlers(stores[1])
			ctx := context.Background()
			for _, c := range []domain.CreateBatch{
				{Ref: "warehouse", SKU: "LAMP", Qty: 10},
				{Ref: "ship", SKU: "LAMP", Qty: 10, ETA: mustDate(t, "2030-01-01")},
			} {
				if _, _, err := a.CreateBatch(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := pggroup.CachedVersion(stores[0], "LAMP"); !ok {
				t.Fatal("the first instance does not remember LAMP: its cache would not be used")
			}
			tt.run(t, instances{a: a, b: b, storeA: stores[0]})
		})
	}
}

// allocated reads a batch's allocated quantity from the database.
func allocated(t *testing.T, s *pggroup.Store, ref string) int {
	t.Helper()
	var n int
	_, err := s.Transact(context.Background(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, ref, "")
		if err != nil {
			return err
		}
		n = p.Batch(ref).Allocated
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustDate(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := domain.ParseDate(s)
	if err != nil {
		t.Fatal(err)
	}
	return v.Time
}
