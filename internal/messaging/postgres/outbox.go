package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/messaging"
)

// QueueOutbox queues on b the insertion of envs in the outbox, in their
// order. (One statement a message: for the few messages a transaction
// raises, cheaper than one statement over arrays.)
func QueueOutbox(b *pgx.Batch, envs []messaging.Envelope) {
	now := time.Now()
	for _, e := range envs {
		if e.Scheduled(now) { // a timer: it waits apart until due
			b.Queue(`INSERT INTO scheduled (id, deliver_at, channel, msg_key, correlation_id, causation_id, occurred_at, payload)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				e.ID, e.DeliverAt, e.Channel, e.Key, e.CorrelationID, e.CausationID, e.OccurredAt, []byte(e.Payload))
			continue
		}
		b.Queue(`INSERT INTO outbox (id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, dispatched)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.ID, e.Channel, e.Key, e.CorrelationID, e.CausationID, e.OccurredAt, []byte(e.Payload), e.Dispatched)
	}
}

// PromoteDue implements messaging.Scheduler: the timers due at now, the
// earliest first, move into the outbox in one statement, to be published
// (not dispatched locally: their service's bus never handles a timer
// itself).
func (o *Outbox) PromoteDue(ctx context.Context, now time.Time, limit int) (int, error) {
	tag, err := o.pool.Exec(ctx, `WITH due AS (
			DELETE FROM scheduled WHERE seq IN
				(SELECT seq FROM scheduled WHERE deliver_at <= $1 ORDER BY deliver_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING *)
		INSERT INTO outbox (id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, dispatched)
		SELECT id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, true
		FROM due ORDER BY deliver_at, seq`, now, limit)
	if err != nil {
		return 0, fmt.Errorf("timers: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Scheduled implements messaging.Scheduler.
func (o *Outbox) Scheduled(ctx context.Context) (int, error) {
	var n int
	err := o.pool.QueryRow(ctx, `SELECT count(*) FROM scheduled`).Scan(&n)
	return n, err
}

// QueueHandled queues on b the inbox entry recording that consumer
// handled message id; it fails on a message recorded already
// (IsInboxConflict).
func QueueHandled(b *pgx.Batch, consumer, id string) {
	b.Queue(`INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)`, consumer, id)
}

// Tx is a transaction of a PostgreSQL store, with the outbox and inbox
// rows of messaging.Tx. A store's own transaction embeds it and adds its
// aggregates (Flush).
type Tx struct{ pgx.Tx }

// Begin starts a transaction on pool.
func Begin(ctx context.Context, pool *pgxpool.Pool) (Tx, error) {
	tx, err := pool.Begin(ctx)
	return Tx{tx}, err
}

// AppendOutbox stores envs in the outbox.
func (tx Tx) AppendOutbox(ctx context.Context, envs []messaging.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	QueueOutbox(b, envs)
	return tx.SendBatch(ctx, b).Close()
}

// Claim records that consumer handled message id, unless the inbox has it
// already (false). A transaction handling the same message at the same
// time waits for this one to end.
func (tx Tx) Claim(ctx context.Context, consumer, id string) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, consumer, id)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Outbox is the outbox, inbox and dead letters of one schema, as the
// relay, the message bus and consumers see them. Of several instances'
// relays on one database, one at a time publishes: the one holding the
// relay's advisory lock.
type Outbox struct {
	pool *pgxpool.Pool
	key  int64

	mu     sync.Mutex
	leader *pgxpool.Conn // holds the relay lock while this process relays
}

// NewOutbox returns the outbox of pool's schema, named name (the relay
// lock is per name).
func NewOutbox(pool *pgxpool.Pool, name string) *Outbox {
	return &Outbox{pool: pool, key: lockKey("relay:" + name)}
}

const envelopeColumns = `id, channel, msg_key, correlation_id, causation_id, occurred_at, payload`

func scanEnvelopes(rows pgx.Rows) ([]messaging.Envelope, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (messaging.Envelope, error) {
		var e messaging.Envelope
		var payload []byte
		err := row.Scan(&e.ID, &e.Channel, &e.Key, &e.CorrelationID, &e.CausationID, &e.OccurredAt, &payload)
		e.OccurredAt = e.OccurredAt.UTC()
		e.Payload = payload
		return e, err
	})
}

// lead makes this process the relay when no other is; it reports whether
// it is.
func (o *Outbox) lead(ctx context.Context) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.leader != nil {
		if err := o.leader.Ping(ctx); err == nil {
			return true, nil
		}
		o.leader.Release() // the lock went with the connection
		o.leader = nil
	}
	conn, err := o.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("outbox: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, o.key).Scan(&got); err != nil {
		conn.Release()
		return false, fmt.Errorf("outbox: %w", err)
	}
	if !got {
		conn.Release()
		return false, nil
	}
	o.leader = conn
	return true, nil
}

// Close gives up the relay lock.
func (o *Outbox) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.leader != nil {
		o.leader.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, o.key)
		o.leader.Release()
		o.leader = nil
	}
}

