package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

// PipelinedTx is one caller's share of a database transaction that
// whoever runs it (package pggroup) begins and commits: a messaging.Tx
// whose reads go out through a Conn, and whose writes wait. Run through
// messaging.Work, it queues, in the order of the unit of work, the inbox
// entry (Claim), the products' changes and the read model's (Flush) and
// the outbox's rows (AppendOutbox); Writes returns them, for the runner to
// send with whatever comes next (another caller's reads, the COMMIT).
//
// As its writes are not sent yet when Claim answers, Claim cannot know
// whether the inbox has the message: it answers true, and the inbox entry
// it queues fails its statement if the inbox had it
// (mpostgres.IsInboxConflict), failing the transaction.
type PipelinedTx struct {
	unit
	writes pgx.Batch
}

var _ messaging.Tx = (*PipelinedTx)(nil)

// NewPipelinedTx returns a transaction of s whose reads go to conn, and
// that takes the products guess offers as read (guess may be nil).
func NewPipelinedTx(s *Store, conn Conn, guess Guess) *PipelinedTx {
	return &PipelinedTx{unit: unit{conn: conn, registry: s.registry, guess: guess}}
}

// Claim implements messaging.Tx: it queues the inbox entry, which fails
// if consumer handled message id already, and answers true.
func (t *PipelinedTx) Claim(_ context.Context, consumer, id string) (bool, error) {
	mpostgres.QueueHandled(&t.writes, consumer, id)
	return true, nil
}

// Flush implements messaging.Tx: it queues the writes of what the
// products changed, then the read model's.
func (t *PipelinedTx) Flush(ctx context.Context) ([]messaging.Raised, error) {
	return t.flush(ctx, &t.writes)
}

// AppendOutbox implements messaging.Tx: it queues the outbox's rows.
func (t *PipelinedTx) AppendOutbox(_ context.Context, envs []messaging.Envelope) error {
	mpostgres.QueueOutbox(&t.writes, envs)
	return nil
}

// Handled reports whether consumer handled message id already, as the
// transaction sees the inbox: what Claim could not tell. Whoever runs the
// transaction asks it when the work failed, to tell a message handled
// already, which fails now for having been applied (a deallocation
// delivered again), from a failure.
func (t *PipelinedTx) Handled(ctx context.Context, consumer, id string) (bool, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2)`, consumer, id)
	res := t.conn.SendBatch(ctx, b)
	defer res.Close()
	var handled bool
	err := res.QueryRow().Scan(&handled)
	return handled, err
}

// Commit implements messaging.Tx, and fails: the runner commits.
func (t *PipelinedTx) Commit(context.Context) error {
	return errors.New("a pipelined transaction is committed by whoever runs it")
}

// Rollback implements messaging.Tx: writes not taken are dropped.
func (t *PipelinedTx) Rollback(context.Context) error { return nil }

// Writes returns the statements queued, in order.
func (t *PipelinedTx) Writes() []*pgx.QueuedQuery { return t.writes.QueuedQueries }

// Seen returns the products the transaction read, took from its Guess, or
// added: once its writes are committed, as Flush saved them.
func (t *PipelinedTx) Seen() []*domain.Product { return t.seen }
