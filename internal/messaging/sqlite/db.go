// Package sqlite is the SQLite side of the shared plumbing (modernc.org/sqlite,
// pure Go): opening a database, applying embedded migrations, and the
// outbox, inbox and dead-letter tables every context's store keeps beside
// its own.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strings"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is a SQLite database with one writing connection, so that writers in
// the process queue instead of failing with SQLITE_BUSY, and a pool of
// readers (WAL mode lets them read while the writer writes).
type DB struct {
	W *sql.DB // the one writer; transactions take the write lock at BEGIN
	R *sql.DB // readers
}

// Open opens (creating it if need be) the database file at file.
func Open(file string) (*DB, error) {
	dsn := func(txlock string, readOnly bool) string {
		q := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)", "foreign_keys(1)", "cache_size(-65536)"} {
			q.Add("_pragma", p)
		}
		if readOnly {
			q.Add("_pragma", "query_only(1)")
		}
		q.Set("_txlock", txlock)
		return "file:" + pathEscaper.Replace(file) + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn("immediate", false))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", file, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", file, err)
	}
	r, err := sql.Open("sqlite", dsn("deferred", true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", file, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	return &DB{W: w, R: r}, nil
}

// pathEscaper escapes what a SQLite URI filename would read otherwise.
var pathEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// Close closes the database.
func (db *DB) Close() error { return errors.Join(db.R.Close(), db.W.Close()) }

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the messaging tables' migrations, to apply with Migrate
// under the name "messaging".
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Migrate applies the *.sql files of fsys not yet applied under name, in
// the order of their names, each in its own transaction.
func (db *DB) Migrate(ctx context.Context, name string, fsys fs.FS) error {
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT NOT NULL, file TEXT NOT NULL, PRIMARY KEY (name, file))`); err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		if err := db.migrate(ctx, name, fsys, f); err != nil {
			return fmt.Errorf("migrating %s, %s: %w", name, f, err)
		}
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, name string, fsys fs.FS, file string) error {
	body, err := fs.ReadFile(fsys, file)
	if err != nil {
		return err
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ? AND file = ?`, name, path.Base(file)).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, file) VALUES (?, ?)`, name, path.Base(file)); err != nil {
		return err
	}
	return tx.Commit()
}

// IsUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure.
func IsUniqueViolation(err error) bool {
	var e *msqlite.Error
	if errors.As(err, &e) {
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsBusy reports whether err is SQLite saying another connection holds the
// lock (another process on the same file).
func IsBusy(err error) bool {
	var e *msqlite.Error
	if errors.As(err, &e) {
		return e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED
	}
	return false
}

// Placeholders returns "?, ?, ?" for n values.
func Placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
