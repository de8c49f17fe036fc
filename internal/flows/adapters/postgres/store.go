// Package postgres keeps the flows service's journal in a PostgreSQL
// schema of its own, beside the outbox, inbox and dead letters of the
// shared plumbing.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the journal in a PostgreSQL schema.
type Store struct {
	pool   *pgxpool.Pool
	outbox *mpostgres.Outbox
}

var _ service.Store = (*Store)(nil)

// Migrate creates or upgrades the journal's tables in pool's schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := mpostgres.Migrate(ctx, pool, "messaging", mpostgres.Migrations()); err != nil {
		return err
	}
	sub, _ := fs.Sub(migrations, "migrations")
	return mpostgres.Migrate(ctx, pool, "flows", sub)
}

// Open opens the journal on pool, in the schema name, applying the
// migrations.
func Open(ctx context.Context, pool *pgxpool.Pool, name string) (*Store, error) {
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	return &Store{pool: pool, outbox: mpostgres.NewOutbox(pool, name)}, nil
}

// Messaging returns the outbox, inbox and dead letters of the schema.
func (s *Store) Messaging() messaging.Store { return s.outbox }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes the pool.
func (s *Store) Close() {
	s.outbox.Close()
	s.pool.Close()
}

func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// RecordMessage implements service.Store.
func (s *Store) RecordMessage(ctx context.Context, m domain.Message) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO journal_messages
		(id, channel, msg_key, correlation_id, causation_id, occurred_at, producer, payload, orderid, customer, sku, batchref, qty)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
		m.ID, m.Channel, m.Key, m.CorrelationID, m.CausationID, nullTime(m.OccurredAt), m.Producer, []byte(m.Payload),
		null(m.Order), null(m.Customer), null(m.SKU), null(m.Batch), m.Qty)
	if err != nil {
		return fmt.Errorf("journaling message %s: %w", m.ID, err)
	}
	return nil
}

// RecordHandling implements service.Store.
func (s *Store) RecordHandling(ctx context.Context, h domain.Handling) error {
	raised := h.Raised
	if raised == nil {
		raised = []string{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO journal_handlings
		(message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		h.MessageID, h.Handler, h.Outcome, h.At, h.Service, h.DurationMS, raised, h.Reason, h.Attempts)
	if err != nil {
		return fmt.Errorf("journaling the handling of %s: %w", h.MessageID, err)
	}
	return nil
}

// flowsOf is the SQL selecting the correlation ids q names ($1).
func flowsOf(q service.Query) (string, string) {
	switch {
	case q.Message != "":
		return `SELECT correlation_id FROM journal_messages WHERE id = $1`, q.Message
	case q.Correlation != "":
		return `SELECT $1::text`, q.Correlation
	case q.Order != "":
		return `SELECT DISTINCT correlation_id FROM journal_messages WHERE orderid = $1`, q.Order
	}
	return `SELECT DISTINCT correlation_id FROM journal_messages WHERE batchref = $1`, q.Batch
}

// Messages implements service.Store.
func (s *Store) Messages(ctx context.Context, q service.Query) ([]domain.Message, []domain.Handling, error) {
	flows, arg := flowsOf(q)
	rows, err := s.pool.Query(ctx, `SELECT id, channel, msg_key, correlation_id, causation_id, occurred_at, producer, payload
		FROM journal_messages WHERE correlation_id IN (`+flows+`) ORDER BY occurred_at NULLS FIRST, id LIMIT $2`, arg, q.Limit)
	if err != nil {
		return nil, nil, err
	}
	var ids []string
	msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Message, error) {
		var m domain.Message
		var at *time.Time
		var payload []byte
		if err := row.Scan(&m.ID, &m.Channel, &m.Key, &m.CorrelationID, &m.CausationID, &at, &m.Producer, &payload); err != nil {
			return m, err
		}
		if at != nil {
			m.OccurredAt = at.UTC()
		}
		m.Payload, m.Keys = payload, domain.KeysOf(payload)
		ids = append(ids, m.ID)
		return m, nil
	})
	if err != nil || len(msgs) == 0 {
		return msgs, nil, err
	}
	rows, err = s.pool.Query(ctx, `SELECT message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts
		FROM journal_handlings WHERE message_id = ANY($1) ORDER BY at`, ids)
	if err != nil {
		return nil, nil, err
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Handling, error) {
		var h domain.Handling
		err := row.Scan(&h.MessageID, &h.Handler, &h.Outcome, &h.At, &h.Service, &h.DurationMS, &h.Raised, &h.Reason, &h.Attempts)
		h.At = h.At.UTC()
		if len(h.Raised) == 0 {
			h.Raised = nil
		}
		return h, err
	})
	return msgs, hs, err
}

// Prune implements service.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM journal_handlings h USING journal_messages m WHERE h.message_id = m.id AND m.seen_at < $1`, before); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM journal_messages WHERE seen_at < $1`, before)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		_, err = tx.Exec(ctx, `DELETE FROM journal_handlings h WHERE h.at < $1 AND NOT EXISTS (SELECT 1 FROM journal_messages m WHERE m.id = h.message_id)`, before)
		return err
	})
	return n, err
}
