package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Tx is a transaction of a SQLite store, with the outbox and inbox rows
// of messaging.Tx. A store's own transaction embeds it and adds its
// aggregates (Flush).
type Tx struct{ *sql.Tx }

// Begin starts a write transaction on db.
func (db *DB) Begin(ctx context.Context) (Tx, error) {
	tx, err := db.W.BeginTx(ctx, nil)
	return Tx{tx}, err
}

// AppendOutbox stores envs in the outbox.
func (tx Tx) AppendOutbox(ctx context.Context, envs []messaging.Envelope) error {
	return AppendOutbox(ctx, tx.Tx, envs)
}

// AppendOutbox stores envs in the outbox, in tx; timers not yet due
// (Envelope.DeliverAt) wait apart until they are.
func AppendOutbox(ctx context.Context, tx *sql.Tx, envs []messaging.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	now := time.Now()
	var stmt, timer *sql.Stmt
	defer func() {
		for _, s := range []*sql.Stmt{stmt, timer} {
			if s != nil {
				s.Close()
			}
		}
	}()
	for _, e := range envs {
		var err error
		if e.Scheduled(now) {
			if timer == nil {
				if timer, err = tx.PrepareContext(ctx, `INSERT INTO scheduled
					(id, deliver_at, channel, msg_key, correlation_id, causation_id, occurred_at, payload)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?)`); err != nil {
					return err
				}
			}
			_, err = timer.ExecContext(ctx, e.ID, e.DeliverAt.UnixMicro(), e.Channel, e.Key, e.CorrelationID, e.CausationID, e.OccurredAt.UnixMicro(), []byte(e.Payload))
		} else {
			if stmt == nil {
				if stmt, err = tx.PrepareContext(ctx, `INSERT INTO outbox
					(id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, dispatched)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?)`); err != nil {
					return err
				}
			}
			_, err = stmt.ExecContext(ctx, e.ID, e.Channel, e.Key, e.CorrelationID, e.CausationID, e.OccurredAt.UnixMicro(), []byte(e.Payload), e.Dispatched)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// PromoteDue implements messaging.Scheduler: the timers due at now, the
// earliest first, move into the outbox, to be published (not dispatched
// locally: their service's bus never handles a timer itself).
func (o *Outbox) PromoteDue(ctx context.Context, now time.Time, limit int) (int, error) {
	// Most rounds find nothing due: a read says so without taking the
	// database's one writer from the handlers.
	var due int
	err := o.db.R.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM scheduled WHERE deliver_at <= ? LIMIT 1)`, now.UnixMicro()).Scan(&due)
	if err != nil || due == 0 {
		return 0, err
	}
	var n int64
	err = o.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO outbox
			(id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, dispatched)
			SELECT id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, 1
			FROM scheduled WHERE deliver_at <= ?1 ORDER BY deliver_at, seq LIMIT ?2`, now.UnixMicro(), limit)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM scheduled WHERE seq IN
			(SELECT seq FROM scheduled WHERE deliver_at <= ?1 ORDER BY deliver_at, seq LIMIT ?2)`, now.UnixMicro(), n)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("timers: %w", err)
	}
	return int(n), nil
}

// Scheduled implements messaging.Scheduler.
func (o *Outbox) Scheduled(ctx context.Context) (int, error) {
	var n int
	err := o.db.R.QueryRowContext(ctx, `SELECT count(*) FROM scheduled`).Scan(&n)
	return n, err
}

// Claim records that consumer handled message id, unless the inbox has it
// already (false).
func (tx Tx) Claim(ctx context.Context, consumer, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO inbox (consumer, message_id, handled_at) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, consumer, id, time.Now().UnixMicro())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Commit commits the transaction.
func (tx Tx) Commit(context.Context) error { return tx.Tx.Commit() }

// Rollback abandons the transaction, unless it was committed.
func (tx Tx) Rollback(context.Context) error { return tx.Tx.Rollback() }

// Outbox is the outbox, inbox and dead letters of one database, as the
// relay, the message bus and consumers see them.
type Outbox struct{ db *DB }

// NewOutbox returns the outbox of db.
func NewOutbox(db *DB) *Outbox { return &Outbox{db} }

const envelopeColumns = `id, channel, msg_key, correlation_id, causation_id, occurred_at, payload`

func scanEnvelopes(rows *sql.Rows) ([]messaging.Envelope, error) {
	defer rows.Close()
	var out []messaging.Envelope
	for rows.Next() {
		var e messaging.Envelope
		var at int64
		var payload []byte
		if err := rows.Scan(&e.ID, &e.Channel, &e.Key, &e.CorrelationID, &e.CausationID, &at, &payload); err != nil {
			return nil, err
		}
		e.OccurredAt = time.UnixMicro(at).UTC()
		e.Payload = payload
		out = append(out, e)
	}
	return out, rows.Err()
}

// Unpublished returns up to limit messages not yet published, oldest first.
// The embedded store belongs to one process, and so has one relay.
func (o *Outbox) Unpublished(ctx context.Context, limit int) ([]messaging.Envelope, error) {
	rows, err := o.db.R.QueryContext(ctx, `SELECT `+envelopeColumns+` FROM outbox WHERE published = 0 ORDER BY seq LIMIT ?`, limit)
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
	return o.inChunks(ctx, ids, func(tx *sql.Tx, in string, args []any) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (`+in+`)`, args...)
		return err
	})
}

