package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

// Group commit. Callers of Transact queue their work; a committer takes
// the work waiting, up to maxGroup callers, and runs it in one
// transaction: each caller's reads, then its writes, pipelined with the
// next caller's reads, and one COMMIT at the end. A caller sees the writes
// of the callers before it. When a caller's write fails (its version check,
// its inbox entry), the transaction is rolled back, that caller gets its
// error, and the others run again in a new group.
//
// This is what lets many small transactions share one disk flush and a
// few round trips, instead of each paying for its own.

const maxGroup = 64

// groupTimeout bounds one group transaction.
const groupTimeout = 30 * time.Second

type job struct {
	ctx  context.Context
	fn   func(context.Context, service.UnitOfWork) error
	done chan result
	// uncached: the job reads the database only (see cache.go).
	uncached bool
}

type result struct {
	raised []messaging.Raised
	err    error
}

// Transact implements service.Store.
func (s *Store) Transact(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
	j := &job{ctx: ctx, fn: fn, done: make(chan result, 1)}
	select {
	case s.jobs <- j:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.quit:
		return nil, errors.New("allocation store closed")
	}
	r := <-j.done // even when ctx is done: the work may be committed
	return r.raised, r.err
}

// commit runs groups until the store closes.
func (s *Store) commit() {
	defer s.wg.Done()
	for {
		var first *job
		select {
		case first = <-s.jobs:
		case <-s.quit:
			return
		}
		group := []*job{first}
	gather:
		for len(group) < maxGroup {
			select {
			case j := <-s.jobs:
				group = append(group, j)
			default:
				break gather
			}
		}
		for len(group) > 0 {
			group = s.run(group)
		}
	}
}

// run runs jobs in one transaction and answers them, but for the jobs it
// returns: those to run again, in a new transaction, because another job
// failed this one, or because they trusted the cache and could not prove
// it.
func (s *Store) run(jobs []*job) (again []*job) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		for _, j := range jobs {
			j.done <- result{err: fmt.Errorf("allocation store: %w", err)}
		}
		return nil
	}
	defer conn.Release()
	g := &group{ctx: ctx, conn: conn.Conn(), pending: &pgx.Batch{}, cache: s.cache, touched: map[string]bool{}}
	g.queue(nil, `BEGIN`)

	type outcome struct {
		j      *job
		raised []messaging.Raised
		err    error
		ran    bool // fn succeeded and its writes are queued
	}
	outcomes := make([]outcome, 0, len(jobs))
	answered := map[*job]bool{}
	uows := map[*job]*unitOfWork{} // of every job whose fn ran
	publishes, allReplayed := false, true
	for _, j := range jobs {
		uow := &unitOfWork{g: g, job: j, writes: &pgx.Batch{}}
		o := outcome{j: j}
		uows[j] = uow
		g.current = j
		err := j.fn(j.ctx, uow)
		if g.failed != nil {
			break // a statement failed: the transaction is aborted, nothing more can run
		}
		if len(uow.cached) > 0 && (err != nil || !verifiable(uow.cached)) {
			// It trusted the cache, and its writes cannot prove it right:
			// it runs again, reading the database.
			j.uncached = true
			again = append(again, j)
			answered[j] = true
			continue
		}
		meta := messaging.MetaFrom(j.ctx)
		inbox := meta.Consumer != "" && meta.MessageID != ""
		if err != nil {
			o.err = mapErr(err) // fn only read: nothing to undo
			// A message handled already fails now for having been applied
			// (a deallocation, say): it is no failure, but a redelivery.
			if inbox && g.handled(meta.Consumer, meta.MessageID) {
				o.err = service.ErrAlreadyHandled
			}
			if g.failed != nil {
				break
			}
			outcomes = append(outcomes, o)
			continue
		}
		if inbox {
			// First, so that a message already handled fails before the rest.
			b := &pgx.Batch{}
			mpostgres.QueueHandled(b, meta.Consumer, meta.MessageID)
			g.queueBatch(j, b)
		}
		allReplayed = allReplayed && meta.Replayed
		var envs []messaging.Envelope
		for _, p := range uow.seen {
			if p.Changed() {
				b := &pgx.Batch{}
				save(b, p)
				g.queueBatch(j, b)
				g.touched[p.SKU] = true
			}
			for _, ev := range p.Events() {
				env, err := s.registry.Envelope(j.ctx, ev)
				if err != nil {
					o.err = err
					break
				}
				envs = append(envs, env)
				o.raised = append(o.raised, messaging.Raised{Envelope: env, Event: ev})
			}
		}
		b := &pgx.Batch{}
		mpostgres.QueueOutbox(b, envs)
		b.QueuedQueries = append(b.QueuedQueries, uow.writes.QueuedQueries...)
		g.queueBatch(j, b)
		publishes = publishes || len(envs) > 0
		o.ran = o.err == nil
		outcomes = append(outcomes, o)
	}

	if g.failed == nil {
		if !publishes && allReplayed {
			// Nothing leaves this transaction, and every message it handles
			// would be handed again were its commit lost in a crash (the
			// inbox forgetting them too): it need not wait for the disk.
			g.queue(nil, `SET LOCAL synchronous_commit = off`)
		}
		// The last writes and the COMMIT, in one round trip: a write that
		// fails (a stale version, an inbox entry taken) aborts the
		// transaction, and the COMMIT after it answers ROLLBACK.
		b := &pgx.Batch{}
		b.Queue(`COMMIT`)
		g.committing = true
		if res, err := g.send(b); err == nil {
			// A transaction that failed answers COMMIT with ROLLBACK, and no
			// error: the tag tells.
			if tag, err := res.Exec(); err != nil {
				g.failed = &failure{err: err}
			} else if tag.String() != "COMMIT" {
				g.failed = &failure{err: errors.New("the transaction was rolled back")}
			}
			res.Close()
		}
	}

	if g.failed == nil {
		for _, o := range outcomes {
			if o.ran {
				s.remember(uows[o.j].seen)
			}
			o.j.done <- result{raised: o.raised, err: o.err}
		}
		if publishes && s.OnCommit != nil {
			s.OnCommit()
		}
		return again
	}

	// Roll back; the job whose write failed gets its error, the others
	// that ran go again.
	if _, err := g.conn.Exec(ctx, `ROLLBACK`); err != nil {
		g.conn.Close(ctx)
	}
	f := g.failed
	ferr := mapErr(f.err)
	if f.job != nil && mpostgres.IsInboxConflict(f.err) {
		ferr = service.ErrAlreadyHandled
	}
	switch {
	case f.job == nil:
		// Whether it committed is unknown: so is what the database holds.
		for _, u := range uows {
			for _, p := range u.seen {
				s.cache.forget(p.SKU)
			}
		}
	case uows[f.job] != nil && len(uows[f.job].cached) > 0:
		// Its writes proved the cache wrong (another instance changed the
		// product, or the order's line was there): it runs again, reading
		// the database.
		for _, r := range uows[f.job].cached {
			s.cache.forget(r.p.SKU)
		}
		f.job.uncached = true
		again = append(again, f.job)
		answered[f.job] = true
	}
	for _, o := range outcomes {
		switch {
		case answered[o.j]:
			continue
		case o.j == f.job:
			o.j.done <- result{err: ferr}
		case !o.ran:
			o.j.done <- result{err: o.err}
		case f.job == nil:
			// Not one job's fault (the connection, the commit): the outcome
			// is unknown to all; they retry, and allocating again is a no-op.
			o.j.done <- result{err: fmt.Errorf("%w: %w", errGroupFailed, ferr)}
		default:
			again = append(again, o.j)
		}
		answered[o.j] = true
	}
	for _, j := range jobs {
		if !answered[j] {
			if j == f.job { // its read failed
				j.done <- result{err: ferr}
				continue
			}
			if f.job == nil {
				j.done <- result{err: fmt.Errorf("%w: %w", errGroupFailed, ferr)}
			} else {
				again = append(again, j)
			}
		}
	}
	return again
}