// Unpublished returns up to limit messages not yet published, oldest
// first, when this process is the relay, and none otherwise.
func (o *Outbox) Unpublished(ctx context.Context, limit int) ([]messaging.Envelope, error) {
	if ok, err := o.lead(ctx); !ok || err != nil {
		return nil, err
	}
	rows, err := o.pool.Query(ctx, `SELECT `+envelopeColumns+` FROM outbox WHERE NOT published ORDER BY seq LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	envs, err := scanEnvelopes(rows)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return envs, nil
}

// MarkPublished records that the messages were published.
func (o *Outbox) MarkPublished(ctx context.Context, ids []string) error {
	return o.mark(ctx, "published", ids)
}

// MarkDispatched records that the events were handed to every local
// handler.
func (o *Outbox) MarkDispatched(ctx context.Context, ids []string) error {
	return o.mark(ctx, "dispatched", ids)
}

// MarkDone records that the messages were published and dispatched: they
// leave the outbox.
func (o *Outbox) MarkDone(ctx context.Context, ids []string) error {
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`SET LOCAL synchronous_commit = off`)
		b.Queue(`DELETE FROM outbox WHERE id = ANY($1)`, ids)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// mark records column on the rows of ids: the second of the two marks
// (published, dispatched) removes the row, the first sets its flag.
//
// The relay and the dispatch log may mark the same rows at once. The
// DELETE skips, without waiting, a row the other marks meanwhile, as its
// snapshot shows it unmarked; the UPDATE, though, waits for the other's
// row lock and returns the row as the other left it: a row it finds
// marked by both, it removes too. Losing this commit in a crash only
// means handing the messages again, which their consumers recognise: it
// does not wait for the disk.
func (o *Outbox) mark(ctx context.Context, column string, ids []string) error {
	other := "dispatched"
	if column == "dispatched" {
		other = "published"
	}
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`SET LOCAL synchronous_commit = off`)
		b.Queue(`DELETE FROM outbox WHERE id = ANY($1) AND `+other, ids)
		b.Queue(`UPDATE outbox SET `+column+` = true WHERE id = ANY($1) AND NOT `+column+` RETURNING id, `+other, ids)
		res := tx.SendBatch(ctx, b)
		defer res.Close()
		for range 2 {
			if _, err := res.Exec(); err != nil {
				return err
			}
		}
		rows, err := res.Query()
		if err != nil {
			return err
		}
		var both []string
		for rows.Next() {
			var id string
			var marked bool
			if err := rows.Scan(&id, &marked); err != nil {
				return err
			}
			if marked {
				both = append(both, id)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := res.Close(); err != nil {
			return err
		}
		if len(both) > 0 {
			_, err = tx.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, both)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Undispatched returns up to limit events raised before olderThan ago and
// not yet handed to every local handler, oldest first, and counts the
// attempt. Events that failed maxAttempts times are dead-lettered instead
// and marked dispatched.
func (o *Outbox) Undispatched(ctx context.Context, olderThan time.Duration, limit, maxAttempts int) ([]messaging.Envelope, error) {
	var out []messaging.Envelope
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `WITH failed AS (
				UPDATE outbox SET dispatched = true
				WHERE NOT dispatched AND dispatch_attempts >= $1
				RETURNING channel, id, payload, dispatch_attempts, msg_key, correlation_id, causation_id, occurred_at)
			INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at,
				msg_key, correlation_id, causation_id, occurred_at, attempts)
			SELECT 'local', channel, id, convert_from(payload, 'UTF8'),
				'local event handlers failed ' || dispatch_attempts || ' times', now(),
				msg_key, correlation_id, causation_id, occurred_at, dispatch_attempts
			FROM failed`, maxAttempts)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE published AND dispatched`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE outbox SET dispatch_attempts = dispatch_attempts + 1
			WHERE seq IN (SELECT seq FROM outbox WHERE NOT dispatched AND occurred_at < $1
				ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING `+envelopeColumns+`, seq`, time.Now().Add(-olderThan), limit)
		if err != nil {
			return err
		}
		type row struct {
			env messaging.Envelope
			seq int64
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			var payload []byte
			err := r.Scan(&x.env.ID, &x.env.Channel, &x.env.Key, &x.env.CorrelationID, &x.env.CausationID, &x.env.OccurredAt, &payload, &x.seq)
			x.env.Payload = payload
			x.env.OccurredAt = x.env.OccurredAt.UTC()
			return x, err
		})
		if err != nil {
			return err
		}
		slices.SortFunc(got, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
		out = out[:0]
		for _, r := range got {
			out = append(out, r.env)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return out, nil
}

// Depth returns how many messages wait to be published, and when the
// oldest of them was raised.
func (o *Outbox) Depth(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	if err := o.pool.QueryRow(ctx, `SELECT count(*), min(occurred_at) FROM outbox WHERE NOT published`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox: %w", err)
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, *oldest, nil
}

// ForgetHandled removes inbox entries older than age.
func (o *Outbox) ForgetHandled(ctx context.Context, age time.Duration) error {
	_, err := o.pool.Exec(ctx, `DELETE FROM inbox WHERE handled_at < $1`, time.Now().Add(-age))
	return err
}

// AddDeadLetter keeps a message that could not be handled, and stores its
// publication on the dead-letter channel in the outbox, in one
// transaction. A message the consumer dead-lettered before fails again:
// the same row, its failures raised.
func (o *Outbox) AddDeadLetter(ctx context.Context, d messaging.DeadLetter) error {
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `UPDATE dead_letters SET payload = $1, reason = $2, failed_at = $3, msg_key = $4, correlation_id = $5,
				causation_id = $6, occurred_at = coalesce($7, occurred_at), attempts = attempts + $8,
				first_failed_at = coalesce(first_failed_at, $9), fingerprint = $10, state = 'failed', failures = failures + 1,
				archived_at = NULL, archived_by = ''
			WHERE id = (SELECT max(id) FROM dead_letters WHERE consumer = $11 AND message_id = $12 AND message_id <> '')
			RETURNING id`, d.Payload, d.Reason, d.FailedAt, d.Key, d.CorrelationID,
			d.CausationID, d.OccurredAt, d.Attempts, d.FirstFailedAt, d.Fingerprint, d.Consumer, d.MessageID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			err = tx.QueryRow(ctx, `INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at,
					msg_key, correlation_id, causation_id, occurred_at, attempts, first_failed_at, fingerprint)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
				d.Consumer, d.Channel, d.MessageID, d.Payload, d.Reason, d.FailedAt,
				d.Key, d.CorrelationID, d.CausationID, d.OccurredAt, d.Attempts, d.FirstFailedAt, d.Fingerprint).Scan(&id)
		}
		if err != nil {
			return err
		}
		kept, err := scanDeadLetters(tx.Query(ctx, `SELECT `+deadLetterColumns+` FROM dead_letters WHERE id = $1`, id))
		if err != nil || len(kept) != 1 {
			return fmt.Errorf("reading %d back: %w", id, err)
		}
		e := messaging.DeadLetterEnvelope(kept[0])
		// No local handler waits for it: it is dispatched already.
		_, err = tx.Exec(ctx, `INSERT INTO outbox (id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, dispatched)
			VALUES ($1, $2, $3, $4, $5, $6, $7, true)`,
			e.ID, e.Channel, e.Key, e.CorrelationID, e.CausationID, e.OccurredAt, []byte(e.Payload))
		return err
	})
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

