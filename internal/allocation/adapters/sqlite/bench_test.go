package sqlite_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	allocsqlite "github.com/stockflow/stockflow/internal/allocation/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/allocation/service/storetest"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

// BenchmarkAllocate allocates through the message bus (command, outbox,
// read model) to a sku with no allocation behind it, and to one with
// 100,000: the cost must not grow with history.
//
//	go test -run '^$' -bench Allocate -benchtime 20000x ./internal/allocation/adapters/sqlite/
func BenchmarkAllocate(b *testing.B) {
	for _, history := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			ctx := context.Background()
			db, err := msqlite.Open(filepath.Join(b.TempDir(), "allocation.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			store, err := allocsqlite.Open(ctx, db, allocsqlite.Config{Registry: service.Messages()})
			if err != nil {
				b.Fatal(err)
			}
			seed(b, store, history)
			if _, err := db.W.Exec(`DELETE FROM outbox`); err != nil {
				b.Fatal(err)
			}
			bus := service.NewBus(service.NewHandlers(store), slog.New(slog.NewTextHandler(io.Discard, nil)), msqlite.NewOutbox(db))
			b.ResetTimer()
			for i := range b.N {
				if _, err := bus.Handle(ctx, domain.Allocate{OrderID: fmt.Sprint("new-", i), SKU: "SKU", Qty: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// seed makes a sku with a batch big enough for anything, and history
// allocations from it, 10,000 a transaction.
func seed(b *testing.B, store *allocsqlite.Store, history int) {
	ctx := context.Background()
	_, err := store.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("SKU", 0)
		uow.Products().Add(p)
		if err := p.AddBatch("warehouse", 1<<40, time.Time{}); err != nil {
			return err
		}
		return p.AddBatch("ship", 1<<40, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	})
	if err != nil {
		b.Fatal(err)
	}
	for done := 0; done < history; {
		_, err := store.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().Get(ctx, "SKU")
			if err != nil {
				return err
			}
			for i := done; i < min(done+10_000, history); i++ {
				if _, err := p.Allocate(domain.OrderLine{OrderID: fmt.Sprint("old-", i), SKU: "SKU", Qty: 1}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done = min(done+10_000, history)
	}
}

// BenchmarkFillWaitingList: a batch arriving for a sku with 10,000 lines
// waiting fills them all in order, in one change.
//
//	go test -run '^$' -bench FillWaitingList -benchtime 5x ./internal/allocation/adapters/sqlite/
func BenchmarkFillWaitingList(b *testing.B) {
	db, err := msqlite.Open(filepath.Join(b.TempDir(), "allocation.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store, err := allocsqlite.Open(context.Background(), db, allocsqlite.Config{Registry: service.Messages()})
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchmarkFillWaitingList(b, store, 10_000)
}
