// Package postgres keeps the allocation service in PostgreSQL (jackc/pgx/v5):
// the product repository, the unit of work (with the outbox and inbox of
// the shared plumbing in the same transaction) and the read model.
//
// Transactions are committed in groups (see group.go): the work of the
// callers waiting at once shares one database transaction and one commit,
// and each caller's writes travel in the same round trip as the next
// caller's reads. Products the service committed itself are read from
// memory and verified as they are written (see cache.go), so that a group
// of allocations usually takes a single round trip.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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
	// OnCommit, when set, is called after each commit that stored messages
	// in the outbox (to wake the relay).
	OnCommit func()

	cache *productCache
	jobs  chan *job
	quit  chan struct{}
	wg    sync.WaitGroup
}

// Committers is how many group transactions run at once. Once a group
// takes a single round trip (see cache.go), two keep the database busy
// while letting the callers that arrive meanwhile gather into the next
// groups: with four, groups were smaller and throughput 12% lower.
const Committers = 2

// Open opens the store on pool, applying its migrations and the messaging
// tables'.
func Open(ctx context.Context, pool *pgxpool.Pool, registry *messaging.Registry) (*Store, error) {
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	s := &Store{pool: pool, registry: registry, cache: newProductCache(), jobs: make(chan *job), quit: make(chan struct{})}
	for range Committers {
		s.wg.Add(1)
		go s.commit()
	}
	return s, nil
}

// Close stops the committers, once the transactions under way are done.
func (s *Store) Close() {
	close(s.quit)
	s.wg.Wait()
}

// Migrate creates or upgrades the store's tables.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := mpostgres.Migrate(ctx, pool, "messaging", mpostgres.Migrations()); err != nil {
		return err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	return mpostgres.Migrate(ctx, pool, "allocation", sub)
}

// Allocations implements service.Store.
func (s *Store) Allocations(ctx context.Context, orderID string) ([]service.AllocationView, error) {
	rows, err := s.pool.Query(ctx, `SELECT sku, batchref FROM allocations_view WHERE orderid = $1 ORDER BY sku`, orderID)
	if err != nil {
		return nil, fmt.Errorf("allocations view: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[service.AllocationView])
}

// mapErr turns lost races into domain.ErrConcurrentUpdate, and a batch ref
// taken meanwhile into domain.ErrDuplicateBatch.
func mapErr(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case mpostgres.IsConflict(err):
		return fmt.Errorf("%w: %w", domain.ErrConcurrentUpdate, err)
	case errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "products_version_check":
		return fmt.Errorf("%w: the product changed since it was read", domain.ErrConcurrentUpdate)
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		switch pgErr.ConstraintName {
		case "batches_pkey":
			return fmt.Errorf("%w: %s", domain.ErrDuplicateBatch, pgErr.Detail)
		default: // products_pkey, allocations_orderid_sku_key: another transaction got there first
			return fmt.Errorf("%w: %w", domain.ErrConcurrentUpdate, err)
		}
	}
	return err
}

// unitOfWork is one caller's share of a group transaction.
type unitOfWork struct {
	g      *group
	job    *job
	seen   []*domain.Product
	cached []cachedRead // the products of seen read from the cache
	writes *pgx.Batch   // the read model's, sent with the rest after fn
}

func (u *unitOfWork) Products() service.ProductRepository { return (*repository)(u) }
func (u *unitOfWork) ReadModel() service.ReadModel        { return (*readModel)(u) }

type readModel unitOfWork

func (r *readModel) SetAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	r.writes.Queue(`INSERT INTO allocations_view (orderid, sku, batchref)
		SELECT orderid, sku, batchref FROM allocations WHERE orderid = $1 AND sku = $2 AND batchref = $3
		ON CONFLICT (orderid, sku) DO UPDATE SET batchref = excluded.batchref`, orderID, sku, batchRef)
	return nil
}

func (r *readModel) RemoveAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	r.writes.Queue(`DELETE FROM allocations_view WHERE orderid = $1 AND sku = $2 AND batchref = $3
		AND NOT EXISTS (SELECT 1 FROM allocations WHERE orderid = $1 AND sku = $2 AND batchref = $3)`, orderID, sku, batchRef)
	return nil
}

// repository is the product repository of a unit of work.
type repository unitOfWork

func (r *repository) Add(p *domain.Product) { r.seen = append(r.seen, p) }

