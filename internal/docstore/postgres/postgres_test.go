package postgres_test

import (
	"context"
	"testing"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/docstore/docstoretest"
	"github.com/stockflow/stockflow/internal/docstore/postgres"
	"github.com/stockflow/stockflow/internal/testenv"
)

func TestContract(t *testing.T) {
	url := testenv.Postgres(t)
	docstoretest.Run(t, func(t *testing.T) docstore.Store {
		name := testenv.Name("docstore")
		s, err := postgres.Open(context.Background(), url, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Close()
			testenv.DropSchema(t, url, name)
		})
		return s
	})
}
