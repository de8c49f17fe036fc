// Package postgres keeps the allocation service in PostgreSQL (jackc/pgx/v5):
// the product repository, the unit of work (with the outbox and inbox of
// the shared plumbing in the same transaction) and the read model.
//
// Store runs each unit of work in a PostgreSQL transaction of its own,
// through the shared core (messaging.UnitOfWork). A product is locked and
// read, with the order lines the operation needs, in one round trip; a
// transaction's writes (the products' changes, then the read model's) go
// in one more. Saving a product checks the version it was read at, in the
// server (migration 002): a stale write fails its statement.
//
// The same repository also runs in transactions whose writes wait
// (PipelinedTx): package pggroup commits the work of many callers in one
// transaction with them, each caller's writes sent with the next one's
// reads, and reads the products it committed itself from memory.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the allocation store on a PostgreSQL schema.
type Store struct {
	pool     *pgxpool.Pool
	registry *messaging.Registry
	uow      *messaging.UnitOfWork[*tx]
}

var _ service.Store = (*Store)(nil)

// Open opens the store on pool, applying its migrations and the messaging
// tables'. registry names the events the products raise; committed, when
// not nil, is called after each commit that stored messages in the outbox
// (to wake the relay).
func Open(ctx context.Context, pool *pgxpool.Pool, registry *messaging.Registry, committed func()) (*Store, error) {
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	s := &Store{pool: pool, registry: registry}
	s.uow = messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*tx]{
		Begin: func(ctx context.Context) (*tx, error) {
			t, err := mpostgres.Begin(ctx, pool)
			if err != nil {
				return nil, err
			}
			return &tx{Tx: t, unit: unit{conn: t, registry: registry, lock: true}}, nil
		},
		Lost:      mpostgres.IsConflict,
		Committed: committed,
	})
	return s, nil
}

// Migrate creates or upgrades the store's tables.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := mpostgres.Migrate(ctx, pool, "messaging", mpostgres.Migrations()); err != nil {
		return err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	return mpostgres.Migrate(ctx, pool, "allocation", sub)
}

// Pool returns the store's pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Transact implements service.Store: one PostgreSQL transaction per call.
func (s *Store) Transact(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
	return s.uow.Transact(ctx, func(ctx context.Context, t *tx) error { return fn(ctx, t) })
}

// RecordDuplicate records a receipt of the message ctx carries as a
// duplicate (see messaging.UnitOfWork.RecordDuplicate).
func (s *Store) RecordDuplicate(ctx context.Context, start time.Time) {
	s.uow.RecordDuplicate(ctx, start)
}

// Allocations implements service.Store.
func (s *Store) Allocations(ctx context.Context, orderID string) ([]service.AllocationView, error) {
	rows, err := s.pool.Query(ctx, `SELECT sku, batchref FROM allocations_view WHERE orderid = $1 ORDER BY sku`, orderID)
	if err != nil {
		return nil, fmt.Errorf("allocations view: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[service.AllocationView])
}

// MapError turns what the database answers a lost race (a serialization
// failure, a deadlock, a stale version, a product or line created
// meanwhile) into messaging.ErrConcurrentUpdate, and a batch ref taken
// meanwhile into domain.ErrDuplicateBatch; other errors are returned as
// they are.
func MapError(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case mpostgres.IsConflict(err):
		return fmt.Errorf("%w: %w", messaging.ErrConcurrentUpdate, err)
	case errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "products_version_check":
		return fmt.Errorf("%w: the product changed since it was read", messaging.ErrConcurrentUpdate)
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		switch pgErr.ConstraintName {
		case "batches_pkey":
			return fmt.Errorf("%w: %s", domain.ErrDuplicateBatch, pgErr.Detail)
		default: // products_pkey, allocations_orderid_sku_key, inbox_pkey: another transaction got there first
			return fmt.Errorf("%w: %w", messaging.ErrConcurrentUpdate, err)
		}
	}
	return err
}

// tx is a transaction of the store: the outbox and inbox of mpostgres.Tx,
// and the products and read model of unit. It implements messaging.Tx and
// service.UnitOfWork.
type tx struct {
	mpostgres.Tx
	unit
}

// Flush implements messaging.Tx: the writes of what the products changed,
// then the read model's, in one round trip.
func (t *tx) Flush(ctx context.Context) ([]messaging.Raised, error) {
	b := &pgx.Batch{}
	raised, err := t.flush(ctx, b)
	if err != nil || b.Len() == 0 {
		return raised, err
	}
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("saving: %w", MapError(err))
	}
	return raised, nil
}