// The product, its batches, and the lines the operation needs, in one
// query: a row per batch, or per loaded line of a batch.
const (
	productQuery = `SELECT p.sku, p.version, b.ref, b.purchased, b.eta, b.allocated, b.dispatched, b.report_seq, NULL, NULL
		FROM products p LEFT JOIN batches b ON b.sku = p.sku
		WHERE p.sku = $1`
	// An order's lines, read apart: joined to the product query, the
	// planner's generic plan costs more than a second statement.
	orderLinesQuery      = `SELECT batchref, orderid, qty FROM allocations WHERE orderid = $1 AND sku = $2 ORDER BY id`
	productForBatchQuery = `SELECT p.sku, p.version, b.ref, b.purchased, b.eta, b.allocated, b.dispatched, b.report_seq, a.orderid, a.qty
		FROM batches x JOIN products p ON p.sku = x.sku LEFT JOIN batches b ON b.sku = p.sku
		LEFT JOIN allocations a ON a.batchref = b.ref AND b.ref = $1
		WHERE x.ref = $1
		ORDER BY a.id`
)

func (r *repository) Get(ctx context.Context, sku string) (*domain.Product, error) {
	if p, ok := r.fromCache(sku, ""); ok {
		return p, nil
	}
	return r.load(ctx, "product "+sku, productQuery, sku)
}

// fromCache returns the cached product, for orderID when not empty, unless
// the job reads the database only or the group changed the product
// already (the database has it as the group left it).
func (r *repository) fromCache(sku, orderID string) (*domain.Product, bool) {
	if r.job.uncached || r.g.touched[sku] {
		return nil, false
	}
	p, ok := r.g.cache.get(sku)
	if !ok {
		return nil, false
	}
	r.seen = append(r.seen, p)
	r.cached = append(r.cached, cachedRead{p: p, orderID: orderID})
	return p, true
}

func (r *repository) GetForOrder(ctx context.Context, sku, orderID string) (*domain.Product, error) {
	if p, ok := r.fromCache(sku, orderID); ok {
		return p, nil
	}
	// The product and the order's lines, in one round trip.
	return r.loadWithOrder(productQuery, sku, "product "+sku, sku, orderID)
}

func (r *repository) GetByBatchRef(ctx context.Context, ref, orderID string) (*domain.Product, error) {
	if orderID == "" {
		return r.load(ctx, "batch "+ref, productForBatchQuery, ref)
	}
	// The product with the batch's lines, and the order's lines elsewhere,
	// in one round trip.
	return r.loadWithOrder(productForBatchQuery, ref, "batch "+ref, "", orderID)
}

