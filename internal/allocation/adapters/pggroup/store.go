// Package pggroup runs the allocation store on PostgreSQL (package
// postgres, the plain store) with group commit and a product cache: the
// same service.Store, for many small transactions at once.
//
// Group commit. Callers of Transact queue their work; a committer takes
// the work waiting, up to 64 callers, and runs it in one database
// transaction: each caller's unit of work (messaging.Work: the inbox
// entry, its function, the products' changes, the outbox) on a
// postgres.PipelinedTx, whose writes wait and go out in the same round
// trip as the next caller's reads, and one COMMIT at the end, with the
// last writes. A caller sees the writes of the callers before it. When a
// caller's write fails (its version check, its inbox entry), the
// transaction is rolled back, that caller gets its error, and the others
// run again in a new group.
//
// The product cache. Allocating is the service's hot path, and what it
// reads (a product's batches, and the order's lines of that sku, which for
// a new line are none) is what the service itself last committed, unless
// another instance changed the product since. So the store remembers each
// product as it committed it, with its version, and a caller may take a
// product from memory instead of reading it, and prove the guess by its
// writes (see cache.go).
//
// Why: a transaction of its own costs each caller a disk flush at its
// COMMIT and three or four round trips. Grouped, many callers share one
// flush; cached, a group of allocations takes a single round trip.
package pggroup

import (
	"context"
	"errors"
	"sync"
	"time"

	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Committers is how many group transactions run at once. Once a group
// takes a single round trip, two keep the database busy while letting the
// callers that arrive meanwhile gather into the next groups: with four,
// groups were smaller and throughput 12% lower.
const Committers = 2

// maxGroup bounds the callers of one group.
const maxGroup = 64

// groupTimeout bounds one group transaction.
const groupTimeout = 30 * time.Second

// Store is the allocation store with group commit and the product cache.
type Store struct {
	plain *allocpg.Store
	cfg   Config
	cache *productCache
	jobs  chan *job
	quit  chan struct{}
	wg    sync.WaitGroup
}

var _ service.Store = (*Store)(nil)

// Config is what a Store needs besides the plain store.
type Config struct {
	// Committed, when set, is called after each commit that stored
	// messages in the outbox (to wake the relay).
	Committed func()
	// Retried, when set, is called each time a caller's work runs again
	// after losing a race.
	Retried func()
}

// New returns the store that groups the transactions of plain, and starts
// its committers; Close stops them.
func New(plain *allocpg.Store, cfg Config) *Store {
	s := &Store{plain: plain, cfg: cfg, cache: newProductCache(), jobs: make(chan *job), quit: make(chan struct{})}
	for range Committers {
		s.wg.Add(1)
		go s.commit()
	}
	return s
}

// Close stops the committers, once the groups under way are done.
func (s *Store) Close() {
	close(s.quit)
	s.wg.Wait()
}

// job is one caller's work, waiting for a group.
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

// Transact implements service.Store. As messaging.UnitOfWork does, it runs
// the work again when it lost a race (messaging.RetryLost).
func (s *Store) Transact(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
	start := time.Now()
	raised, err := messaging.RetryLost(ctx, 0, s.cfg.Retried, func() ([]messaging.Raised, error) { return s.submit(ctx, fn) })
	if errors.Is(err, messaging.ErrAlreadyHandled) {
		s.plain.RecordDuplicate(ctx, start)
	}
	return raised, err
}

// submit runs fn in the next group, and returns its outcome.
func (s *Store) submit(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
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

// Allocations implements service.Store.
func (s *Store) Allocations(ctx context.Context, orderID string) ([]service.AllocationView, error) {
	return s.plain.Allocations(ctx, orderID)
}
