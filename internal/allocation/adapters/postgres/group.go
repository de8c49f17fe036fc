package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// transaction: each caller's function in turn, its reads sent as it makes
// them, and its writes gathered (writeSet); then every caller's writes at
// once, one statement per kind of write, with COMMIT, in one round trip.
// A caller that touches a product an earlier caller of the group touched
// waits for the next group: the writes are not made yet, so it would not
// see them. When the writes fail (a version check, an inbox entry, a
// connection), the transaction is rolled back and its callers run again,
// each alone, so that the failure reaches the caller it belongs to.
//
// This is what lets many small transactions share one commit, one disk
// flush and a handful of statements, instead of each paying for its own.

const maxGroup = 64

// groupTimeout bounds one group transaction.
const groupTimeout = 30 * time.Second

type job struct {
	ctx  context.Context
	fn   func(context.Context, service.UnitOfWork) error
	done chan result
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
			next, alone := s.run(group)
			if alone {
				for _, j := range next {
					for rest := []*job{j}; len(rest) > 0; {
						rest, _ = s.run(rest)
					}
				}
				next = nil
			}
			group = next
		}
	}
}

// run runs jobs in one transaction and answers them, but for the jobs it
// returns, to run again: those that waited for a next group, or, when
// alone is true, those to run again each alone after the group failed.
func (s *Store) run(jobs []*job) (again []*job, alone bool) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		for _, j := range jobs {
			j.done <- result{err: fmt.Errorf("allocation store: %w", err)}
		}
		return nil, false
	}
	defer conn.Release()
	g := &group{ctx: ctx, conn: conn.Conn()}
	w := newWriteSet()

	type outcome struct {
		j      *job
		raised []messaging.Raised
		err    error
	}
	var ran, failed []outcome // ran: writes gathered; failed: fn said no
	touched := map[string]bool{}
	allReplayed := true
	for _, j := range jobs {
		uow := &unitOfWork{g: g, w: newWriteSet()}
		err := j.fn(j.ctx, uow)
		if g.readErr != nil {
			// The transaction is broken: what ran goes again, alone.
			again = append(again, j)
			continue
		}
		if err != nil {
			failed = append(failed, outcome{j: j, err: mapErr(err)}) // fn only read: nothing to undo
			continue
		}
		if slices.ContainsFunc(uow.seen, func(p *domain.Product) bool { return touched[p.SKU] }) {
			again = append(again, j) // see the writes of the group first
			continue
		}
		o := outcome{j: j}
		meta := messaging.MetaFrom(j.ctx)
		if meta.Consumer != "" && meta.MessageID != "" {
			w.recordHandled(meta.Consumer, meta.MessageID)
		}
		allReplayed = allReplayed && meta.Replayed
		for _, p := range uow.seen {
			touched[p.SKU] = true
			w.save(p)
			for _, ev := range p.Events() {
				env, err := s.registry.Envelope(j.ctx, ev)
				if err != nil {
					o.err = err
					break
				}
				w.publish(env)
				o.raised = append(o.raised, messaging.Raised{Envelope: env, Event: ev})
			}
		}
		w.mergeViews(uow.w)
		ran = append(ran, o)
	}
	for _, o := range failed {
		o.j.done <- result{err: o.err}
	}
	if g.readErr != nil {
		g.rollback()
		for _, o := range ran {
			again = append(again, o.j)
		}
		return again, true
	}
	if len(ran) == 0 {
		g.rollback()
		return again, false
	}

	b := &pgx.Batch{}
	if !g.begun {
		b.Queue(`BEGIN`)
	}
	w.queue(b)
	if !w.publishes() && allReplayed {
		// Nothing leaves this transaction, and every message it handles
		// would be handed again were its commit lost in a crash (the inbox
		// forgetting them too): it need not wait for the disk.
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
	b.Queue(`COMMIT`)
	g.begun = true
	if err := g.sendAll(b); err != nil {
		g.rollback()
		if len(ran) > 1 {
			for _, o := range ran {
				again = append(again, o.j)
			}
			return again, true
		}
		ferr := mapErr(err)
		if mpostgres.IsInboxConflict(err) {
			ferr = service.ErrAlreadyHandled
		}
		ran[0].j.done <- result{err: ferr}
		return again, false
	}
	g.begun = false
	for _, o := range ran {
		o.j.done <- result{raised: o.raised, err: o.err}
	}
	if w.publishes() && s.OnCommit != nil {
		s.OnCommit()
	}
	return again, false
}

// group is a transaction shared by several jobs.
type group struct {
	ctx     context.Context
	conn    *pgx.Conn
	begun   bool  // BEGIN was sent
	readErr error // a read failed: the transaction is broken
}

// send sends reads, after BEGIN when it is the group's first, in one round
// trip, and returns their results.
func (g *group) send(b *pgx.Batch) (pgx.BatchResults, error) {
	if g.readErr != nil {
		return nil, g.readErr
	}
	if !g.begun {
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: `BEGIN`}}, b.QueuedQueries...)
	}
	res := g.conn.SendBatch(g.ctx, b)
	if !g.begun {
		g.begun = true
		if _, err := res.Exec(); err != nil {
			res.Close()
			g.readErr = err
			return nil, err
		}
	}
	return res, nil
}

// failRead records that a read failed.
func (g *group) failRead(err error) error {
	if err != nil && g.readErr == nil {
		g.readErr = err
	}
	return err
}

// sendAll sends the writes and COMMIT, and checks that the transaction
// committed (a transaction that failed answers COMMIT with ROLLBACK).
func (g *group) sendAll(b *pgx.Batch) error {
	res := g.conn.SendBatch(g.ctx, b)
	var tag pgconn.CommandTag
	var err error
	for range b.Len() {
		if tag, err = res.Exec(); err != nil {
			res.Close()
			return err
		}
	}
	if err := res.Close(); err != nil {
		return err
	}
	if tag.String() != "COMMIT" {
		return errors.New("the transaction was rolled back")
	}
	return nil
}

func (g *group) rollback() {
	if !g.begun {
		return
	}
	if _, err := g.conn.Exec(context.WithoutCancel(g.ctx), `ROLLBACK`); err != nil {
		g.conn.Close(context.WithoutCancel(g.ctx))
	}
	g.begun = false
}
