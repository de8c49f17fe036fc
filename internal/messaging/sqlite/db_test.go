package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

// openDB opens a fresh database in a temp dir, closed when the test ends.
func openDB(t *testing.T) *msqlite.DB {
	t.Helper()
	db, err := msqlite.Open(filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// migratedDB opens a fresh database with the messaging tables.
func migratedDB(t *testing.T) *msqlite.DB {
	t.Helper()
	db := openDB(t)
	if err := db.Migrate(context.Background(), "messaging", msqlite.Migrations()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

func tables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func applied(t *testing.T, db *msqlite.DB) []string {
	t.Helper()
	rows, err := db.R.Query(`SELECT name || '/' || file FROM schema_migrations ORDER BY name, file`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestOpenPragmas(t *testing.T) {
	db := openDB(t)
	tests := []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{db.W, "journal_mode", "wal"},
		{db.W, "foreign_keys", "1"},
		{db.W, "busy_timeout", "10000"},
		{db.W, "synchronous", "1"}, // NORMAL
		{db.W, "query_only", "0"},
		{db.R, "journal_mode", "wal"},
		{db.R, "query_only", "1"},
	}
	for _, tt := range tests {
		var got string
		if err := tt.db.QueryRow("PRAGMA " + tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
		}
	}
	// Readers cannot write.
	if _, err := db.R.Exec(`CREATE TABLE t (x)`); err == nil {
		t.Errorf("reader connection wrote")
	}
}

func TestOpenFails(t *testing.T) {
	_, err := msqlite.Open(filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"))
	if err == nil {
		t.Errorf("Open in a missing directory = nil error")
	}
}

func TestMigrateIdempotent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	for i := range 3 {
		if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	if diff := cmp.Diff([]string{"dead_letters", "inbox", "outbox", "scheduled", "schema_migrations"}, tables(t, db.W)); diff != "" {
		t.Errorf("tables (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"messaging/001_messaging.sql", "messaging/002_dead_letter_envelope.sql", "messaging/003_scheduled.sql", "messaging/004_dead_letter_console.sql"}, applied(t, db)); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
}

func TestMigrationsFS(t *testing.T) {
	entries, err := fs.Glob(msqlite.Migrations(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 || !slices.Contains(entries, "001_messaging.sql") {
		t.Errorf("Migrations() holds %v, want 001_messaging.sql at its root", entries)
	}
}

func TestMigrateOrderAndNames(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	// 002 needs 001's table; the names, not the map order, give the order.
	fsys := fstest.MapFS{
		"002_fill.sql":   {Data: []byte(`INSERT INTO things (name) VALUES ('a'), ('b');`)},
		"001_create.sql": {Data: []byte(`CREATE TABLE things (name TEXT NOT NULL); CREATE INDEX things_name ON things (name);`)},
		"README.md":      {Data: []byte(`not a migration`)},
	}
	if err := db.Migrate(ctx, "things", fsys); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if err := db.Migrate(ctx, "things", fsys); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM things`).Scan(&n); err != nil || n != 2 {
		t.Errorf("things has %d rows (%v), want 2: each migration ran once", n, err)
	}
	// Another name applies its own files even when they are named alike.
	other := fstest.MapFS{"001_create.sql": {Data: []byte(`CREATE TABLE others (x);`)}}
	if err := db.Migrate(ctx, "others", other); err != nil {
		t.Fatalf("Migrate others: %v", err)
	}
	want := []string{"others/001_create.sql", "things/001_create.sql", "things/002_fill.sql"}
	if diff := cmp.Diff(want, applied(t, db)); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}

	// A new file is applied on the next run.
	fsys["003_more.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO things (name) VALUES ('c');`)}
	if err := db.Migrate(ctx, "things", fsys); err != nil {
		t.Fatalf("Migrate with a new file: %v", err)
	}
	if err := db.R.QueryRow(`SELECT count(*) FROM things`).Scan(&n); err != nil || n != 3 {
		t.Errorf("things has %d rows (%v), want 3", n, err)
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	fsys := fstest.MapFS{
		"001_ok.sql":  {Data: []byte(`CREATE TABLE a (x);`)},
		"002_bad.sql": {Data: []byte(`CREATE TABLE b (x); INSERT INTO nowhere VALUES (1);`)},
		"003_ok.sql":  {Data: []byte(`CREATE TABLE c (x);`)},
	}
	err := db.Migrate(ctx, "m", fsys)
	if err == nil {
		t.Fatal("Migrate with a bad file = nil error")
	}
	if !strings.Contains(err.Error(), "002_bad.sql") || !strings.Contains(err.Error(), "migrating m") {
		t.Errorf("Migrate error = %q, want it to name the migration and file", err)
	}
	if diff := cmp.Diff([]string{"a", "schema_migrations"}, tables(t, db.W)); diff != "" {
		t.Errorf("tables after a failed migration (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"m/001_ok.sql"}, applied(t, db)); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	// Mended, it goes on from where it stopped.
	fsys["002_bad.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE b (x);`)}
	if err := db.Migrate(ctx, "m", fsys); err != nil {
		t.Fatalf("Migrate after mending: %v", err)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "schema_migrations"}, tables(t, db.W)); diff != "" {
		t.Errorf("tables (-want +got):\n%s", diff)
	}
}

func TestMigrateCancelled(t *testing.T) {
	db := openDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err == nil {
		t.Errorf("Migrate with a cancelled ctx = nil error")
	}
}

func TestMigratePersists(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.db")
	ctx := context.Background()
	for i := range 2 {
		db, err := msqlite.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
			t.Fatalf("Migrate on open #%d: %v", i+1, err)
		}
		if got := applied(t, db); len(got) != 4 {
			t.Errorf("open #%d: applied %v", i+1, got)
		}
		db.Close()
	}
}

func TestIsUniqueViolation(t *testing.T) {
	db := openDB(t)
	if _, err := db.W.Exec(`CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT UNIQUE, pk2 TEXT, n INTEGER NOT NULL DEFAULT 0);
		CREATE TABLE p (a TEXT, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
		INSERT INTO u (id, name) VALUES (1, 'x');
		INSERT INTO p VALUES ('a', 'b');`); err != nil {
		t.Fatal(err)
	}
	exec := func(q string) error { _, err := db.W.Exec(q); return err }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("UNIQUE constraint failed"), false},
		{"unique", exec(`INSERT INTO u (id, name) VALUES (2, 'x')`), true},
		{"rowid primary key", exec(`INSERT INTO u (id, name) VALUES (1, 'y')`), true},
		{"composite primary key", exec(`INSERT INTO p VALUES ('a', 'b')`), true},
		{"wrapped", fmt.Errorf("store: %w", exec(`INSERT INTO u (id, name) VALUES (3, 'x')`)), true},
		{"not null", exec(`INSERT INTO u (id, name, n) VALUES (4, 'z', NULL)`), false},
		{"syntax", exec(`INSERT INTO`), false},
		{"no such table", exec(`INSERT INTO nowhere VALUES (1)`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name != "nil" && tt.err == nil {
				t.Fatal("statement did not fail")
			}
			if got := msqlite.IsUniqueViolation(tt.err); got != tt.want {
				t.Errorf("IsUniqueViolation(%v) = %v, want %v", tt.err, got, tt.want)
			}
			if msqlite.IsBusy(tt.err) {
				t.Errorf("IsBusy(%v) = true", tt.err)
			}
		})
	}
}

func TestIsBusy(t *testing.T) {
	// Two handles on one file: a second writer meets the first's lock.
	file := filepath.Join(t.TempDir(), "busy.db")
	a, err := msqlite.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(0)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.W.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	tx, err := a.W.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	_, err = b.Exec(`INSERT INTO t VALUES (2)`)
	if err == nil {
		t.Fatal("second writer did not meet the lock")
	}
	if !msqlite.IsBusy(err) || !msqlite.IsBusy(fmt.Errorf("w: %w", err)) {
		t.Errorf("IsBusy(%v) = false", err)
	}
	if msqlite.IsUniqueViolation(err) {
		t.Errorf("IsUniqueViolation(%v) = true", err)
	}
	if msqlite.IsBusy(nil) || msqlite.IsBusy(errors.New("database is locked")) {
		t.Errorf("IsBusy of a non-sqlite error = true")
	}
}

func TestPlaceholders(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, "?"},
		{2, "?, ?"},
		{5, "?, ?, ?, ?, ?"},
	}
	for _, tt := range tests {
		if got := msqlite.Placeholders(tt.n); got != tt.want {
			t.Errorf("Placeholders(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestConcurrentWritersQueue(t *testing.T) {
	// The one writing connection makes writers wait for each other rather
	// than fail with SQLITE_BUSY.
	db := openDB(t)
	if _, err := db.W.Exec(`CREATE TABLE n (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 10 {
				tx, err := db.W.Begin()
				if err != nil {
					t.Errorf("Begin: %v", err)
					return
				}
				if _, err := tx.Exec(`INSERT INTO n VALUES (?)`, i*10+j); err != nil {
					t.Errorf("Insert: %v", err)
				}
				if err := tx.Commit(); err != nil {
					t.Errorf("Commit: %v", err)
				}
			}
		})
		wg.Go(func() {
			var n int
			if err := db.R.QueryRow(`SELECT count(*) FROM n`).Scan(&n); err != nil {
				t.Errorf("read: %v", err)
			}
		})
	}
	wg.Wait()
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM n`).Scan(&n); err != nil || n != 200 {
		t.Errorf("rows = %d (%v), want 200", n, err)
	}
}

func TestOpenPathSpecialCharacters(t *testing.T) {
	tests := []struct {
		name string
		bug  bool
	}{
		{"plain.db", false},
		{"with space.db", false},
		{"ünïcødé.db", false},
		{"percent%20.db", true},
		{"hash#1.db", true},
		{"question?.db", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.bug {
			}
			dir := t.TempDir()
			file := filepath.Join(dir, tt.name)
			db, err := msqlite.Open(file)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer db.Close()
			if err := db.Migrate(context.Background(), "messaging", msqlite.Migrations()); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if _, err := os.Stat(file); err != nil {
				entries, _ := os.ReadDir(dir)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("database not at %q: the directory holds %q", tt.name, names)
			}
			var mode string
			if err := db.W.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode = %q, %v; want wal", mode, err)
			}
		})
	}
}