// mark records column on the rows of ids: the second of the two marks
// (published, dispatched) removes the row, the first sets its flag.
func (o *Outbox) mark(ctx context.Context, column string, ids []string) error {
	other := "dispatched"
	if column == "dispatched" {
		other = "published"
	}
	return o.inChunks(ctx, ids, func(tx *sql.Tx, in string, args []any) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (`+in+`) AND `+other+` = 1`, args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET `+column+` = 1 WHERE id IN (`+in+`)`, args...)
		return err
	})
}

// inChunks runs fn in one transaction on ids, 500 at a time, each chunk as
// its placeholders and their values.
func (o *Outbox) inChunks(ctx context.Context, ids []string, fn func(tx *sql.Tx, in string, args []any) error) error {
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer tx.Rollback()
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		if err := fn(tx, Placeholders(n), args); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		ids = ids[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Undispatched returns up to limit events raised before olderThan ago and
// not yet handed to every local handler (a crash, or a handler that
// failed), oldest first, and counts the attempt. Events that failed
// maxAttempts times are dead-lettered instead and marked dispatched.
func (o *Outbox) Undispatched(ctx context.Context, olderThan time.Duration, limit, maxAttempts int) ([]messaging.Envelope, error) {
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	defer tx.Rollback()
	before := time.Now().Add(-olderThan).UnixMicro()
	now := time.Now().UnixMicro()
	if _, err := tx.ExecContext(ctx, `INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at,
			msg_key, correlation_id, causation_id, occurred_at, attempts)
		SELECT 'local', channel, id, CAST(payload AS TEXT), 'local event handlers failed ' || dispatch_attempts || ' times', ?,
			msg_key, correlation_id, causation_id, occurred_at, dispatch_attempts
		FROM outbox WHERE dispatched = 0 AND dispatch_attempts >= ?`, now, maxAttempts); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE outbox SET dispatched = 1 WHERE dispatched = 0 AND dispatch_attempts >= ?`, maxAttempts); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE published = 1 AND dispatched = 1 AND dispatch_attempts >= ?`, maxAttempts); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `UPDATE outbox SET dispatch_attempts = dispatch_attempts + 1
		WHERE seq IN (SELECT seq FROM outbox WHERE dispatched = 0 AND occurred_at < ? ORDER BY seq LIMIT ?)
		RETURNING `+envelopeColumns+`, seq`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	var out []messaging.Envelope
	var seqs []int64
	for rows.Next() {
		var e messaging.Envelope
		var at, seq int64
		var payload []byte
		if err := rows.Scan(&e.ID, &e.Channel, &e.Key, &e.CorrelationID, &e.CausationID, &at, &payload, &seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("outbox: %w", err)
		}
		e.OccurredAt = time.UnixMicro(at).UTC()
		e.Payload = payload
		out = append(out, e)
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	sortBySeq(out, seqs)
	return out, nil
}

func sortBySeq(envs []messaging.Envelope, seqs []int64) {
	// RETURNING gives no order; put them back in the order they were raised.
	for i := 1; i < len(envs); i++ {
		for j := i; j > 0 && seqs[j] < seqs[j-1]; j-- {
			seqs[j], seqs[j-1] = seqs[j-1], seqs[j]
			envs[j], envs[j-1] = envs[j-1], envs[j]
		}
	}
}

// Depth returns how many messages wait to be published, and when the
// oldest of them was raised.
func (o *Outbox) Depth(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest sql.NullInt64
	err := o.db.R.QueryRowContext(ctx, `SELECT count(*), min(occurred_at) FROM outbox WHERE published = 0`).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox: %w", err)
	}
	var t time.Time
	if oldest.Valid {
		t = time.UnixMicro(oldest.Int64).UTC()
	}
	return n, t, nil
}

// ForgetHandled removes inbox entries older than age: redeliveries come
// within hours, not weeks.
func (o *Outbox) ForgetHandled(ctx context.Context, age time.Duration) error {
	_, err := o.db.W.ExecContext(ctx, `DELETE FROM inbox WHERE handled_at < ?`, time.Now().Add(-age).UnixMicro())
	return err
}

// AddDeadLetter keeps a message that could not be handled, and stores its
// publication on the dead-letter channel in the outbox, in one
// transaction. A message the consumer dead-lettered before fails again:
// the same row, its failures raised.
func (o *Outbox) AddDeadLetter(ctx context.Context, d messaging.DeadLetter) error {
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	defer tx.Rollback()
	var id int64
	err = tx.QueryRowContext(ctx, `UPDATE dead_letters SET payload = ?, reason = ?, failed_at = ?, msg_key = ?, correlation_id = ?,
			causation_id = ?, occurred_at = coalesce(?, occurred_at), attempts = attempts + ?, first_failed_at = coalesce(first_failed_at, ?),
			fingerprint = ?, state = 'failed', failures = failures + 1, archived_at = NULL, archived_by = ''
		WHERE id = (SELECT max(id) FROM dead_letters WHERE consumer = ? AND message_id = ? AND message_id <> '')
		RETURNING id`, d.Payload, d.Reason, d.FailedAt.UnixMicro(), d.Key, d.CorrelationID,
		d.CausationID, micros(d.OccurredAt), d.Attempts, micros(d.FirstFailedAt),
		d.Fingerprint, d.Consumer, d.MessageID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		err = tx.QueryRowContext(ctx, `INSERT INTO dead_letters (consumer, channel, message_id, payload, reason, failed_at,
				msg_key, correlation_id, causation_id, occurred_at, attempts, first_failed_at, fingerprint)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, d.Consumer, d.Channel, d.MessageID, d.Payload, d.Reason, d.FailedAt.UnixMicro(),
			d.Key, d.CorrelationID, d.CausationID, micros(d.OccurredAt), d.Attempts, micros(d.FirstFailedAt), d.Fingerprint).Scan(&id)
	}
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	kept, err := scanDeadLetters(tx.QueryContext(ctx, `SELECT `+deadLetterColumns+` FROM dead_letters WHERE id = ?`, id))
	if err != nil || len(kept) != 1 {
		return fmt.Errorf("dead letters: reading %d back: %w", id, err)
	}
	e := messaging.DeadLetterEnvelope(kept[0])
	// No local handler waits for it: it is dispatched already.
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox
		(id, channel, msg_key, correlation_id, causation_id, occurred_at, payload, dispatched)
		VALUES (?, ?, ?, ?, ?, ?, ?, 1)`,
		e.ID, e.Channel, e.Key, e.CorrelationID, e.CausationID, e.OccurredAt.UnixMicro(), []byte(e.Payload)); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

const deadLetterColumns = `id, consumer, channel, message_id, payload, reason, failed_at,
	msg_key, correlation_id, causation_id, occurred_at, attempts, first_failed_at,
	fingerprint, state, failures, retried, retried_at, archived_at, archived_by`

// scanDeadLetters reads the rows of a query of deadLetterColumns.
func scanDeadLetters(rows *sql.Rows, err error) ([]messaging.DeadLetter, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []messaging.DeadLetter
	for rows.Next() {
		var d messaging.DeadLetter
		var at int64
		var occurred, first, retried, archived sql.NullInt64
		if err := rows.Scan(&d.ID, &d.Consumer, &d.Channel, &d.MessageID, &d.Payload, &d.Reason, &at,
			&d.Key, &d.CorrelationID, &d.CausationID, &occurred, &d.Attempts, &first,
			&d.Fingerprint, &d.State, &d.Failures, &d.Retried, &retried, &archived, &d.ArchivedBy); err != nil {
			return nil, err
		}
		d.FailedAt = time.UnixMicro(at).UTC()
		d.OccurredAt, d.FirstFailedAt = fromMicros(occurred), fromMicros(first)
		d.RetriedAt, d.ArchivedAt = fromMicros(retried), fromMicros(archived)
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeadLetters returns the latest limit dead letters, newest first, in any
// state.
func (o *Outbox) DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error) {
	out, err := scanDeadLetters(o.db.R.QueryContext(ctx, `SELECT `+deadLetterColumns+`
		FROM dead_letters ORDER BY id DESC LIMIT ?`, limit))
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
	states := q.Selected()
	query := `SELECT ` + deadLetterColumns + ` FROM dead_letters WHERE state IN (` + Placeholders(len(states)) + `)`
	var args []any
	for _, s := range states {
		args = append(args, s)
	}
	if q.Consumer != "" {
		query += ` AND consumer = ?`
		args = append(args, q.Consumer)
	}
	if q.Channel != "" {
		query += ` AND channel = ?`
		args = append(args, q.Channel)
	}
	if len(q.IDs) > 0 {
		query += ` AND id IN (` + Placeholders(len(q.IDs)) + `)`
		for _, id := range q.IDs {
			args = append(args, id)
		}
	}
	out, err := scanDeadLetters(o.db.R.QueryContext(ctx, query+` ORDER BY id`, args...))
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return q.Finish(out), nil
}

// MarkDeadLettersRetried marks the dead letters ids retried at.
func (o *Outbox) MarkDeadLettersRetried(ctx context.Context, ids []int64, at time.Time) error {
	return o.markDeadLetters(ctx, ids, `state = 'retried', retried = retried + 1, retried_at = ?`, at.UnixMicro())
}

// ArchiveDeadLetters marks the dead letters ids archived by by at.
func (o *Outbox) ArchiveDeadLetters(ctx context.Context, ids []int64, by string, at time.Time) error {
	return o.markDeadLetters(ctx, ids, `state = 'archived', archived_at = ?, archived_by = ?`, at.UnixMicro(), by)
}

func (o *Outbox) markDeadLetters(ctx context.Context, ids []int64, set string, args ...any) error {
	if len(ids) == 0 {
		return nil
	}
	err := o.inTx(ctx, func(tx *sql.Tx) error {
		for len(ids) > 0 {
			n := min(len(ids), 500)
			a := slices.Clone(args)
			for _, id := range ids[:n] {
				a = append(a, id)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE dead_letters SET `+set+` WHERE id IN (`+Placeholders(n)+`)`, a...); err != nil {
				return err
			}
			ids = ids[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

// micros is t in unix microseconds, or NULL.
func micros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

// fromMicros is the time of unix microseconds, or nil for NULL.
func fromMicros(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.UnixMicro(n.Int64).UTC()
	return &t
}

// inTx runs fn in a write transaction, committed when fn returns nil.
func (o *Outbox) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := o.db.W.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

var _ messaging.DeadLetterStore = (*Outbox)(nil)
