package pggroup_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stockflow/stockflow/internal/allocation/adapters/pggroup"
	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/allocation/service/storetest"
)

// BenchmarkAllocate allocates through the message bus (the command, then
// its event's handler: the read model), from 16 callers at once over 100
// skus, as scripts/bench-postgres.sh drives the server, on the plain
// store and on the grouped one.
//
//	go test -run '^$' -bench Allocate -benchtime 20000x ./internal/allocation/adapters/pggroup/
func BenchmarkAllocate(b *testing.B) {
	const callers, skus = 16, 100
	for _, grouped := range []bool{false, true} {
		b.Run(fmt.Sprintf("grouped=%v", grouped), func(b *testing.B) {
			ctx := context.Background()
			plain, err := allocpg.Open(ctx, newPool(b), service.Messages(), nil)
			if err != nil {
				b.Fatal(err)
			}
			var store service.Store = plain
			if grouped {
				s := pggroup.New(plain, pggroup.Config{})
				defer s.Close()
				store = s
			}
			h := service.NewHandlers(store)
			for i := range skus {
				if _, _, err := h.CreateBatch(ctx, domain.CreateBatch{Ref: fmt.Sprint("b-", i), SKU: fmt.Sprint("SKU-", i), Qty: 1 << 40}); err != nil {
					b.Fatal(err)
				}
			}
			bus := service.NewBus(h, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
						cmd := domain.Allocate{OrderID: fmt.Sprint("o-", i), SKU: fmt.Sprint("SKU-", i%skus), Qty: 1}
						if _, err := bus.Handle(ctx, cmd); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocations/s")
		})
	}
}

// BenchmarkFillWaitingList: a batch arriving for a sku with 10,000 lines
// waiting fills them all in order, in one change, on the store serve runs.
//
//	go test -run '^$' -bench FillWaitingList -benchtime 5x ./internal/allocation/adapters/pggroup/
func BenchmarkFillWaitingList(b *testing.B) {
	storetest.BenchmarkFillWaitingList(b, newStore(b, pggroup.Config{}), 10_000)
}