const deadLetterColumns = `id, consumer, channel, message_id, payload, reason, failed_at,
	msg_key, correlation_id, causation_id, occurred_at, attempts, first_failed_at,
	fingerprint, state, failures, retried, retried_at, archived_at, archived_by`

// scanDeadLetters reads the rows of a query of deadLetterColumns.
func scanDeadLetters(rows pgx.Rows, err error) ([]messaging.DeadLetter, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (messaging.DeadLetter, error) {
		var d messaging.DeadLetter
		err := r.Scan(&d.ID, &d.Consumer, &d.Channel, &d.MessageID, &d.Payload, &d.Reason, &d.FailedAt,
			&d.Key, &d.CorrelationID, &d.CausationID, &d.OccurredAt, &d.Attempts, &d.FirstFailedAt,
			&d.Fingerprint, &d.State, &d.Failures, &d.Retried, &d.RetriedAt, &d.ArchivedAt, &d.ArchivedBy)
		d.FailedAt = d.FailedAt.UTC()
		for _, t := range []*time.Time{d.OccurredAt, d.FirstFailedAt, d.RetriedAt, d.ArchivedAt} {
			if t != nil {
				*t = t.UTC()
			}
		}
		return d, err
	})
}

// DeadLetters returns the latest limit dead letters, newest first, in any
// state.
func (o *Outbox) DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error) {
	out, err := scanDeadLetters(o.pool.Query(ctx, `SELECT `+deadLetterColumns+`
		FROM dead_letters ORDER BY id DESC LIMIT $1`, limit))
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	slices.Reverse(out)
	out = messaging.DeadLetterQuery{}.Finish(out)
	slices.Reverse(out)
	return out, nil
}

