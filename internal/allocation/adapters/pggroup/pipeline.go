package pggroup

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pipeline is the connection of a group transaction (a postgres.Conn):
// the statements it holds back, each with the job that queued it, go out
// ahead of the next batch sent, reads or the COMMIT, in one round trip.
type pipeline struct {
	ctx     context.Context // the group's: a caller's cancelled context must not break the connection
	conn    *pgx.Conn
	pending pgx.Batch
	owners  []*job // of each pending statement; nil for the group's own
	failed  *failure
	// committing: the batch being sent ends with the COMMIT.
	committing bool
}

// failure is what failed a group transaction.
type failure struct {
	job *job // whose statement failed; nil when no job's
	err error
}

var errGroupFailed = errors.New("group transaction failed")

// queue holds back qs, queued by j, for the next batch sent.
func (p *pipeline) queue(j *job, qs ...*pgx.QueuedQuery) {
	p.pending.QueuedQueries = append(p.pending.QueuedQueries, qs...)
	for range qs {
		p.owners = append(p.owners, j)
	}
}

// SendBatch sends the pending statements, then b's, in one round trip,
// and returns the results of b's. When a pending statement fails, the
// group has failed: SendBatch records whose statement it was, and every
// result of b's is an error.
func (p *pipeline) SendBatch(_ context.Context, b *pgx.Batch) pgx.BatchResults {
	if p.failed != nil {
		return failedResults{errGroupFailed}
	}
	all := &pgx.Batch{QueuedQueries: append(p.pending.QueuedQueries, b.QueuedQueries...)}
	owners := p.owners
	p.pending, p.owners = pgx.Batch{}, nil
	res := p.conn.SendBatch(p.ctx, all)
	for _, o := range owners {
		if _, err := res.Exec(); err != nil {
			res.Close()
			p.failed = &failure{job: o, err: err}
			var pgErr *pgconn.PgError
			if p.committing && !errors.As(err, &pgErr) {
				// Not the statement's error but the connection's: the
				// server may have run the COMMIT sent after it. No job's
				// fault, and the outcome is unknown to all.
				p.failed.job = nil
			}
			return failedResults{errGroupFailed}
		}
	}
	return res
}

// failedDuring reports whether the group failed while j ran: a pending
// statement failed, or one of j's reads did, aborting the transaction
// (err, when not nil, is what j's work returned).
func (p *pipeline) failedDuring(j *job, err error) bool {
	if p.failed != nil {
		return true
	}
	pc := p.conn.PgConn()
	if !pc.IsClosed() && pc.TxStatus() != 'E' {
		return false
	}
	if err == nil {
		err = errors.New("a read failed, aborting the transaction")
	}
	p.failed = &failure{job: j, err: err}
	return true
}

// rollback ends the failed transaction, or the connection.
func (p *pipeline) rollback() {
	if p.conn.PgConn().IsClosed() {
		return
	}
	if _, err := p.conn.Exec(p.ctx, `ROLLBACK`); err != nil {
		p.conn.Close(p.ctx)
	}
}

// failedResults are those of a batch that was not sent.
type failedResults struct{ err error }

func (r failedResults) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, r.err }
func (r failedResults) Query() (pgx.Rows, error)         { return nil, r.err }
func (r failedResults) QueryRow() pgx.Row                { return failedRow(r) }
func (r failedResults) Close() error                     { return r.err }
func (r failedResults) Tx() pgx.Tx                       { return nil }

type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }
