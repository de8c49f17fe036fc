// Package sqlite keeps the allocation service in SQLite: the product
// repository, the unit of work (with the outbox and inbox of the shared
// plumbing in the same transaction) and the read model.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the allocation store on a SQLite database.
type Store struct {
	db     *msqlite.DB
	outbox *msqlite.Outbox
	uow    *messaging.UnitOfWork[*unitOfWork]
}

// Config is what a Store needs besides its database.
type Config struct {
	// Registry names the events the products raise.
	Registry *messaging.Registry
	// Committed, when set, is called after each commit that stored
	// messages in the outbox (to wake the relay).
	Committed func()
	// Retried, when set, is called each time a transaction runs again
	// after losing a race.
	Retried func()
}

// Open opens the store in db, applying its migrations and the messaging
// tables'.
func Open(ctx context.Context, db *msqlite.DB, cfg Config) (*Store, error) {
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	if err := db.Migrate(ctx, "allocation", sub); err != nil {
		return nil, err
	}
	uow := messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*unitOfWork]{
		Begin: func(ctx context.Context) (*unitOfWork, error) {
			tx, err := db.Begin(ctx)
			return &unitOfWork{Tx: tx, registry: cfg.Registry}, err
		},
		Lost:      msqlite.IsBusy,
		Committed: cfg.Committed,
		Retried:   cfg.Retried,
	})
	return &Store{db: db, outbox: msqlite.NewOutbox(db), uow: uow}, nil
}

// Messaging returns the outbox, inbox and dead letters of the database.
func (s *Store) Messaging() messaging.Store { return s.outbox }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.R.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() { s.db.Close() }

// Transact implements service.Store.
func (s *Store) Transact(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
	return s.uow.Transact(ctx, func(ctx context.Context, u *unitOfWork) error { return fn(ctx, u) })
}

