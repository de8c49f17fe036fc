// Package testenv finds the servers tests talk to: PostgreSQL, Redis and
// NATS on this machine (or where STOCKFLOW_TEST_POSTGRES, _REDIS and _NATS
// point). A test whose server is unreachable is skipped with the reason,
// unless STOCKFLOW_REQUIRE_SERVICES=1 (as in CI), where it fails.
//
// It also starts private servers, for tests that kill or restart them:
// StartRedis and StartNATS run a redis-server or a nats-server of the
// test's own on a free port (FreePort), skipped by the same rule when the
// binary is not installed. StartSMTP runs a small SMTP server in the test
// process, for the notifications' e-mail.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Default addresses of the servers.
const (
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultRedis    = "redis://127.0.0.1:6379"
	DefaultNATS     = "nats://127.0.0.1:4222"
)

// Postgres returns the URL of the test database.
func Postgres(t testing.TB) string { return need(t, "STOCKFLOW_TEST_POSTGRES", DefaultPostgres) }

// Redis returns the URL of the test Redis.
func Redis(t testing.TB) string { return need(t, "STOCKFLOW_TEST_REDIS", DefaultRedis) }

// NATS returns the URL of the test NATS server.
func NATS(t testing.TB) string { return need(t, "STOCKFLOW_TEST_NATS", DefaultNATS) }

// Required reports whether tests must fail rather than skip when a server
// is missing.
func Required() bool { return os.Getenv("STOCKFLOW_REQUIRE_SERVICES") == "1" }

func need(t testing.TB, env, def string) string {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		if Required() {
			t.Fatalf("%s is unreachable (%v) and STOCKFLOW_REQUIRE_SERVICES=1", u.Host, err)
		}
		t.Skipf("skipping: %s is unreachable (%v); set %s to point elsewhere", u.Host, err, env)
	}
	conn.Close()
	return raw
}

// Name returns a name unique to this run, for a schema, a stream or a
// topic: prefix_<random>.
func Name(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// DropSchema drops a test's PostgreSQL schema and what it holds.
func DropSchema(t testing.TB, url, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("dropping schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		t.Logf("dropping schema %s: %v", schema, err)
	}
}
