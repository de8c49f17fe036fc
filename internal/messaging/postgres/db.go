// Package postgres is the PostgreSQL side of the shared plumbing
// (jackc/pgx/v5): connecting a pool to a service's own schema, applying
// embedded migrations safely when several instances start at once, a
// Transact helper, and the outbox, inbox and dead-letter tables every
// context's store keeps beside its own.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool on url whose connections work in schema, creating
// the schema if need be. Each service keeps its tables in a schema of its
// own ("allocation").
func Connect(ctx context.Context, url, schema string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.MaxConns < 20 {
		cfg.MaxConns = 20
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
		if !IsUniqueViolation(err) { // two instances creating it at once
			pool.Close()
			return nil, fmt.Errorf("postgres: creating schema %s: %w", schema, err)
		}
	}
	return pool, nil
}

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the messaging tables' migrations, to apply with Migrate
// under the name "messaging".
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Migrate applies the *.sql files of fsys not yet applied under name, in
// the order of their names, each in its own transaction. An advisory lock
// makes instances starting at once take turns.
func Migrate(ctx context.Context, pool *pgxpool.Pool, name string, fsys fs.FS) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	defer conn.Release()
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	lock := lockKey("migrate:" + schema)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lock); err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name text NOT NULL, file text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (name, file))`); err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		body, err := fs.ReadFile(fsys, f)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE name = $1 AND file = $2`, name, path.Base(f)).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, file) VALUES ($1, $2)`, name, path.Base(f))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrating %s, %s: %w", name, f, err)
		}
	}
	return nil
}

// lockKey turns a name into an advisory lock key.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// IsUniqueViolation reports whether err is a unique constraint failure.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// IsConflict reports whether err is PostgreSQL giving up a transaction
// that lost a race: a serialization failure or a deadlock.
func IsConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
