package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/testenv"
)

// A pool over SSL, sslmode=verify-full with sslrootcert in the URL (pgx
// reads them as libpq does), migrates and works; every connection of it
// is encrypted.
func TestConnectVerifyFull(t *testing.T) {
	ca := testenv.NewCA(t, "pg-ca")
	pg := testenv.StartPostgresTLS(t, ca)
	u, _ := url.Parse(pg.URL)
	u.User = url.UserPassword("postgres", pg.Password)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool, err := mpostgres.Connect(ctx, u.String(), "tls_test")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := mpostgres.Migrate(ctx, pool, "messaging", mpostgres.Migrations()); err != nil {
		t.Fatal(err)
	}
	// A server certificate of another CA is refused, and the error says so.
	other := testenv.NewCA(t, "another-ca")
	q := u.Query()
	q.Set("sslrootcert", other.File)
	wrong := *u
	wrong.RawQuery = q.Encode()
	if _, err := mpostgres.Connect(ctx, wrong.String(), "tls_test"); !errors.Is(secure.Explain(err), secure.ErrCertificate) {
		t.Errorf("a server certificate of another CA: %v", err)
	}
	var plain int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE client_port IS NOT NULL AND NOT ssl`).Scan(&plain); err != nil || plain != 0 {
		t.Errorf("connections without SSL: %d (%v)", plain, err)
	}
}
