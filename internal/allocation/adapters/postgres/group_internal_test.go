package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
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
	t.Cleanup(func() {
		pool.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		pool.Close()
	})
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, pool, service.Messages())
	if err != nil {
		t.Fatal(err)
	}
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
