package testenv_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockflow/stockflow/internal/testenv"
)

// The private PostgreSQL takes SSL with its password, verify-full
// against the test's CA, and refuses TCP without SSL and a CA of another.
func TestStartPostgresTLS(t *testing.T) {
	ca := testenv.NewCA(t, "pg-ca")
	pg := testenv.StartPostgresTLS(t, ca)
	connect := func(mutate func(u *url.URL, q url.Values)) error {
		u, _ := url.Parse(pg.URL)
		u.User = url.UserPassword("postgres", pg.Password)
		q := u.Query()
		mutate(u, q)
		u.RawQuery = q.Encode()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var ssl bool
		if err := conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
			t.Errorf("connected without SSL (ssl %v, %v)", ssl, err)
		}
		return nil
	}
	if err := connect(func(*url.URL, url.Values) {}); err != nil {
		t.Fatalf("verify-full with the CA: %v", err)
	}
	if err := connect(func(_ *url.URL, q url.Values) { q.Set("sslmode", "disable") }); err == nil || !strings.Contains(err.Error(), "no encryption") {
		t.Errorf("without SSL: %v", err)
	}
	other := testenv.NewCA(t, "another-ca")
	if err := connect(func(_ *url.URL, q url.Values) { q.Set("sslrootcert", other.File) }); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a CA of another: %v", err)
	}
	if err := connect(func(u *url.URL, _ url.Values) { u.User = url.UserPassword("postgres", "wrong") }); err == nil {
		t.Error("a wrong password was taken")
	}
}
