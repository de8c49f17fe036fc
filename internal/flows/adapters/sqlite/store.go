// Package sqlite keeps the flows service's journal in SQLite, beside the
// outbox, inbox and dead letters of the shared plumbing.
package sqlite

import (
	"context"
	"embed"
	"encoding/json"
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
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO journal_handlings
		(message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		h.MessageID, h.Handler, h.Outcome, micros(h.At), h.Service, h.DurationMS, string(raised), h.Reason, h.Attempts)
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
		rows, err := s.db.R.QueryContext(ctx, `SELECT message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts
			FROM journal_handlings WHERE message_id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`) ORDER BY at`, ids[:n]...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h domain.Handling
			var at int64
			var raised string
			if err := rows.Scan(&h.MessageID, &h.Handler, &h.Outcome, &at, &h.Service, &h.DurationMS, &raised, &h.Reason, &h.Attempts); err != nil {
				rows.Close()
				return nil, err
			}
			h.At = time.UnixMicro(at).UTC()
			_ = json.Unmarshal([]byte(raised), &h.Raised)
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
