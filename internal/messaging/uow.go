package messaging

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// The unit of work (the book's chapter 6, with the outbox of chapter 8
// and the inbox that makes handling idempotent): one transaction in which a
// handler's changes, the messages they raised and the record of the
// message being handled are committed together, or not at all. Every
// service and every store runs it here; a store adapter supplies only the
// transaction (Tx): its aggregates, its outbox rows and its inbox rows.

var (
	// ErrAlreadyHandled: the consumer the context names already handled the
	// message it carries (the inbox); nothing was changed.
	ErrAlreadyHandled = errors.New("message already handled")
	// ErrConcurrentUpdate: another transaction changed what this one read
	// first. The unit of work runs again; a caller sees it only when the
	// retries ran out.
	ErrConcurrentUpdate = fail.New(fail.Unavailable, "changed concurrently")
)

// Tx is one transaction of a store, as the unit of work drives it.
type Tx interface {
	// Claim records that consumer handled message id; it reports false,
	// changing nothing, when the inbox has the message already.
	Claim(ctx context.Context, consumer, id string) (bool, error)
	// Flush saves what the transaction's aggregates changed (failing with
	// ErrConcurrentUpdate when another transaction changed one first) and
	// returns the messages they raised, in order.
	Flush(ctx context.Context) ([]Raised, error)
	// AppendOutbox stores msgs in the outbox.
	AppendOutbox(ctx context.Context, msgs []Envelope) error
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// UnitOfWork runs work in transactions of type T.
type UnitOfWork[T Tx] struct {
	cfg UnitOfWorkConfig[T]
}

// UnitOfWorkConfig is what a UnitOfWork is made of.
type UnitOfWorkConfig[T Tx] struct {
	// Begin starts a transaction.
	Begin func(ctx context.Context) (T, error)
	// Lost reports whether an error of the database means the transaction
	// lost a race (SQLite busy, a PostgreSQL serialization failure): it is
	// run again, as for ErrConcurrentUpdate.
	Lost func(error) bool
	// Committed is called after each commit that stored messages in the
	// outbox (Relay.Notify: they are waiting).
	Committed func()
	// Retried is called each time a transaction runs again.
	Retried func()
	// MaxAttempts bounds the runs of a transaction that keeps losing races
	// (default MaxTransactAttempts).
	MaxAttempts int
}

// MaxTransactAttempts is how many times, by default, a unit of work runs a
// transaction that keeps losing races.
const MaxTransactAttempts = 20

// NewUnitOfWork returns the unit of work of cfg.
func NewUnitOfWork[T Tx](cfg UnitOfWorkConfig[T]) *UnitOfWork[T] {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = MaxTransactAttempts
	}
	return &UnitOfWork[T]{cfg: cfg}
}

// Transact runs fn in a transaction and commits what it changed, with the
// messages raised, and returns those. When fn or the store lose a race the
// whole transaction runs again, fn included, after a short random wait.
// When the context names a consumer and a message (Meta), the message is
// recorded as handled in the same transaction, and Transact returns
// ErrAlreadyHandled, changing nothing, if it already was.
func (u *UnitOfWork[T]) Transact(ctx context.Context, fn func(context.Context, T) error) ([]Raised, error) {
	return RetryLost(ctx, u.cfg.MaxAttempts, u.cfg.Retried, func() ([]Raised, error) {
		raised, err := u.once(ctx, fn)
		if u.cfg.Lost != nil && err != nil && !errors.Is(err, ErrConcurrentUpdate) && u.cfg.Lost(err) {
			err = fmt.Errorf("%w: %w", ErrConcurrentUpdate, err)
		}
		return raised, err
	})
}

// RetryLost runs once again while it fails with ErrConcurrentUpdate, up to
// maxAttempts runs in all (MaxTransactAttempts when 0), after a short
// random wait that grows with the attempts so that racing writers part
// ways; retried, when set, is called before each new run. It is the one
// policy for transactions that lost a race, whatever the store.
func RetryLost(ctx context.Context, maxAttempts int, retried func(), once func() ([]Raised, error)) ([]Raised, error) {
	if maxAttempts <= 0 {
		maxAttempts = MaxTransactAttempts
	}
	for attempt := 1; ; attempt++ {
		raised, err := once()
		if !errors.Is(err, ErrConcurrentUpdate) || attempt == maxAttempts {
			return raised, err
		}
		if retried != nil {
			retried()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond)))):
		}
	}
}

func (u *UnitOfWork[T]) once(ctx context.Context, fn func(context.Context, T) error) ([]Raised, error) {
	tx, err := u.cfg.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	start := time.Now()
	raised, err := Work(ctx, tx, fn)
	if errors.Is(err, ErrAlreadyHandled) && MetaFrom(ctx).wantsReceipt() {
		tx.Rollback(context.WithoutCancel(ctx))
		u.RecordDuplicate(ctx, start)
	}
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	if Publishes(ctx, raised) && u.cfg.Committed != nil {
		u.cfg.Committed()
	}
	return raised, nil
}

// RecordDuplicate records a receipt of the message ctx carries as a
// duplicate, handled since start: the inbox skipped it. It is the
// journal's, and best effort: a receipt lost changes nothing the message
// did. Transact records one itself; a store that runs Work its own way
// (group commit) calls it.
func (u *UnitOfWork[T]) RecordDuplicate(ctx context.Context, start time.Time) {
	if !MetaFrom(ctx).wantsReceipt() {
		return
	}
	tx, err := u.cfg.Begin(ctx)
	if err != nil {
		return
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if tx.AppendOutbox(ctx, []Envelope{receipt(MetaFrom(ctx), OutcomeDuplicate, start, nil)}) == nil && tx.Commit(ctx) == nil && u.cfg.Committed != nil {
		u.cfg.Committed()
	}
}

// Publishes reports whether a unit of work that handled the message ctx
// carries, and raised raised, stored messages in the outbox: what it
// raised, or the message's receipt.
func Publishes(ctx context.Context, raised []Raised) bool {
	return len(raised) > 0 || MetaFrom(ctx).wantsReceipt()
}

// Work is the unit of work's sequence inside an open transaction, but for
// the commit: the inbox, fn, the aggregates' changes, the outbox. A store
// that commits the work of several callers in one transaction (group
// commit) runs it for each.
func Work[T Tx](ctx context.Context, tx T, fn func(context.Context, T) error) ([]Raised, error) {
	start := time.Now()
	meta := MetaFrom(ctx)
	if meta.Consumer != "" && meta.MessageID != "" {
		// First, so that a duplicate handled at the same time waits on
		// this entry, or is refused.
		claimed, err := tx.Claim(ctx, meta.Consumer, meta.MessageID)
		if err != nil {
			return nil, fmt.Errorf("inbox: %w", err)
		}
		if !claimed {
			return nil, ErrAlreadyHandled
		}
	}
	if err := fn(ctx, tx); err != nil {
		return nil, err
	}
	raised, err := tx.Flush(ctx)
	if err != nil {
		return nil, err
	}
	envs := make([]Envelope, len(raised), len(raised)+1)
	for i, r := range raised {
		envs[i] = r.Envelope
	}
	if meta.wantsReceipt() {
		envs = append(envs, receipt(meta, OutcomeHandled, start, raised))
	}
	if len(envs) > 0 {
		if err := tx.AppendOutbox(ctx, envs); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	return raised, nil
}

// IgnoreHandled treats a message the inbox says was handled as done.
func IgnoreHandled(raised []Raised, err error) ([]Raised, error) {
	if errors.Is(err, ErrAlreadyHandled) {
		return nil, nil
	}
	return raised, err
}
