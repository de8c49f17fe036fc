package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	flowspg "github.com/stockflow/stockflow/internal/flows/adapters/postgres"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/flows/service/storetest"
	"github.com/stockflow/stockflow/internal/messaging/postgres/pgtest"
)

// newPool connects to a schema of its own, dropped after the test; the
// test is skipped when PostgreSQL is unreachable, unless
// STOCKFLOW_REQUIRE_SERVICES=1.
func newPool(t testing.TB) *pgxpool.Pool { return pgtest.Pool(t, "test_flows") }

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) service.Store {
		s, err := flowspg.Open(context.Background(), newPool(t), "flows")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestPing(t *testing.T) {
	s, err := flowspg.Open(context.Background(), newPool(t), "flows")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Messaging() == nil {
		t.Error("Messaging() = nil")
	}
}

// Instances starting at once migrate once.
func TestConcurrentMigrations(t *testing.T) {
	pool := newPool(t)
	errc := make(chan error, 4)
	for range 4 {
		go func() { errc <- flowspg.Migrate(context.Background(), pool) }()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
