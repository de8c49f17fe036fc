package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Conn is where a transaction sends its reads: a batch of statements in
// one round trip. A pgx.Tx is one; so is the connection of a group of
// transactions, which sends the writes it holds back first (package
// pggroup).
type Conn interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Guess returns a product that a transaction may take as read without
// reading it, holding none of the lines of orderID when orderID is not
// empty; false when it must be read. Whoever guesses must prove the guess
// by the transaction's writes (package pggroup).
type Guess func(sku, orderID string) (*domain.Product, bool)

// unit is what a transaction of either kind (tx, PipelinedTx) holds: where
// its reads go, the products it loaded or added, and the read model's
// writes, which wait for the products' (see flush).
type unit struct {
	conn     Conn
	registry *messaging.Registry
	guess    Guess // nil: every product is read
	// lock: reading a product locks it until the transaction ends, so that
	// racing writers of one product queue, rather than fail at the version
	// check and start over. A transaction of its own locks (tx); one of a
	// group (PipelinedTx) does not: waiting for a lock would hold up the
	// whole group, and its writes follow its reads closely, in the same
	// transaction, behind the version check.
	lock  bool
	seen  []*domain.Product
	views pgx.Batch
}

func (u *unit) Products() service.ProductRepository   { return (*repository)(u) }
func (u *unit) ReadModel() service.ReadModel          { return (*readModel)(u) }
func (u *unit) Customers() service.CustomerRepository { return (*customers)(u) }

type customers unit

func (c *customers) IsVIP(ctx context.Context, customer string) (bool, error) {
	b := &pgx.Batch{}
	var vip bool
	b.Queue(`SELECT EXISTS (SELECT 1 FROM vip_customers WHERE customer = $1)`, customer).QueryRow(func(row pgx.Row) error { return row.Scan(&vip) })
	if err := c.conn.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("reading customer %s: %w", customer, MapError(err))
	}
	return vip, nil
}