// loadWithOrder runs the product query with arg and the query of the lines
// of orderID (of sku; of the product's sku when sku is empty) in one round
// trip, and builds the product with those lines.
func (r *repository) loadWithOrder(query, arg, what, sku, orderID string) (*domain.Product, error) {
	b := &pgx.Batch{}
	b.Queue(query, arg)
	if sku == "" {
		b.Queue(`SELECT a.batchref, a.orderid, a.qty FROM allocations a JOIN batches x ON x.ref = $2 AND a.sku = x.sku
			WHERE a.orderid = $1 AND a.batchref <> $2 ORDER BY a.id`, orderID, arg)
	} else {
		b.Queue(orderLinesQuery, orderID, sku)
	}
	res, err := r.g.send(b)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	p, err := r.scanProduct(res, what)
	if err != nil {
		return nil, err
	}
	rows, err := res.Query()
	if err != nil {
		return nil, r.g.readFailed(fmt.Errorf("loading order %s: %w", orderID, mapErr(err)))
	}
	defer rows.Close()
	for rows.Next() {
		var ref string
		var l domain.OrderLine
		var qty int64
		if err := rows.Scan(&ref, &l.OrderID, &qty); err != nil {
			return nil, r.g.readFailed(fmt.Errorf("loading order %s: %w", orderID, err))
		}
		l.Qty = int(qty)
		if p != nil {
			l.SKU = p.SKU
			if bt := p.Batch(ref); bt != nil {
				bt.Lines = append(bt.Lines, l)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, r.g.readFailed(fmt.Errorf("loading order %s: %w", orderID, mapErr(err)))
	}
	if p == nil {
		return nil, fmt.Errorf("%s: %w", what, service.ErrNotFound)
	}
	return p, nil
}

// load runs one of the product queries and builds the product.
func (r *repository) load(ctx context.Context, what, query string, args ...any) (*domain.Product, error) {
	b := &pgx.Batch{}
	b.Queue(query, args...)
	res, err := r.g.send(b)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	p, err := r.scanProduct(res, what)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%s: %w", what, service.ErrNotFound)
	}
	return p, nil
}

// scanProduct builds a product from the next result of res, a product
// query's; nil when there is no such product.
func (r *repository) scanProduct(res pgx.BatchResults, what string) (*domain.Product, error) {
	rows, err := res.Query()
	if err != nil {
		return nil, r.g.readFailed(fmt.Errorf("loading %s: %w", what, mapErr(err)))
	}
	defer rows.Close()
	var (
		sku     string
		version = -1
		batches []*domain.Batch
		byRef   = map[string]*domain.Batch{}
	)
	// pgtype's nullable types scan without reflection.
	var (
		ref, orderID                               pgtype.Text
		purchased, allocated, dispatched, reported pgtype.Int8
		qty                                        pgtype.Int8
		eta                                        pgtype.Date
		v                                          pgtype.Int4
	)
	for rows.Next() {
		if err := rows.Scan(&sku, &v, &ref, &purchased, &eta, &allocated, &dispatched, &reported, &orderID, &qty); err != nil {
			return nil, r.g.readFailed(fmt.Errorf("loading %s: %w", what, err))
		}
		version = int(v.Int32)
		if !ref.Valid {
			continue // a product without batches
		}
		bt := byRef[ref.String]
		if bt == nil {
			bt = &domain.Batch{Ref: ref.String, SKU: sku, Purchased: int(purchased.Int64), Allocated: int(allocated.Int64),
				Dispatched: int(dispatched.Int64), ReportSeq: int(reported.Int64)}
			if eta.Valid {
				bt.ETA = time.Date(eta.Time.Year(), eta.Time.Month(), eta.Time.Day(), 0, 0, 0, 0, time.UTC)
			}
			byRef[ref.String] = bt
			batches = append(batches, bt)
		}
		if orderID.Valid { // rows come in allocation order
			bt.Lines = append(bt.Lines, domain.OrderLine{OrderID: orderID.String, SKU: sku, Qty: int(qty.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, r.g.readFailed(fmt.Errorf("loading %s: %w", what, mapErr(err)))
	}
	if version < 0 {
		return nil, nil
	}
	p := domain.NewProduct(sku, version, batches...)
	r.seen = append(r.seen, p)
	return p, nil
}

// save queues the writes of what changed in p: first its version, checked
// against the one it was loaded at (a stale version fails the statement:
// see migration 002), then the changes its events record.
func save(b *pgx.Batch, p *domain.Product) {
	if p.Version == 0 {
		b.Queue(`INSERT INTO products (sku, version) VALUES ($1, 1)`, p.SKU) // fails if created meanwhile
	} else {
		b.Queue(`UPDATE products SET version = CASE WHEN version = $2 THEN version + 1 ELSE -1 END WHERE sku = $1`, p.SKU, p.Version)
	}
	for _, ev := range p.Events() {
		switch e := ev.(type) {
		case domain.BatchCreated:
			var eta any
			if !e.ETA.IsZero() {
				eta = e.ETA.Time
			}
			b.Queue(`INSERT INTO batches (ref, sku, purchased, eta) VALUES ($1, $2, $3, $4)`, e.Ref, e.SKU, e.Qty, eta)
		case domain.BatchQuantityChanged:
			b.Queue(`UPDATE batches SET purchased = $1, dispatched = $2, report_seq = $3 WHERE ref = $4`, e.Qty, e.Dispatched, e.ReportSeq, e.Ref)
		case domain.Allocated:
			b.Queue(`WITH a AS (INSERT INTO allocations (orderid, sku, qty, batchref) VALUES ($1, $2, $3, $4))
				UPDATE batches SET allocated = allocated + $3 WHERE ref = $4`, e.OrderID, e.SKU, e.Qty, e.BatchRef)
		case domain.Deallocated:
			b.Queue(`WITH d AS (DELETE FROM allocations WHERE orderid = $1 AND sku = $2)
				UPDATE batches SET allocated = allocated - $3 WHERE ref = $4`, e.OrderID, e.SKU, e.Qty, e.BatchRef)
		}
	}
}
