package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/allocation/service/storetest"
	"github.com/stockflow/stockflow/internal/messaging/postgres/pgtest"
)

// newPool connects to a schema of its own, dropped after the test.
func newPool(t testing.TB) *pgxpool.Pool { return pgtest.Pool(t, "test_allocation") }

func newStore(t testing.TB, committed func()) *allocpg.Store {
	s, err := allocpg.Open(context.Background(), newPool(t), service.Messages(), committed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) service.Store { return newStore(t, nil) })
}

func TestHooks(t *testing.T) {
	storetest.RunHooks(t, func(t *testing.T, committed func()) service.Store { return newStore(t, committed) })
}

// Instances starting at once migrate once.
func TestConcurrentMigrations(t *testing.T) {
	pool := newPool(t)
	errc := make(chan error, 4)
	for range 4 {
		go func() { errc <- allocpg.Migrate(context.Background(), pool) }()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
