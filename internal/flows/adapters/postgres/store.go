// Package postgres keeps the flows service's journal in a PostgreSQL
// schema of its own, beside the outbox, inbox and dead letters of the
// shared plumbing.
package postgres

import (
	"context"
	"embed"
	"errors"
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
	timers := h.Timers
	if timers == nil {
		timers = []domain.Timer{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO journal_handlings
		(message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts, timers)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
		h.MessageID, h.Handler, h.Outcome, h.At, h.Service, h.DurationMS, raised, h.Reason, h.Attempts, timers)
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
	case q.Customer != "":
		return `SELECT DISTINCT correlation_id FROM journal_messages WHERE customer = $1`, q.Customer
	case q.SKU != "":
		return `SELECT DISTINCT correlation_id FROM journal_messages WHERE sku = $1`, q.SKU
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
	rows, err = s.pool.Query(ctx, `SELECT message_id, handler, outcome, at, service, duration_ms, raised, reason, attempts, timers
		FROM journal_handlings WHERE message_id = ANY($1) ORDER BY at`, ids)
	if err != nil {
		return nil, nil, err
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Handling, error) {
		var h domain.Handling
		err := row.Scan(&h.MessageID, &h.Handler, &h.Outcome, &h.At, &h.Service, &h.DurationMS, &h.Raised, &h.Reason, &h.Attempts, &h.Timers)
		h.At = h.At.UTC()
		if len(h.Raised) == 0 {
			h.Raised = nil
		}
		if len(h.Timers) == 0 {
			h.Timers = nil
		}
		for i := range h.Timers {
			h.Timers[i].DueAt = h.Timers[i].DueAt.UTC()
		}
		return h, err
	})
	return msgs, hs, err
}

// scan bounds the latest messages Recent reads to find the latest flows.
const scan = 5000

// Recent implements service.Store.
func (s *Store) Recent(ctx context.Context, q service.RecentQuery) ([]domain.Flow, error) {
	// The flows, latest active first.
	var rows pgx.Rows
	var err error
	if q.Match == "" {
		rows, err = s.pool.Query(ctx, `SELECT correlation_id FROM
			(SELECT correlation_id, seen_at FROM journal_messages ORDER BY seen_at DESC LIMIT $1) AS latest
			GROUP BY correlation_id ORDER BY MAX(seen_at) DESC, correlation_id LIMIT $2`, scan, q.Limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT correlation_id FROM journal_messages
			WHERE correlation_id IN (SELECT correlation_id FROM journal_messages
				WHERE id = $1 OR correlation_id = $1 OR orderid = $1 OR customer = $1 OR sku = $1 OR batchref = $1 LIMIT $2)
			GROUP BY correlation_id ORDER BY MAX(seen_at) DESC, correlation_id LIMIT $3`, q.Match, scan, q.Limit)
	}
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	// Each flow's first message, what it counts, and whether a handler
	// gave one of its messages up.
	rows, err = s.pool.Query(ctx, `SELECT f.correlation_id, f.id, f.channel, f.producer, f.occurred_at, f.n, f.last_at,
			COALESCE(f.orderid, ''), COALESCE(f.customer, ''),
			EXISTS (SELECT 1 FROM journal_messages m JOIN journal_handlings h ON h.message_id = m.id
				WHERE m.correlation_id = f.correlation_id AND h.outcome = 'dead_lettered')
		FROM (SELECT correlation_id, id, channel, producer, occurred_at,
				COUNT(*) OVER w AS n, MAX(occurred_at) OVER w AS last_at,
				MIN(orderid) OVER w AS orderid, MIN(customer) OVER w AS customer,
				ROW_NUMBER() OVER (PARTITION BY correlation_id ORDER BY occurred_at NULLS FIRST, id) AS rn
			FROM journal_messages WHERE correlation_id = ANY($1)
			WINDOW w AS (PARTITION BY correlation_id)) AS f
		WHERE f.rn = 1`, ids)
	if err != nil {
		return nil, err
	}
	flows, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Flow, error) {
		var f domain.Flow
		var started, last *time.Time
		err := row.Scan(&f.CorrelationID, &f.FirstMessage, &f.FirstChannel, &f.Producer, &started, &f.Messages, &last,
			&f.Order, &f.Customer, &f.Failed)
		if started != nil {
			f.Started = started.UTC()
		}
		if last != nil {
			f.Last = last.UTC()
		}
		return f, err
	})
	if err != nil {
		return nil, err
	}
	byID := make(map[string]domain.Flow, len(flows))
	for _, f := range flows {
		byID[f.CorrelationID] = f
	}
	out := make([]domain.Flow, 0, len(ids))
	for _, id := range ids {
		if f, ok := byID[id]; ok {
			out = append(out, f)
		}
	}
	return out, nil
}

// Traffic implements service.Store.
func (s *Store) Traffic(ctx context.Context, since time.Time) ([]domain.Traffic, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.producer, m.channel, COALESCE(h.service, ''), COUNT(DISTINCT m.id),
			COUNT(DISTINCT m.id) FILTER (WHERE h.outcome = 'handled'),
			COUNT(*) FILTER (WHERE h.outcome = 'duplicate'),
			COUNT(DISTINCT m.id) FILTER (WHERE h.outcome = 'dead_lettered')
		FROM journal_messages m LEFT JOIN journal_handlings h ON h.message_id = m.id
		WHERE m.seen_at >= $1 GROUP BY 1, 2, 3 ORDER BY 2, 1, 3`, since)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Traffic, error) {
		var t domain.Traffic
		err := row.Scan(&t.Producer, &t.Channel, &t.Consumer, &t.Messages, &t.Handled, &t.Duplicates, &t.DeadLettered)
		return t, err
	})
}

// Latest implements service.Store.
func (s *Store) Latest(ctx context.Context, channel string) (*domain.Message, error) {
	var m domain.Message
	var at *time.Time
	var payload []byte
	err := s.pool.QueryRow(ctx, `SELECT id, channel, msg_key, correlation_id, causation_id, occurred_at, producer, payload
		FROM journal_messages WHERE channel = $1 ORDER BY seen_at DESC LIMIT 1`, channel).
		Scan(&m.ID, &m.Channel, &m.Key, &m.CorrelationID, &m.CausationID, &at, &m.Producer, &payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if at != nil {
		m.OccurredAt = at.UTC()
	}
	m.Payload, m.Keys = payload, domain.KeysOf(payload)
	return &m, nil
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
