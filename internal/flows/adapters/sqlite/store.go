// Package sqlite keeps the flows service's journal in SQLite, beside the
// outbox, inbox and dead letters of the shared plumbing.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the journal in a SQLite database.
type Store struct {
	db     *msqlite.DB
	outbox *msqlite.Outbox
}

var _ service.Store = (*Store)(nil)

// Open opens the journal in file, applying its migrations and the
// messaging tables'.
func Open(ctx context.Context, file string) (*Store, error) {
	db, err := msqlite.Open(file)
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	for name, fsys := range map[string]fs.FS{"messaging": msqlite.Migrations(), "flows": sub} {
		if err := db.Migrate(ctx, name, fsys); err != nil {
			db.Close()
			return nil, err
		}
	}
	return &Store{db: db, outbox: msqlite.NewOutbox(db)}, nil
}

// Messaging returns the outbox, inbox and dead letters of the database.
func (s *Store) Messaging() messaging.Store { return s.outbox }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.R.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() { s.db.Close() }

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// RecordMessage implements service.Store.
func (s *Store) RecordMessage(ctx context.Context, m domain.Message) error {
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO journal_messages
		(id, channel, msg_key, correlation_id, causation_id, occurred_at, seen_at, producer, payload, orderid, customer, sku, batchref, qty)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		m.ID, m.Channel, m.Key, m.CorrelationID, m.CausationID, micros(m.OccurredAt), time.Now().UnixMicro(), m.Producer, []byte(m.Payload),
		null(m.Order), null(m.Customer), null(m.SKU), null(m.Batch), m.Qty)
	if err != nil {
		return fmt.Errorf("journaling message %s: %w", m.ID, err)
	}
	return nil
}

// RecordHandling implements service.Store.
func (s *Store) RecordHandling(ctx context.Context, h domain.Handling) error {
	raised, _ := json.Marshal(h.Raised)
	if h.Raised == nil {
		raised = []byte("[]")
	}
	timers, _ := json.Marshal(h.Timers)
	if h.Timers == nil {
		timers = []byte("[]")
	}
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO journal_handlings
		(message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts, timers)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		h.MessageID, h.Handler, h.Outcome, micros(h.At), h.Service, h.DurationMS, string(raised), h.Reason, h.Attempts, string(timers))
	if err != nil {
		return fmt.Errorf("journaling the handling of %s: %w", h.MessageID, err)
	}
	return nil
}

// flowsOf is the SQL selecting the correlation ids q names.
func flowsOf(q service.Query) (string, string) {
	switch {
	case q.Message != "":
		return `SELECT correlation_id FROM journal_messages WHERE id = ?`, q.Message
	case q.Correlation != "":
		return `SELECT ?`, q.Correlation
	case q.Order != "":
		return `SELECT DISTINCT correlation_id FROM journal_messages WHERE orderid = ?`, q.Order
	case q.Customer != "":
		return `SELECT DISTINCT correlation_id FROM journal_messages WHERE customer = ?`, q.Customer
	case q.SKU != "":
		return `SELECT DISTINCT correlation_id FROM journal_messages WHERE sku = ?`, q.SKU
	}
	return `SELECT DISTINCT correlation_id FROM journal_messages WHERE batchref = ?`, q.Batch
}

