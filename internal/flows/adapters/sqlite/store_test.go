package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stockflow/stockflow/internal/flows/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/flows/adapters/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flows.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	})
}