// Allocations implements service.Store.
func (s *Store) Allocations(ctx context.Context, orderID string) ([]service.AllocationView, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT sku, batchref FROM allocations_view WHERE orderid = ? ORDER BY sku`, orderID)
	if err != nil {
		return nil, fmt.Errorf("allocations view: %w", err)
	}
	defer rows.Close()
	var out []service.AllocationView
	for rows.Next() {
		var v service.AllocationView
		if err := rows.Scan(&v.SKU, &v.BatchRef); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// unitOfWork is a transaction of the store: the products it loaded or
// added, saved by Flush.
type unitOfWork struct {
	msqlite.Tx
	registry *messaging.Registry
	seen     []*domain.Product
}

// Flush implements messaging.Tx: it saves the products that changed and
// returns their events.
func (u *unitOfWork) Flush(ctx context.Context) ([]messaging.Raised, error) {
	var raised []messaging.Raised
	for _, p := range u.seen {
		if err := save(ctx, u.Tx, p); err != nil {
			return nil, err
		}
		for _, ev := range p.Events() {
			env, err := u.registry.Envelope(ctx, ev)
			if err != nil {
				return nil, err
			}
			raised = append(raised, messaging.Raised{Envelope: env, Event: ev})
		}
	}
	return raised, nil
}

func (u *unitOfWork) Products() service.ProductRepository   { return (*repository)(u) }
func (u *unitOfWork) ReadModel() service.ReadModel          { return (*readModel)(u) }
func (u *unitOfWork) Customers() service.CustomerRepository { return (*customers)(u) }

type customers unitOfWork

func (c *customers) IsVIP(ctx context.Context, customer string) (bool, error) {
	var n int
	err := c.QueryRowContext(ctx, `SELECT count(*) FROM vip_customers WHERE customer = ?`, customer).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("reading customer %s: %w", customer, err)
	}
	return n > 0, nil
}

func (c *customers) AddVIP(ctx context.Context, customer string) ([]string, error) {
	if _, err := c.ExecContext(ctx, `INSERT INTO vip_customers (customer) VALUES (?) ON CONFLICT DO NOTHING`, customer); err != nil {
		return nil, fmt.Errorf("recording VIP %s: %w", customer, err)
	}
	rows, err := c.QueryContext(ctx, `SELECT DISTINCT sku FROM backorders WHERE customer = ? ORDER BY sku`, customer)
	if err != nil {
		return nil, fmt.Errorf("reading the lines %s waits for: %w", customer, err)
	}
	defer rows.Close()
	var skus []string
	for rows.Next() {
		var sku string
		if err := rows.Scan(&sku); err != nil {
			return nil, err
		}
		skus = append(skus, sku)
	}
	return skus, rows.Err()
}

type readModel unitOfWork

func (r *readModel) SetAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	_, err := r.ExecContext(ctx, `INSERT INTO allocations_view (orderid, sku, batchref)
		SELECT orderid, sku, batchref FROM allocations WHERE orderid = ? AND sku = ? AND batchref = ?
		ON CONFLICT (orderid, sku) DO UPDATE SET batchref = excluded.batchref`, orderID, sku, batchRef)
	return err
}

func (r *readModel) RemoveAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	_, err := r.ExecContext(ctx, `DELETE FROM allocations_view WHERE orderid = ?1 AND sku = ?2 AND batchref = ?3
		AND NOT EXISTS (SELECT 1 FROM allocations WHERE orderid = ?1 AND sku = ?2 AND batchref = ?3)`, orderID, sku, batchRef)
	return err
}

// repository is the product repository of a unit of work.
type repository unitOfWork

func (r *repository) Add(p *domain.Product) { r.seen = append(r.seen, p) }

func (r *repository) Get(ctx context.Context, sku string) (*domain.Product, error) {
	p, err := r.load(ctx, sku)
	if err != nil {
		return nil, err
	}
	r.seen = append(r.seen, p)
	return p, nil
}

func (r *repository) GetForOrder(ctx context.Context, sku, orderID string) (*domain.Product, error) {
	p, err := r.load(ctx, sku)
	if err != nil {
		return nil, err
	}
	if err := r.loadLines(ctx, p, `a.orderid = ?1 AND a.sku = ?2`, orderID, sku); err != nil {
		return nil, fmt.Errorf("loading order %s: %w", orderID, err)
	}
	r.seen = append(r.seen, p)
	return p, nil
}

func (r *repository) GetByBatchRef(ctx context.Context, ref, orderID string) (*domain.Product, error) {
	var sku string
	err := r.QueryRowContext(ctx, `SELECT sku FROM batches WHERE ref = ?`, ref).Scan(&sku)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("batch %s: %w", ref, fail.NotFound)
	} else if err != nil {
		return nil, fmt.Errorf("loading batch %s: %w", ref, err)
	}
	p, err := r.load(ctx, sku)
	if err != nil {
		return nil, err
	}
	// The batch's lines, and the order's elsewhere.
	if err := r.loadLines(ctx, p, `a.batchref = ?1 OR (a.orderid = ?2 AND a.sku = ?3 AND a.batchref <> ?1)`, ref, orderID, sku); err != nil {
		return nil, fmt.Errorf("loading batch %s: %w", ref, err)
	}
	r.seen = append(r.seen, p)
	return p, nil
}

// loadLines adds to p's batches the lines allocated from them that where
// selects, in allocation order, each with its customer and whether they
// are a VIP.
func (r *repository) loadLines(ctx context.Context, p *domain.Product, where string, args ...any) error {
	rows, err := r.QueryContext(ctx, `SELECT a.batchref, a.orderid, a.qty, a.customer, v.customer IS NOT NULL
		FROM allocations a LEFT JOIN vip_customers v ON v.customer = a.customer AND a.customer <> ''
		WHERE `+where+` ORDER BY a.id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var ref string
		l := domain.OrderLine{SKU: p.SKU}
		if err := rows.Scan(&ref, &l.OrderID, &l.Qty, &l.Customer, &l.VIP); err != nil {
			return err
		}
		if b := p.Batch(ref); b != nil {
			b.Lines = append(b.Lines, l)
		}
	}
	return rows.Err()
}