// Messages implements service.Store.
func (s *Store) Messages(ctx context.Context, q service.Query) ([]domain.Message, []domain.Handling, error) {
	flows, arg := flowsOf(q)
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, channel, msg_key, correlation_id, causation_id, occurred_at, producer, payload
		FROM journal_messages WHERE correlation_id IN (`+flows+`) ORDER BY occurred_at, id LIMIT ?`, arg, q.Limit)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var msgs []domain.Message
	var ids []any
	for rows.Next() {
		var m domain.Message
		var at int64
		var payload []byte
		if err := rows.Scan(&m.ID, &m.Channel, &m.Key, &m.CorrelationID, &m.CausationID, &at, &m.Producer, &payload); err != nil {
			return nil, nil, err
		}
		if at != 0 {
			m.OccurredAt = time.UnixMicro(at).UTC()
		}
		m.Payload = payload
		m.Keys = domain.KeysOf(payload)
		msgs = append(msgs, m)
		ids = append(ids, m.ID)
	}
	if err := rows.Err(); err != nil || len(msgs) == 0 {
		return msgs, nil, err
	}
	hs, err := s.handlings(ctx, ids)
	return msgs, hs, err
}

// handlings returns the handlings of the messages ids, a few hundred a
// query.
func (s *Store) handlings(ctx context.Context, ids []any) ([]domain.Handling, error) {
	var out []domain.Handling
	for len(ids) > 0 {
		n := min(len(ids), 500)
		rows, err := s.db.R.QueryContext(ctx, `SELECT message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts, timers
			FROM journal_handlings WHERE message_id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`) ORDER BY at`, ids[:n]...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h domain.Handling
			var at int64
			var raised, timers string
			if err := rows.Scan(&h.MessageID, &h.Handler, &h.Outcome, &at, &h.Service, &h.DurationMS, &raised, &h.Reason, &h.Attempts, &timers); err != nil {
				rows.Close()
				return nil, err
			}
			h.At = time.UnixMicro(at).UTC()
			_ = json.Unmarshal([]byte(raised), &h.Raised)
			_ = json.Unmarshal([]byte(timers), &h.Timers)
			out = append(out, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return out, nil
}

// scan bounds the latest messages Recent reads to find the latest flows.
const scan = 5000

// Recent implements service.Store.
func (s *Store) Recent(ctx context.Context, q service.RecentQuery) ([]domain.Flow, error) {
	// The flows, latest active first.
	var rows *sql.Rows
	var err error
	if q.Match == "" {
		rows, err = s.db.R.QueryContext(ctx, `SELECT correlation_id, MAX(seen_at) AS last FROM
			(SELECT correlation_id, seen_at FROM journal_messages ORDER BY seen_at DESC LIMIT ?)
			GROUP BY correlation_id ORDER BY last DESC, correlation_id LIMIT ?`, scan, q.Limit)
	} else {
		m := q.Match
		rows, err = s.db.R.QueryContext(ctx, `SELECT correlation_id, MAX(seen_at) AS last FROM journal_messages
			WHERE correlation_id IN (SELECT correlation_id FROM journal_messages
				WHERE id = ? OR correlation_id = ? OR orderid = ? OR customer = ? OR sku = ? OR batchref = ? LIMIT ?)
			GROUP BY correlation_id ORDER BY last DESC, correlation_id LIMIT ?`, m, m, m, m, m, m, scan, q.Limit)
	}
	if err != nil {
		return nil, err
	}
	var ids []any
	for rows.Next() {
		var id string
		var last int64
		if err := rows.Scan(&id, &last); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return nil, err
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	// Each flow's first message, and what it counts.
	rows, err = s.db.R.QueryContext(ctx, `SELECT correlation_id, id, channel, producer, occurred_at, n, last_at, orderid, customer FROM (
		SELECT correlation_id, id, channel, producer, occurred_at,
			COUNT(*) OVER w AS n, MAX(occurred_at) OVER w AS last_at,
			MIN(orderid) OVER w AS orderid, MIN(customer) OVER w AS customer,
			ROW_NUMBER() OVER (PARTITION BY correlation_id ORDER BY occurred_at, id) AS rn
		FROM journal_messages WHERE correlation_id IN (`+in+`)
		WINDOW w AS (PARTITION BY correlation_id)) WHERE rn = 1`, ids...)
	if err != nil {
		return nil, err
	}
	byID := map[string]*domain.Flow{}
	for rows.Next() {
		var f domain.Flow
		var started, last int64
		var order, customer sql.NullString
		if err := rows.Scan(&f.CorrelationID, &f.FirstMessage, &f.FirstChannel, &f.Producer, &started, &f.Messages, &last, &order, &customer); err != nil {
			rows.Close()
			return nil, err
		}
		if started != 0 {
			f.Started = time.UnixMicro(started).UTC()
		}
		if last != 0 {
			f.Last = time.UnixMicro(last).UTC()
		}
		f.Order, f.Customer = order.String, customer.String
		byID[f.CorrelationID] = &f
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The flows a handler gave a message of up.
	rows, err = s.db.R.QueryContext(ctx, `SELECT DISTINCT m.correlation_id FROM journal_messages m
		JOIN journal_handlings h ON h.message_id = m.id
		WHERE h.outcome = ? AND m.correlation_id IN (`+in+`)`, append([]any{domain.DeadLettered}, ids...)...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		if f := byID[id]; f != nil {
			f.Failed = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]domain.Flow, 0, len(ids))
	for _, id := range ids {
		if f := byID[id.(string)]; f != nil {
			out = append(out, *f)
		}
	}
	return out, nil
}

// Traffic implements service.Store.
func (s *Store) Traffic(ctx context.Context, since time.Time) ([]domain.Traffic, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT m.producer, m.channel, COALESCE(h.service, ''), COUNT(DISTINCT m.id),
			COUNT(DISTINCT CASE WHEN h.outcome = 'handled' THEN m.id END),
			COUNT(CASE WHEN h.outcome = 'duplicate' THEN 1 END),
			COUNT(DISTINCT CASE WHEN h.outcome = 'dead_lettered' THEN m.id END)
		FROM journal_messages m LEFT JOIN journal_handlings h ON h.message_id = m.id
		WHERE m.seen_at >= ? GROUP BY 1, 2, 3 ORDER BY 2, 1, 3`, since.UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []domain.Traffic
	for rows.Next() {
		var t domain.Traffic
		if err := rows.Scan(&t.Producer, &t.Channel, &t.Consumer, &t.Messages, &t.Handled, &t.Duplicates, &t.DeadLettered); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Latest implements service.Store.
func (s *Store) Latest(ctx context.Context, channel string) (*domain.Message, error) {
	var m domain.Message
	var at int64
	var payload []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT id, channel, msg_key, correlation_id, causation_id, occurred_at, producer, payload
		FROM journal_messages WHERE channel = ? ORDER BY seen_at DESC LIMIT 1`, channel).
		Scan(&m.ID, &m.Channel, &m.Key, &m.CorrelationID, &m.CausationID, &at, &m.Producer, &payload)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if at != 0 {
		m.OccurredAt = time.UnixMicro(at).UTC()
	}
	m.Payload, m.Keys = payload, domain.KeysOf(payload)
	return &m, nil
}

// Prune implements service.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	tx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	cut := before.UnixMicro()
	if _, err := tx.ExecContext(ctx, `DELETE FROM journal_handlings WHERE message_id IN (SELECT id FROM journal_messages WHERE seen_at < ?)`, cut); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM journal_messages WHERE seen_at < ?`, cut)
	if err != nil {
		return 0, err
	}
	// Handlings of messages the journal never saw (their channel unknown to
	// it), as old.
	if _, err := tx.ExecContext(ctx, `DELETE FROM journal_handlings WHERE at < ? AND message_id NOT IN (SELECT id FROM journal_messages)`, cut); err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), tx.Commit()
}
