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

func newStore(t testing.TB) *allocsqlite.Store { return newStoreCalling(t, nil) }

// newStoreCalling returns a store that calls committed after each commit
// that stored messages.
func newStoreCalling(t testing.TB, committed func()) *allocsqlite.Store {
	db, err := msqlite.Open(filepath.Join(t.TempDir(), "allocation.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := allocsqlite.Open(context.Background(), db, allocsqlite.Config{Registry: service.Messages(), Committed: committed})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHooks(t *testing.T) {
	storetest.RunHooks(t, func(t *testing.T, committed func()) service.Store { return newStoreCalling(t, committed) })
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) service.Store { return newStore(t) })
}
