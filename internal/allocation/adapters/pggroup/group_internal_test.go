package pggroup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/messaging/postgres/pgtest"
	"github.com/stockflow/stockflow/internal/testenv"
)

// lossyConn loses the connection, once armed, as the server's answer to a
// COMMIT arrives: the server committed, and the client cannot know.
type lossyConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && bytes.Contains(p[:n], []byte("COMMIT\x00")) && c.armed.CompareAndSwap(true, false) {
		c.Conn.Close()
		return 0, io.ErrUnexpectedEOF
	}
	return n, err
}

// A group whose COMMIT went out with its last writes, and whose answer was
// lost, may have committed: no job is blamed or run again (that would
// apply it twice), each is told the outcome is unknown, and the cache
// forgets what the group touched.
func TestLostCommitAnswer(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("test_lost_commit")
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	armed := &atomic.Bool{}
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		return lossyConn{c, armed}, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropAfter(t, pool, schema)
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	plain, err := allocpg.Open(ctx, pool, service.Messages(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(plain, Config{})
	t.Cleanup(s.Close)
	h := service.NewHandlers(s)
	for _, c := range []domain.CreateBatch{{Ref: "b1", SKU: "A", Qty: 10}, {Ref: "b2", SKU: "B", Qty: 10}} {
		if _, _, err := h.CreateBatch(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	// Both read the database (a batch's lines), so that the second's writes
	// and the COMMIT share the last round trip.
	change := func(ref string, qty int) func(context.Context, service.UnitOfWork) error {
		return func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().GetByBatchRef(ctx, ref, "")
			if err != nil {
				return err
			}
			return p.ChangeBatchQuantity(ref, qty)
		}
	}
	jobs := []*job{
		{ctx: ctx, fn: change("b1", 20), done: make(chan result, 1)},
		{ctx: ctx, fn: change("b2", 30), done: make(chan result, 1)},
	}
	armed.Store(true)
	again := s.run(jobs)
	if armed.Load() {
		t.Fatal("the COMMIT's answer was not lost: the test did not run")
	}
	if len(again) != 0 {
		t.Errorf("%d jobs to run again after a COMMIT that may have committed, want none", len(again))
	}
	for i, j := range jobs {
		select {
		case r := <-j.done:
			if !errors.Is(r.err, errGroupFailed) {
				t.Errorf("job %d answered %v, want the outcome unknown (errGroupFailed)", i, r.err)
			}
		default:
			t.Errorf("job %d not answered", i)
		}
	}
	for _, sku := range []string{"A", "B"} {
		if _, ok := s.cache.get(sku); ok {
			t.Errorf("the cache remembers %s, whose state is unknown", sku)
		}
	}
	var purchased int
	if err := pool.QueryRow(ctx, `SELECT purchased FROM batches WHERE ref = 'b2'`).Scan(&purchased); err != nil {
		t.Fatal(err)
	}
	if purchased != 30 {
		t.Fatalf("b2 holds %d: the group did not commit, and the test shows nothing", purchased)
	}
}

// When a job's write fails the group, that job gets its error and every
// other job runs again in a new group, those whose work failed too (what
// they read included writes that were rolled back); a job that trusted
// the cache runs again, reading the database. Run to the end, each job
// gets the outcome it would have had alone.
func TestFailedGroupRunsTheOthersAgain(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, "test_failed_group")
	plain, err := allocpg.Open(ctx, pool, service.Messages(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(plain, Config{})
	t.Cleanup(s.Close)
	h := service.NewHandlers(s)
	for _, c := range []domain.CreateBatch{{Ref: "a1", SKU: "A", Qty: 10}, {Ref: "b1", SKU: "B", Qty: 10}} {
		if _, _, err := h.CreateBatch(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	allocate := func(sku, orderID string) func(context.Context, service.UnitOfWork) error {
		return func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().GetForOrder(ctx, sku, orderID)
			if err != nil {
				return err
			}
			_, err = p.Allocate(domain.OrderLine{OrderID: orderID, SKU: sku, Qty: 1})
			return err
		}
	}
	boom := errors.New("boom")
	m1 := messaging.WithMeta(ctx, messaging.Meta{MessageID: "m1", Consumer: "test/consumer"})
	newJob := func(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) *job {
		return &job{ctx: ctx, fn: fn, done: make(chan result, 1)}
	}
	first := newJob(m1, allocate("A", "o1")) // from the cache
	failing := newJob(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		if _, err := uow.Products().GetByBatchRef(ctx, "b1", ""); err != nil { // a round trip, with first's writes
			return err
		}
		return boom
	})
	duplicate := newJob(m1, allocate("B", "o2")) // from the cache; its inbox entry fails
	last := newJob(ctx, allocate("B", "o3"))     // reads B, saved by duplicate: a round trip, with duplicate's writes
	jobs := []*job{first, failing, duplicate, last}

	again := s.run(jobs)
	for i, j := range jobs {
		select {
		case r := <-j.done:
			t.Errorf("job %d answered %v, %v by the failed group, want it run again", i, r.raised, r.err)
		default:
		}
	}
	if len(again) != len(jobs) {
		t.Errorf("%d jobs to run again, want %d", len(again), len(jobs))
	}
	if !duplicate.uncached || first.uncached || last.uncached {
		t.Errorf("uncached: duplicate %v, first %v, last %v; want only the job whose write failed", duplicate.uncached, first.uncached, last.uncached)
	}
	for len(again) > 0 {
		again = s.run(again)
	}
	want := []error{nil, boom, messaging.ErrAlreadyHandled, nil}
	for i, j := range jobs {
		if r := <-j.done; !errors.Is(r.err, want[i]) || (want[i] == nil && r.err != nil) {
			t.Errorf("job %d: %v, want %v", i, r.err, want[i])
		}
	}
	rows, err := pool.Query(ctx, `SELECT orderid, sku FROM allocations`)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for rows.Next() {
		var orderID, sku string
		if err := rows.Scan(&orderID, &sku); err != nil {
			t.Fatal(err)
		}
		lines[orderID] = sku
	}
	if diff := cmp.Diff(map[string]string{"o1": "A", "o3": "B"}, lines); diff != "" {
		t.Errorf("allocations (-want +got):\n%s", diff)
	}
}
