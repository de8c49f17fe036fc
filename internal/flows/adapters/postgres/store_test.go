package postgres_test

import (
	"context"
	"testing"

	"github.com/stockflow/stockflow/internal/flows/adapters/postgres"
	"github.com/stockflow/stockflow/internal/flows/adapters/storetest"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	"github.com/stockflow/stockflow/internal/testenv"
)

func TestStore(t *testing.T) {
	url := testenv.Postgres(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		name := testenv.Name("flows")
		pool, err := mpostgres.Connect(context.Background(), url, name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := postgres.Open(context.Background(), pool, name)
		if err != nil {
			pool.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Close()
			testenv.DropSchema(t, url, name)
		})
		return s
	})
}
