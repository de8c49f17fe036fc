package pggroup_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/allocation/adapters/pggroup"
	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/allocation/service/storetest"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/messaging/postgres/pgtest"
)

// newPool connects to a schema of its own, dropped after the test.
func newPool(t testing.TB) *pgxpool.Pool { return pgtest.Pool(t, "test_pggroup") }

// newStore returns a grouped store on a schema of its own.
func newStore(t testing.TB, cfg pggroup.Config) *pggroup.Store {
	plain, err := allocpg.Open(context.Background(), newPool(t), service.Messages(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := pggroup.New(plain, cfg)
	t.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) service.Store { return newStore(t, pggroup.Config{}) })
}

func TestHooks(t *testing.T) {
	storetest.RunHooks(t, func(t *testing.T, committed func()) service.Store {
		return newStore(t, pggroup.Config{Committed: committed})
	})
}

// Retried is called each time a caller's work runs again after losing a
// race.
func TestRetried(t *testing.T) {
	var retried atomic.Int64
	s := newStore(t, pggroup.Config{Retried: func() { retried.Add(1) }})
	ctx := context.Background()
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("LAMP", 0)
		uow.Products().Add(p)
		return p.AddBatch("b1", 10, time.Time{})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Read at a version another transaction changed meanwhile, once.
	calls := 0
	_, err = s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		calls++
		p, err := uow.Products().GetByBatchRef(ctx, "b1", "")
		if err != nil {
			return err
		}
		if calls == 1 {
			p.Version--
		}
		return p.ChangeBatchQuantity("b1", 5)
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || retried.Load() != 1 {
		t.Errorf("after one lost race: the work ran %d times and Retried was called %d times, want 2 and 1", calls, retried.Load())
	}
}

// Messages delivered twice at once, often in one group, are each handled
// once: the inbox entry of the second fails, and it is told the message
// was handled.
func TestConcurrentRedeliveries(t *testing.T) {
	const messages, deliveries = 24, 2
	s := newStore(t, pggroup.Config{})
	ctx := context.Background()
	h := service.NewHandlers(s)
	for i := range 4 {
		if _, _, err := h.CreateBatch(ctx, domain.CreateBatch{Ref: fmt.Sprint("b", i), SKU: fmt.Sprint("SKU-", i), Qty: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	var handled, redelivered atomic.Int64
	var wg sync.WaitGroup
	for i := range messages {
		for range deliveries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mctx := messaging.WithMeta(ctx, messaging.Meta{MessageID: fmt.Sprint("m", i), Consumer: "test/consumer"})
				sku := fmt.Sprint("SKU-", i%4)
				_, err := s.Transact(mctx, func(ctx context.Context, uow service.UnitOfWork) error {
					p, err := uow.Products().GetForOrder(ctx, sku, fmt.Sprint("o", i))
					if err != nil {
						return err
					}
					_, err = p.Allocate(domain.OrderLine{OrderID: fmt.Sprint("o", i), SKU: sku, Qty: 1})
					return err
				})
				switch {
				case err == nil:
					handled.Add(1)
				case errors.Is(err, messaging.ErrAlreadyHandled):
					redelivered.Add(1)
				default:
					t.Errorf("message %d: %v", i, err)
				}
			}()
		}
	}
	wg.Wait()
	if handled.Load() != messages || redelivered.Load() != messages*(deliveries-1) {
		t.Errorf("%d handled and %d redelivered, want %d and %d", handled.Load(), redelivered.Load(), messages, messages*(deliveries-1))
	}
	allocated := 0
	for i := range 4 {
		_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().GetByBatchRef(ctx, fmt.Sprint("b", i), "")
			if err == nil {
				allocated += p.Batches[0].Allocated
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if allocated != messages {
		t.Errorf("%d units allocated, want %d", allocated, messages)
	}
}
