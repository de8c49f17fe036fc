package pggroup

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

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
		jobs := gather(first, s.jobs)
		for len(jobs) > 0 {
			jobs = s.run(jobs)
		}
	}
}

// gather returns first and the jobs waiting, up to maxGroup.
func gather(first *job, waiting <-chan *job) []*job {
	jobs := []*job{first}
	for len(jobs) < maxGroup {
		select {
		case j := <-waiting:
			jobs = append(jobs, j)
		default:
			return jobs
		}
	}
	return jobs
}

// run runs jobs in one transaction and answers them, but for the jobs it
// returns: those to run again, in a new transaction, because another job
// failed this one, or because they trusted the cache and could not prove
// it.
func (s *Store) run(jobs []*job) (again []*job) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	conn, err := s.plain.Pool().Acquire(ctx)
	if err != nil {
		for _, j := range jobs {
			j.done <- result{err: fmt.Errorf("allocation store: %w", err)}
		}
		return nil
	}
	defer conn.Release()
	g := &group{s: s, pipe: &pipeline{ctx: ctx, conn: conn.Conn()}, touched: map[string]bool{}}
	g.pipe.queue(nil, &pgx.QueuedQuery{SQL: `BEGIN`})
	for _, j := range jobs {
		if !g.runJob(j) {
			break // the transaction is aborted: nothing more can run
		}
	}
	if g.pipe.failed == nil {
		g.commit()
	}
	if g.pipe.failed == nil {
		return g.committed()
	}
	return g.rolledBack(jobs)
}

// group is a transaction shared by several jobs.
type group struct {
	s       *Store
	pipe    *pipeline
	touched map[string]bool // skus of the products saved so far
	shares  []*share        // of the jobs run so far, in order
}

// share is a job's part of a group.
type share struct {
	job    *job
	tx     *allocpg.PipelinedTx
	cached []cachedRead // the products it took from the cache
	raised []messaging.Raised
	err    error // its work's: it changed nothing
	ran    bool  // its work succeeded, and its writes are queued
	again  bool  // it trusted the cache and cannot prove it: it runs again
}

// runJob runs j's unit of work (messaging.Work) in the group, and queues
// its writes when it succeeded. It reports false when the transaction
// failed meanwhile.
//
// The sequence is messaging.Work's (inbox, fn, flush, outbox), on a
// PipelinedTx whose writes wait: its inbox entry, queued first, fails
// when the message was handled, and the group then answers
// ErrAlreadyHandled (see rolledBack).
func (g *group) runJob(j *job) bool {
	sh := &share{job: j}
	g.shares = append(g.shares, sh)
	sh.tx = allocpg.NewPipelinedTx(g.s.plain, g.pipe, g.guess(sh))
	sh.raised, sh.err = messaging.Work(j.ctx, sh.tx, func(ctx context.Context, t *allocpg.PipelinedTx) error {
		return j.fn(ctx, t)
	})
	if g.pipe.failedDuring(j, sh.err) {
		return false
	}
	switch {
	case len(sh.cached) > 0 && (sh.err != nil || !proven(sh.cached)):
		// Its writes cannot prove the cache right: it runs again,
		// reading the database.
		j.uncached, sh.again = true, true
	case sh.err != nil:
		sh.err = workFailed(j, sh.tx, sh.err)
		return !g.pipe.failedDuring(j, nil)
	default:
		g.pipe.queue(j, sh.tx.Writes()...)
		for _, p := range sh.tx.Seen() {
			if p.Changed() {
				g.touched[p.SKU] = true
			}
		}
		sh.ran = true
	}
	return true
}

// guess is the postgres.Guess of sh: the cached product, unless the job
// reads the database only or the group changed the product already (the
// database has it as the group left it).
func (g *group) guess(sh *share) allocpg.Guess {
	return func(sku, orderID string) (*domain.Product, bool) {
		if sh.job.uncached || g.touched[sku] {
			return nil, false
		}
		p, ok := g.s.cache.get(sku)
		if ok {
			sh.cached = append(sh.cached, cachedRead{p: p, orderID: orderID})
		}
		return p, ok
	}
}

// workFailed returns the error of a job whose work failed. A message
// handled already fails now for having been applied (a deallocation,
// say): it is no failure, but a redelivery.
func workFailed(j *job, t *allocpg.PipelinedTx, err error) error {
	meta := messaging.MetaFrom(j.ctx)
	if meta.Consumer != "" && meta.MessageID != "" {
		if handled, herr := t.Handled(j.ctx, meta.Consumer, meta.MessageID); herr == nil && handled {
			return messaging.ErrAlreadyHandled
		}
	}
	return allocpg.MapError(err)
}

