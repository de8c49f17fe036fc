package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/docstore/docstoretest"
	"github.com/stockflow/stockflow/internal/docstore/sqlite"
)

func TestContract(t *testing.T) {
	docstoretest.Run(t, func(t *testing.T) docstore.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	})
}
