// Package sqlite is the document store on SQLite (the embedded default):
// one database file per service.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a document store in a SQLite database.
type Store struct {
	db     *msqlite.DB
	outbox *msqlite.Outbox
	uow    *messaging.UnitOfWork[*tx]
}

var _ docstore.Store = (*Store)(nil)

// Open opens (creating it if need be) the database file at file, applying
// the migrations of the documents and messaging tables. committed, when
// not nil, is called after each commit that stored messages in the outbox
// (to wake the relay).
func Open(ctx context.Context, file string, committed func()) (*Store, error) {
	db, err := msqlite.Open(file)
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.Migrate(ctx, "docstore", sub); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, outbox: msqlite.NewOutbox(db)}
	s.uow = messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*tx]{
		Begin: func(ctx context.Context) (*tx, error) {
			t, err := db.Begin(ctx)
			return &tx{Tx: t}, err
		},
		Lost:      msqlite.IsBusy,
		Committed: committed,
	})
	return s, nil
}

// Close closes the database.
func (s *Store) Close() { s.db.Close() }

// Messaging implements docstore.Store.
func (s *Store) Messaging() messaging.Store { return s.outbox }

// Ping implements docstore.Store.
func (s *Store) Ping(ctx context.Context) error { return s.db.R.PingContext(ctx) }

// Transact implements docstore.Store.
func (s *Store) Transact(ctx context.Context, fn func(context.Context, docstore.Tx) error) ([]messaging.Raised, error) {
	return s.uow.Transact(ctx, func(ctx context.Context, t *tx) error { return fn(ctx, t) })
}

const columns = `kind, id, version, idx, body, updated_at`

type scanner interface{ Scan(...any) error }

func scan(row scanner) (docstore.Doc, error) {
	var d docstore.Doc
	var body string
	var at int64
	if err := row.Scan(&d.Kind, &d.ID, &d.Version, &d.Index, &body, &at); err != nil {
		return d, err
	}
	d.Body = []byte(body)
	d.UpdatedAt = time.UnixMicro(at).UTC()
	return d, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func get(ctx context.Context, q queryer, kind, id string) (docstore.Doc, error) {
	d, err := scan(q.QueryRowContext(ctx, `SELECT `+columns+` FROM documents WHERE kind = ? AND id = ?`, kind, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("%s %s: %w", kind, id, fail.NotFound)
	} else if err != nil {
		return d, fmt.Errorf("reading %s %s: %w", kind, id, err)
	}
	return d, nil
}

// Get implements docstore.Store.
func (s *Store) Get(ctx context.Context, kind, id string) (docstore.Doc, error) {
	return get(ctx, s.db.R, kind, id)
}

// Find implements docstore.Store.
func (s *Store) Find(ctx context.Context, q docstore.Query) ([]docstore.Doc, error) {
	order, past := "ASC", ">"
	if q.NewestFirst {
		order, past = "DESC", "<"
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+columns+` FROM documents
		WHERE kind = ?1 AND (?2 = '' OR idx = ?2) AND (?3 = '' OR id `+past+` ?3)
		ORDER BY id `+order+` LIMIT ?4`, q.Kind, q.Index, q.After, q.Limit)
	kind := q.Kind
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", kind, err)
	}
	defer rows.Close()
	var out []docstore.Doc
	for rows.Next() {
		d, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("finding %s: %w", kind, err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// tx is a transaction of the store: the documents it stores, and the
// messages raised meanwhile.
type tx struct {
	msqlite.Tx
	raised []messaging.Raised
}

func (t *tx) Get(ctx context.Context, kind, id string) (docstore.Doc, error) {
	return get(ctx, t.Tx, kind, id)
}

func (t *tx) Put(ctx context.Context, d docstore.Doc) error {
	now := time.Now().UnixMicro()
	if d.Version == 0 {
		_, err := t.ExecContext(ctx, `INSERT INTO documents (`+columns+`) VALUES (?, ?, 1, ?, ?, ?)`, d.Kind, d.ID, d.Index, string(d.Body), now)
		if msqlite.IsUniqueViolation(err) {
			return fmt.Errorf("%w: %s %s was created meanwhile", messaging.ErrConcurrentUpdate, d.Kind, d.ID)
		} else if err != nil {
			return fmt.Errorf("storing %s %s: %w", d.Kind, d.ID, err)
		}
		return nil
	}
	res, err := t.ExecContext(ctx, `UPDATE documents SET version = version + 1, idx = ?, body = ?, updated_at = ?
		WHERE kind = ? AND id = ? AND version = ?`, d.Index, string(d.Body), now, d.Kind, d.ID, d.Version)
	if err != nil {
		return fmt.Errorf("storing %s %s: %w", d.Kind, d.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s %s at version %d", messaging.ErrConcurrentUpdate, d.Kind, d.ID, d.Version)
	}
	return nil
}

func (t *tx) Raise(msgs ...messaging.Raised) { t.raised = append(t.raised, msgs...) }

// Flush implements messaging.Tx: Put stored the documents already.
func (t *tx) Flush(context.Context) ([]messaging.Raised, error) { return t.raised, nil }