// FindDeadLetters returns the dead letters q selects, oldest first.
func (o *Outbox) FindDeadLetters(ctx context.Context, q messaging.DeadLetterQuery) ([]messaging.DeadLetter, error) {
	query := `SELECT ` + deadLetterColumns + ` FROM dead_letters WHERE state = ANY($1)
		AND ($2 = '' OR consumer = $2) AND ($3 = '' OR channel = $3) AND (cardinality($4::bigint[]) = 0 OR id = ANY($4))
		ORDER BY id`
	ids := q.IDs
	if ids == nil {
		ids = []int64{}
	}
	out, err := scanDeadLetters(o.pool.Query(ctx, query, q.Selected(), q.Consumer, q.Channel, ids))
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return q.Finish(out), nil
}

// MarkDeadLettersRetried marks the dead letters ids retried at.
func (o *Outbox) MarkDeadLettersRetried(ctx context.Context, ids []int64, at time.Time) error {
	if _, err := o.pool.Exec(ctx, `UPDATE dead_letters SET state = 'retried', retried = retried + 1, retried_at = $2
		WHERE id = ANY($1)`, ids, at); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

// ArchiveDeadLetters marks the dead letters ids archived by by at.
func (o *Outbox) ArchiveDeadLetters(ctx context.Context, ids []int64, by string, at time.Time) error {
	if _, err := o.pool.Exec(ctx, `UPDATE dead_letters SET state = 'archived', archived_at = $2, archived_by = $3
		WHERE id = ANY($1)`, ids, at, by); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

// IsInboxConflict reports whether err is the inbox refusing a message
// recorded already.
func IsInboxConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "inbox_pkey"
}

var _ messaging.DeadLetterStore = (*Outbox)(nil)
