// Package postgres is the document store on PostgreSQL (jackc/pgx/v5): each
// service in a schema of its own.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a document store in a PostgreSQL schema.
type Store struct {
	pool   *pgxpool.Pool
	outbox *mpostgres.Outbox
	uow    *messaging.UnitOfWork[*tx]
}

var _ docstore.Store = (*Store)(nil)

// Open connects to the database at url, in the schema of the service
// name, and applies the migrations of the documents and messaging tables.
// committed, when not nil, is called after each commit that stored
// messages in the outbox (to wake the relay).
func Open(ctx context.Context, url, name string, committed func()) (*Store, error) {
	pool, err := mpostgres.Connect(ctx, url, name)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, outbox: mpostgres.NewOutbox(pool, name)}
	s.uow = messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*tx]{
		Begin: func(ctx context.Context) (*tx, error) {
			t, err := mpostgres.Begin(ctx, pool)
			return &tx{Tx: t}, err
		},
		Lost:      mpostgres.IsConflict,
		Committed: committed,
	})
	return s, nil
}

// Migrate creates or upgrades the tables in pool's schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := mpostgres.Migrate(ctx, pool, "messaging", mpostgres.Migrations()); err != nil {
		return err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	return mpostgres.Migrate(ctx, pool, "docstore", sub)
}

// Close gives up the relay lock and closes the pool.
func (s *Store) Close() {
	s.outbox.Close()
	s.pool.Close()
}

// Messaging implements docstore.Store.
func (s *Store) Messaging() messaging.Store { return s.outbox }

// Ping implements docstore.Store.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Transact implements docstore.Store.
func (s *Store) Transact(ctx context.Context, fn func(context.Context, docstore.Tx) error) ([]messaging.Raised, error) {
	return s.uow.Transact(ctx, func(ctx context.Context, t *tx) error { return fn(ctx, t) })
}

const columns = `kind, id, version, idx, body, updated_at`

func scan(row pgx.Row) (docstore.Doc, error) {
	var d docstore.Doc
	var body []byte
	err := row.Scan(&d.Kind, &d.ID, &d.Version, &d.Index, &body, &d.UpdatedAt)
	d.Body = body
	d.UpdatedAt = d.UpdatedAt.UTC()
	return d, err
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func get(ctx context.Context, q queryer, kind, id, lock string) (docstore.Doc, error) {
	d, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM documents WHERE kind = $1 AND id = $2`+lock, kind, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("%s %s: %w", kind, id, fail.NotFound)
	} else if err != nil {
		return d, fmt.Errorf("reading %s %s: %w", kind, id, err)
	}
	return d, nil
}

// Get implements docstore.Store.
func (s *Store) Get(ctx context.Context, kind, id string) (docstore.Doc, error) {
	return get(ctx, s.pool, kind, id, "")
}

// Find implements docstore.Store.
func (s *Store) Find(ctx context.Context, q docstore.Query) ([]docstore.Doc, error) {
	order, past := "ASC", ">"
	if q.NewestFirst {
		order, past = "DESC", "<"
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM documents
		WHERE kind = $1 AND ($2 = '' OR idx = $2) AND ($3 = '' OR id `+past+` $3)
		ORDER BY id `+order+` LIMIT $4`, q.Kind, q.Index, q.After, q.Limit)
	kind := q.Kind
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", kind, err)
	}
	docs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (docstore.Doc, error) { return scan(row) })
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", kind, err)
	}
	return docs, nil
}

// tx is a transaction of the store: the documents it stores, and the
// messages raised meanwhile.
type tx struct {
	mpostgres.Tx
	raised []messaging.Raised
}

// Get locks the row it reads until the transaction ends: a transaction
// reads what it is about to write, so racing writers of one document
// queue rather than fail at Put and start over.
func (t *tx) Get(ctx context.Context, kind, id string) (docstore.Doc, error) {
	return get(ctx, t.Tx, kind, id, " FOR UPDATE")
}

func (t *tx) Put(ctx context.Context, d docstore.Doc) error {
	if d.Version == 0 {
		tag, err := t.Exec(ctx, `INSERT INTO documents (kind, id, version, idx, body) VALUES ($1, $2, 1, $3, $4)
			ON CONFLICT DO NOTHING`, d.Kind, d.ID, d.Index, string(d.Body))
		if err != nil {
			return fmt.Errorf("storing %s %s: %w", d.Kind, d.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s %s was created meanwhile", messaging.ErrConcurrentUpdate, d.Kind, d.ID)
		}
		return nil
	}
	tag, err := t.Exec(ctx, `UPDATE documents SET version = version + 1, idx = $3, body = $4, updated_at = now()
		WHERE kind = $1 AND id = $2 AND version = $5`, d.Kind, d.ID, d.Index, string(d.Body), d.Version)
	if err != nil {
		return fmt.Errorf("storing %s %s: %w", d.Kind, d.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s %s at version %d", messaging.ErrConcurrentUpdate, d.Kind, d.ID, d.Version)
	}
	return nil
}

func (t *tx) Raise(msgs ...messaging.Raised) { t.raised = append(t.raised, msgs...) }

// Flush implements messaging.Tx: Put stored the documents already.
func (t *tx) Flush(context.Context) ([]messaging.Raised, error) { return t.raised, nil }