func (c *customers) AddVIP(ctx context.Context, customer string) ([]string, error) {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO vip_customers (customer) VALUES ($1) ON CONFLICT DO NOTHING`, customer)
	var skus []string
	b.Queue(`SELECT DISTINCT sku FROM backorders WHERE customer = $1 ORDER BY sku`, customer).Query(func(rows pgx.Rows) error {
		var err error
		skus, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err := c.conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("recording VIP %s: %w", customer, MapError(err))
	}
	return skus, nil
}

// flush queues on b the writes of what the products changed, then the
// read model's, and returns the events the products raised, in order.
func (u *unit) flush(ctx context.Context, b *pgx.Batch) ([]messaging.Raised, error) {
	var raised []messaging.Raised
	for _, p := range u.seen {
		if p.Changed() {
			save(b, p)
		}
		for _, ev := range p.Events() {
			env, err := u.registry.Envelope(ctx, ev)
			if err != nil {
				return nil, err
			}
			raised = append(raised, messaging.Raised{Envelope: env, Event: ev})
		}
	}
	b.QueuedQueries = append(b.QueuedQueries, u.views.QueuedQueries...)
	return raised, nil
}

// readModel queues its writes, to follow the products': an allocation
// shows in the view when its line is stored.
type readModel unit

func (r *readModel) SetAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	r.views.Queue(`INSERT INTO allocations_view (orderid, sku, batchref)
		SELECT orderid, sku, batchref FROM allocations WHERE orderid = $1 AND sku = $2 AND batchref = $3
		ON CONFLICT (orderid, sku) DO UPDATE SET batchref = excluded.batchref`, orderID, sku, batchRef)
	return nil
}

func (r *readModel) RemoveAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	r.views.Queue(`DELETE FROM allocations_view WHERE orderid = $1 AND sku = $2 AND batchref = $3
		AND NOT EXISTS (SELECT 1 FROM allocations WHERE orderid = $1 AND sku = $2 AND batchref = $3)`, orderID, sku, batchRef)
	return nil
}

// repository is the product repository of a transaction.
type repository unit

func (r *repository) Add(p *domain.Product) { r.seen = append(r.seen, p) }

// A product query reads the product, its batches, and the lines the
// operation needs, in one statement: a row per batch, or per loaded line
// of a batch. Its lock statement locks the product's row first (see
// unit.lock): apart, because a locking read of a join sees the newest
// version of the locked row only, joined to the others as its snapshot
// saw them.
type productQuery struct{ lock, read string }

var (
	bySKU = productQuery{
		lock: `SELECT 1 FROM products WHERE sku = $1 FOR UPDATE`,
		read: `SELECT p.sku, p.version, p.waiting, b.ref, b.purchased, b.eta, b.allocated, b.dispatched, b.report_seq, NULL, NULL, NULL, NULL
			FROM products p LEFT JOIN batches b ON b.sku = p.sku
			WHERE p.sku = $1`,
	}
	byBatch = productQuery{
		lock: `SELECT 1 FROM products p JOIN batches x ON x.sku = p.sku WHERE x.ref = $1 FOR UPDATE OF p`,
		read: `SELECT p.sku, p.version, p.waiting, b.ref, b.purchased, b.eta, b.allocated, b.dispatched, b.report_seq,
				a.orderid, a.qty, a.customer, v.customer IS NOT NULL
			FROM batches x JOIN products p ON p.sku = x.sku LEFT JOIN batches b ON b.sku = p.sku
			LEFT JOIN allocations a ON a.batchref = b.ref AND b.ref = $1
			LEFT JOIN vip_customers v ON v.customer = a.customer AND a.customer <> ''
			WHERE x.ref = $1
			ORDER BY a.id`,
	}
)

const (
	// An order's lines, read apart: joined to the product query, the
	// planner's generic plan costs more than a second statement.
	orderLinesQuery = `SELECT a.batchref, a.orderid, a.qty, a.customer, v.customer IS NOT NULL
		FROM allocations a LEFT JOIN vip_customers v ON v.customer = a.customer AND a.customer <> ''
		WHERE a.orderid = $1 AND a.sku = $2 ORDER BY a.id`
	// The order's lines of the product of a batch, but the batch's.
	orderLinesForBatchQuery = `SELECT a.batchref, a.orderid, a.qty, a.customer, v.customer IS NOT NULL
		FROM allocations a JOIN batches x ON x.ref = $2 AND a.sku = x.sku
		LEFT JOIN vip_customers v ON v.customer = a.customer AND a.customer <> ''
		WHERE a.orderid = $1 AND a.batchref <> $2 ORDER BY a.id`
	// A product's waiting list, read when it has one.
	waitingQuery = `SELECT b.id, b.orderid, b.qty, b.customer, v.customer IS NOT NULL
		FROM backorders b LEFT JOIN vip_customers v ON v.customer = b.customer
		WHERE b.sku = $1 ORDER BY b.id`
)

func (r *repository) Get(ctx context.Context, sku string) (*domain.Product, error) {
	if p, ok := r.guessed(sku, ""); ok {
		return p, nil
	}
	return r.load(ctx, "product "+sku, bySKU, sku, nil)
}

func (r *repository) GetForOrder(ctx context.Context, sku, orderID string) (*domain.Product, error) {
	if p, ok := r.guessed(sku, orderID); ok {
		return p, nil
	}
	// The product and the order's lines, in one round trip.
	return r.load(ctx, "product "+sku, bySKU, sku, &linesRead{orderLinesQuery, orderID, sku})
}

func (r *repository) GetByBatchRef(ctx context.Context, ref, orderID string) (*domain.Product, error) {
	if orderID == "" {
		return r.load(ctx, "batch "+ref, byBatch, ref, nil)
	}
	// The product with the batch's lines, and the order's lines elsewhere,
	// in one round trip.
	return r.load(ctx, "batch "+ref, byBatch, ref, &linesRead{orderLinesForBatchQuery, orderID, ref})
}

// guessed returns the product the transaction's Guess offers, if any.
func (r *repository) guessed(sku, orderID string) (*domain.Product, bool) {
	if r.guess == nil {
		return nil, false
	}
	p, ok := r.guess(sku, orderID)
	if ok {
		r.seen = append(r.seen, p)
	}
	return p, ok
}

// linesRead reads the lines of an order: query, with orderID and arg.
type linesRead struct{ query, orderID, arg string }

// load runs q with arg and, when lines is not nil, the read of an order's
// lines, in one round trip, and builds the product, with those lines.
func (r *repository) load(ctx context.Context, what string, q productQuery, arg string, lines *linesRead) (*domain.Product, error) {
	b := &pgx.Batch{}
	if r.lock {
		b.Queue(q.lock, arg)
	}
	b.Queue(q.read, arg)
	if lines != nil {
		b.Queue(lines.query, lines.orderID, lines.arg)
	}
	p, waiting, err := r.send(ctx, b, what, lines)
	if err != nil || waiting == 0 {
		return p, err
	}
	// Another round trip, for a product with a waiting list only.
	wb := &pgx.Batch{}
	wb.Queue(waitingQuery, p.SKU).Query(func(rows pgx.Rows) error {
		var ws []domain.Backorder
		for rows.Next() {
			w := domain.Backorder{OrderLine: domain.OrderLine{SKU: p.SKU}}
			var qty int64
			if err := rows.Scan(&w.Seq, &w.OrderID, &qty, &w.Customer, &w.VIP); err != nil {
				return err
			}
			w.Qty = int(qty)
			ws = append(ws, w)
		}
		p.Waiting = domain.Rank(ws)
		return rows.Err()
	})
	if err := r.conn.SendBatch(ctx, wb).Close(); err != nil {
		return nil, fmt.Errorf("loading the waiting list of %s: %w", p.SKU, MapError(err))
	}
	return p, nil
}

// send sends b, a load's batch, and builds the product from its results;
// waiting is the number of its waiting lines, not read yet.
func (r *repository) send(ctx context.Context, b *pgx.Batch, what string, lines *linesRead) (p *domain.Product, waiting int, err error) {
	res := r.conn.SendBatch(ctx, b)
	defer res.Close()
	if r.lock {
		if _, err := res.Exec(); err != nil {
			return nil, 0, fmt.Errorf("locking %s: %w", what, MapError(err))
		}
	}
	p, waiting, err = r.scanProduct(res, what)
	if err != nil || lines == nil {
		return p, waiting, err
	}
	if err := scanLines(res, p); err != nil {
		return nil, 0, fmt.Errorf("loading order %s: %w", lines.orderID, MapError(err))
	}
	return p, waiting, nil
}

// scanLines adds to p the lines of the next result of res, an order's
// lines query's.
func scanLines(res pgx.BatchResults, p *domain.Product) error {
	rows, err := res.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var ref string
		var qty int64
		l := domain.OrderLine{SKU: p.SKU}
		if err := rows.Scan(&ref, &l.OrderID, &qty, &l.Customer, &l.VIP); err != nil {
			return err
		}
		l.Qty = int(qty)
		if bt := p.Batch(ref); bt != nil {
			bt.Lines = append(bt.Lines, l)
		}
	}
	return rows.Err()
}

// scanProduct builds a product from the next result of res, a product
// query's, and adds it to those the transaction saw; it fails with
// fail.NotFound when there is no such product. waiting is the number of
// the product's waiting lines, which the query does not read.
func (r *repository) scanProduct(res pgx.BatchResults, what string) (_ *domain.Product, waiting int, _ error) {
	rows, err := res.Query()
	if err != nil {
		return nil, 0, fmt.Errorf("loading %s: %w", what, MapError(err))
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
		ref, orderID, customer                     pgtype.Text
		purchased, allocated, dispatched, reported pgtype.Int8
		qty                                        pgtype.Int8
		eta                                        pgtype.Date
		v, w                                       pgtype.Int4
		vip                                        pgtype.Bool
	)
	for rows.Next() {
		if err := rows.Scan(&sku, &v, &w, &ref, &purchased, &eta, &allocated, &dispatched, &reported, &orderID, &qty, &customer, &vip); err != nil {
			return nil, 0, fmt.Errorf("loading %s: %w", what, err)
		}
		version, waiting = int(v.Int32), int(w.Int32)
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
			bt.Lines = append(bt.Lines, domain.OrderLine{OrderID: orderID.String, SKU: sku, Qty: int(qty.Int64),
				Customer: customer.String, VIP: vip.Bool})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("loading %s: %w", what, MapError(err))
	}
	if version < 0 {
		return nil, 0, fmt.Errorf("%s: %w", what, fail.NotFound)
	}
	p := domain.NewProduct(sku, version, batches...)
	r.seen = append(r.seen, p)
	return p, waiting, nil
}

// save queues the writes of what changed in p: first its version, checked
// against the one it was loaded at (a stale version fails the statement:
// see migration 002), then the changes its events record.
func save(b *pgx.Batch, p *domain.Product) {
	if p.Version == 0 {
		b.Queue(`INSERT INTO products (sku, version, waiting) VALUES ($1, 1, $2)`, p.SKU, len(p.Waiting)) // fails if created meanwhile
	} else {
		b.Queue(`UPDATE products SET version = CASE WHEN version = $2 THEN version + 1 ELSE -1 END, waiting = $3 WHERE sku = $1`,
			p.SKU, p.Version, len(p.Waiting))
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
			b.Queue(`WITH a AS (INSERT INTO allocations (orderid, sku, qty, batchref, customer) VALUES ($1, $2, $3, $4, $5))
				UPDATE batches SET allocated = allocated + $3 WHERE ref = $4`, e.OrderID, e.SKU, e.Qty, e.BatchRef, e.Customer)
			if e.Backorder {
				b.Queue(`DELETE FROM backorders WHERE orderid = $1 AND sku = $2`, e.OrderID, e.SKU)
			}
		case domain.OutOfStock:
			if e.Waiting {
				b.Queue(`INSERT INTO backorders (sku, orderid, qty, customer) VALUES ($1, $2, $3, $4)`, e.SKU, e.OrderID, e.Qty, e.Customer)
			}
		case domain.BackorderCancelled:
			b.Queue(`DELETE FROM backorders WHERE orderid = $1 AND sku = $2`, e.OrderID, e.SKU)
		case domain.Deallocated:
			b.Queue(`WITH d AS (DELETE FROM allocations WHERE orderid = $1 AND sku = $2)
				UPDATE batches SET allocated = allocated - $3 WHERE ref = $4`, e.OrderID, e.SKU, e.Qty, e.BatchRef)
		}
	}
}
