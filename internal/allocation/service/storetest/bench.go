package storetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
)

// BenchmarkFillWaitingList measures stock arriving for a sku with waiting
// lines waiting for it, as the service handles it: a new batch, through
// the message bus, fills them in order in the change that adds it. Each
// iteration makes a fresh sku with waiting lines waiting (not timed), then
// adds a batch that takes all of them (timed). newStore returns the store
// to run on; it is opened once.
//
// The waiting lines join as the service has them join (cart items no batch
// can take), a tenth of them VIPs'.
func BenchmarkFillWaitingList(b *testing.B, s service.Store, waiting int) {
	ctx := context.Background()
	bus := service.NewBus(service.NewHandlers(s), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	for i := range b.N {
		b.StopTimer()
		sku := fmt.Sprintf("WAIT-%d-%d", waiting, i)
		const perTx = 1000
		for from := 0; from < waiting; from += perTx {
			_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
				p, err := uow.Products().Get(ctx, sku)
				if err != nil {
					p = domain.NewProduct(sku, 0)
					uow.Products().Add(p)
				}
				for n := from; n < min(from+perTx, waiting); n++ {
					line := domain.OrderLine{OrderID: fmt.Sprint("o", n), SKU: sku, Qty: 1 + n%3, Customer: fmt.Sprint("c", n), VIP: n%10 == 0}
					p.Allocate(line) // waits: no batch
				}
				return nil
			})
			if err != nil {
				b.Fatalf("making %d waiting lines: %v", waiting, err)
			}
		}
		b.StartTimer()
		start := time.Now()
		if _, err := bus.Handle(ctx, domain.CreateBatch{Ref: sku + "-b", SKU: sku, Qty: 2 * waiting}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/fill")
	}
	b.ReportMetric(float64(waiting), "lines")
}