// commit sends the last writes and the COMMIT in one round trip: a write
// that fails (a stale version, an inbox entry taken) aborts the
// transaction, and the COMMIT after it answers ROLLBACK.
func (g *group) commit() {
	publishes, allReplayed := false, true
	for _, sh := range g.shares {
		if sh.ran {
			publishes = publishes || messaging.Publishes(sh.job.ctx, sh.raised)
			allReplayed = allReplayed && messaging.MetaFrom(sh.job.ctx).Replayed
		}
	}
	if !publishes && allReplayed {
		// Nothing leaves this transaction, and every message it handles
		// would be handed again were its commit lost in a crash (the inbox
		// forgetting them too): it need not wait for the disk.
		g.pipe.queue(nil, &pgx.QueuedQuery{SQL: `SET LOCAL synchronous_commit = off`})
	}
	b := &pgx.Batch{}
	b.Queue(`COMMIT`)
	g.pipe.committing = true
	res := g.pipe.SendBatch(g.pipe.ctx, b)
	defer res.Close()
	// A transaction that failed answers COMMIT with ROLLBACK, and no
	// error: the tag tells.
	tag, err := res.Exec()
	switch {
	case g.pipe.failed != nil: // a pending write's
	case err != nil:
		g.pipe.failed = &failure{err: err}
	case tag.String() != "COMMIT":
		g.pipe.failed = &failure{err: errors.New("the transaction was rolled back")}
	}
}

// committed answers the jobs of a committed group, and returns those to
// run again. The cache learns what the group committed, and Committed is
// called, before the callers hear of it, as messaging.UnitOfWork does.
func (g *group) committed() (again []*job) {
	publishes := false
	for _, sh := range g.shares {
		if sh.ran {
			g.s.cache.remember(sh.tx.Seen())
			publishes = publishes || messaging.Publishes(sh.job.ctx, sh.raised)
		}
	}
	if publishes && g.s.cfg.Committed != nil {
		g.s.cfg.Committed()
	}
	for _, sh := range g.shares {
		switch {
		case sh.again:
			again = append(again, sh.job)
		case sh.ran:
			sh.job.done <- result{raised: sh.raised}
		default:
			sh.job.done <- result{err: sh.err}
		}
	}
	return again
}

// rolledBack rolls back the failed group and answers its jobs, but for
// those it returns, to run again: the job whose statement failed gets its
// error (or runs again, reading the database, when it trusted the cache),
// and the others run again, those whose work failed too (it may have
// failed for what it read of the writes rolled back). When the failure is
// no job's (the connection, the COMMIT), whether the group committed is
// unknown: the jobs are told so, and not run again, which could apply
// them twice; a job whose work failed changed nothing, and gets its error.
func (g *group) rolledBack(jobs []*job) (again []*job) {
	g.pipe.rollback()
	f := g.pipe.failed
	g.forget(f)
	shares := make(map[*job]*share, len(g.shares))
	for _, sh := range g.shares {
		shares[sh.job] = sh
	}
	for _, j := range jobs {
		sh := shares[j]
		switch {
		case sh != nil && sh.again:
			again = append(again, j)
		case j == f.job && sh != nil && len(sh.cached) > 0:
			j.uncached = true // its writes proved the cache wrong
			again = append(again, j)
		case j == f.job:
			j.done <- result{err: failureError(f)}
		case f.job != nil:
			again = append(again, j)
		case sh != nil && sh.err != nil:
			j.done <- result{err: sh.err} // it changed nothing
		default:
			j.done <- result{err: fmt.Errorf("%w: %w", errGroupFailed, allocpg.MapError(f.err))}
		}
	}
	return again
}

// forget drops from the cache what f makes unknown: when f is no job's,
// every product the group saw; when a job's that trusted the cache, the
// products it took from it (another instance changed them, or the order's
// line was there).
func (g *group) forget(f *failure) {
	for _, sh := range g.shares {
		switch {
		case f.job == nil:
			g.s.cache.forget(sh.tx.Seen()...)
		case f.job == sh.job:
			for _, r := range sh.cached {
				g.s.cache.forget(r.p)
			}
		}
	}
}

// failureError is the error of the job whose statement failed the group.
func failureError(f *failure) error {
	if mpostgres.IsInboxConflict(f.err) {
		return messaging.ErrAlreadyHandled
	}
	return allocpg.MapError(f.err)
}
