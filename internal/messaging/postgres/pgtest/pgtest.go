// Package pgtest gives a test a PostgreSQL schema of its own, on the
// server testenv.Postgres names (skipping the test when it is away, unless
// STOCKFLOW_REQUIRE_SERVICES=1).
package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	"github.com/stockflow/stockflow/internal/testenv"
)

// Pool connects to a new schema named after prefix, dropped when the test
// ends.
func Pool(t testing.TB, prefix string) *pgxpool.Pool {
	t.Helper()
	schema := testenv.Name(prefix)
	pool, err := mpostgres.Connect(context.Background(), testenv.Postgres(t), schema)
	if err != nil {
		t.Fatal(err)
	}
	DropAfter(t, pool, schema)
	return pool
}

// DropAfter drops schema when the test ends, then closes pool.
func DropAfter(t testing.TB, pool *pgxpool.Pool, schema string) {
	t.Cleanup(func() {
		pool.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		pool.Close()
	})
}