// loadWaiting reads p's waiting list.
func (r *repository) loadWaiting(ctx context.Context, p *domain.Product) error {
	rows, err := r.QueryContext(ctx, `SELECT b.id, b.orderid, b.qty, b.customer, v.customer IS NOT NULL
		FROM backorders b LEFT JOIN vip_customers v ON v.customer = b.customer
		WHERE b.sku = ? ORDER BY b.id`, p.SKU)
	if err != nil {
		return fmt.Errorf("loading the waiting list of %s: %w", p.SKU, err)
	}
	defer rows.Close()
	var ws []domain.Backorder
	for rows.Next() {
		w := domain.Backorder{OrderLine: domain.OrderLine{SKU: p.SKU}}
		if err := rows.Scan(&w.Seq, &w.OrderID, &w.Qty, &w.Customer, &w.VIP); err != nil {
			return err
		}
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	p.Waiting = domain.Rank(ws)
	return nil
}

// load reads the product and its batches, without order lines.
func (r *repository) load(ctx context.Context, sku string) (*domain.Product, error) {
	var version, waiting int
	err := r.QueryRowContext(ctx, `SELECT version, waiting FROM products WHERE sku = ?`, sku).Scan(&version, &waiting)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("product %s: %w", sku, fail.NotFound)
	} else if err != nil {
		return nil, fmt.Errorf("loading product %s: %w", sku, err)
	}
	rows, err := r.QueryContext(ctx, `SELECT ref, purchased, eta, allocated, dispatched, report_seq FROM batches WHERE sku = ?`, sku)
	if err != nil {
		return nil, fmt.Errorf("loading product %s: %w", sku, err)
	}
	defer rows.Close()
	var batches []*domain.Batch
	for rows.Next() {
		b := &domain.Batch{SKU: sku}
		var eta sql.NullString
		if err := rows.Scan(&b.Ref, &b.Purchased, &eta, &b.Allocated, &b.Dispatched, &b.ReportSeq); err != nil {
			return nil, err
		}
		if eta.Valid {
			d, err := domain.ParseDate(eta.String)
			if err != nil {
				return nil, fmt.Errorf("batch %s: %w", b.Ref, err)
			}
			b.ETA = d.Time
		}
		batches = append(batches, b)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	p := domain.NewProduct(sku, version, batches...)
	if waiting > 0 {
		if err := r.loadWaiting(ctx, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// save writes what changed in p: its version, checked against the one it
// was loaded at, and the changes its events record.
func save(ctx context.Context, tx msqlite.Tx, p *domain.Product) error {
	if !p.Changed() {
		return nil
	}
	if p.Version == 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO products (sku, version, waiting) VALUES (?, 1, ?)`, p.SKU, len(p.Waiting)); err != nil {
			if msqlite.IsUniqueViolation(err) {
				return fmt.Errorf("%w: product %s was created meanwhile", messaging.ErrConcurrentUpdate, p.SKU)
			}
			return err
		}
	} else {
		res, err := tx.ExecContext(ctx, `UPDATE products SET version = version + 1, waiting = ? WHERE sku = ? AND version = ?`, len(p.Waiting), p.SKU, p.Version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: product %s at version %d", messaging.ErrConcurrentUpdate, p.SKU, p.Version)
		}
	}
	for _, ev := range p.Events() {
		var err error
		switch e := ev.(type) {
		case domain.BatchCreated:
			var eta any
			if !e.ETA.IsZero() {
				eta = e.ETA.String()
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO batches (ref, sku, purchased, eta) VALUES (?, ?, ?, ?)`, e.Ref, e.SKU, e.Qty, eta)
			if msqlite.IsUniqueViolation(err) {
				err = fmt.Errorf("%w %s", domain.ErrDuplicateBatch, e.Ref)
			}
		case domain.BatchQuantityChanged:
			_, err = tx.ExecContext(ctx, `UPDATE batches SET purchased = ?, dispatched = ?, report_seq = ? WHERE ref = ?`, e.Qty, e.Dispatched, e.ReportSeq, e.Ref)
		case domain.Allocated:
			if _, err = tx.ExecContext(ctx, `INSERT INTO allocations (orderid, sku, qty, batchref, customer) VALUES (?, ?, ?, ?, ?)`, e.OrderID, e.SKU, e.Qty, e.BatchRef, e.Customer); err == nil {
				_, err = tx.ExecContext(ctx, `UPDATE batches SET allocated = allocated + ? WHERE ref = ?`, e.Qty, e.BatchRef)
			}
			if err == nil && e.Backorder {
				_, err = tx.ExecContext(ctx, `DELETE FROM backorders WHERE orderid = ? AND sku = ?`, e.OrderID, e.SKU)
			}
		case domain.OutOfStock:
			if e.Waiting {
				_, err = tx.ExecContext(ctx, `INSERT INTO backorders (sku, orderid, qty, customer) VALUES (?, ?, ?, ?)`, e.SKU, e.OrderID, e.Qty, e.Customer)
			}
		case domain.BackorderCancelled:
			_, err = tx.ExecContext(ctx, `DELETE FROM backorders WHERE orderid = ? AND sku = ?`, e.OrderID, e.SKU)
		case domain.Deallocated:
			if _, err = tx.ExecContext(ctx, `DELETE FROM allocations WHERE orderid = ? AND sku = ?`, e.OrderID, e.SKU); err == nil {
				_, err = tx.ExecContext(ctx, `UPDATE batches SET allocated = allocated - ? WHERE ref = ?`, e.Qty, e.BatchRef)
			}
		}
		if err != nil {
			return fmt.Errorf("saving product %s: %w", p.SKU, err)
		}
	}
	return nil
}