var errGroupFailed = errors.New("group transaction failed")

// remember puts the products a committed job saw in the cache, as they
// now are in the database.
func (s *Store) remember(seen []*domain.Product) {
	for _, p := range seen {
		switch {
		case p.Changed():
			s.cache.put(p, p.Version+1)
		case p.Version > 0:
			s.cache.put(p, p.Version)
		}
	}
}

// group is a transaction shared by several jobs.
type group struct {
	ctx     context.Context
	conn    *pgx.Conn
	pending *pgx.Batch // statements to send before the next read
	owners  []owner    // of each pending statement
	failed  *failure
	current *job // whose function runs
	cache   *productCache
	touched map[string]bool // skus of the products saved so far
	// committing: the batch being sent ends with the COMMIT.
	committing bool
}

// handled reports whether consumer handled message id already.
func (g *group) handled(consumer, id string) bool {
	b := &pgx.Batch{}
	b.Queue(`SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2)`, consumer, id)
	res, err := g.send(b)
	if err != nil {
		return false
	}
	defer res.Close()
	var handled bool
	if err := res.QueryRow().Scan(&handled); err != nil {
		g.readFailed(err)
		return false
	}
	return handled
}

// readFailed records that a read of the current job failed: the
// transaction is aborted, and no other job can run in it.
func (g *group) readFailed(err error) error {
	if g.failed == nil {
		g.failed = &failure{job: g.current, err: err}
	}
	return err
}

type owner struct {
	job *job // nil for the group's own statements
}

type failure struct {
	job *job // whose statement failed; nil when no job's
	err error
}

func (g *group) queue(j *job, sql string, args ...any) {
	g.pending.Queue(sql, args...)
	g.owners = append(g.owners, owner{job: j})
}

func (g *group) queueBatch(j *job, b *pgx.Batch) {
	for _, q := range b.QueuedQueries {
		g.queue(j, q.SQL, q.Arguments...)
	}
}

// send sends the pending statements, then b's, in one round trip, and
// returns the results of b's. When a pending statement fails, the group
// has failed: send records whose statement it was and returns an error.
func (g *group) send(b *pgx.Batch) (pgx.BatchResults, error) {
	if g.failed != nil {
		return nil, errGroupFailed
	}
	all := &pgx.Batch{QueuedQueries: append(g.pending.QueuedQueries, b.QueuedQueries...)}
	owners := g.owners
	g.pending, g.owners = &pgx.Batch{}, nil
	res := g.conn.SendBatch(g.ctx, all)
	for _, o := range owners {
		if _, err := res.Exec(); err != nil {
			res.Close()
			g.failed = &failure{job: o.job, err: err}
			var pgErr *pgconn.PgError
			if g.committing && !errors.As(err, &pgErr) {
				// Not the statement's error but the connection's: the
				// server may have run the COMMIT sent after it. No job's
				// fault, and the outcome is unknown to all.
				g.failed.job = nil
			}
			return nil, errGroupFailed
		}
	}
	return res, nil
}
