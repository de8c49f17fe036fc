package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	allocsqlite "github.com/stockflow/stockflow/internal/allocation/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/allocation/service/storetest"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

func newStore(t testing.TB) *allocsqlite.Store {
	db, err := msqlite.Open(filepath.Join(t.TempDir(), "allocation.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := allocsqlite.Open(context.Background(), db, service.Messages())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) service.Store { return newStore(t) })
}
