// Package allocation is the allocation service of Architecture Patterns
// with Python, assembled: its store, message bus, outbox relay, broker
// consumer and HTTP API (the book's bootstrap and entrypoints).
//
//	domain/            the model: OrderLine, Batch, Product; commands, events
//	service/           handlers, unit of work and repository ports, bus wiring
//	adapters/sqlite/   the embedded store
//	adapters/postgres/ the production store
//	adapters/pggroup/  group commit and the product cache over it
//	adapters/http/     the HTTP API
package allocation

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	allochttp "github.com/stockflow/stockflow/internal/allocation/adapters/http"
	"github.com/stockflow/stockflow/internal/allocation/adapters/pggroup"
	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	allocsqlite "github.com/stockflow/stockflow/internal/allocation/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
	"github.com/stockflow/stockflow/internal/platform"
)

// Name is the service's name: its consumer group and its database file.
const Name = "allocation"

// Config configures the service.
type Config = platform.Config

// Service is a running allocation service.
type Service struct {
	*platform.Base[Store, *service.Handlers]
	Registry *messaging.Registry
	log      *slog.Logger
}

// Store is the allocation service's store, on either database.
type Store interface {
	service.Store
	platform.Store
}

// Options are the allocation service's own settings.
type Options struct {
	// Backorders says how waiting lines are served when stock comes
	// (domain.Strict unless set).
	Backorders domain.Policy
}

// Open opens the service's store, applying migrations, and wires it.
func Open(ctx context.Context, cfg Config, opts Options) (*Service, error) {
	reg := service.Messages()
	base, err := platform.Assemble(ctx, cfg, platform.Parts[Store, *service.Handlers]{
		Name: Name, Registry: reg, Inbound: service.Inbound,
		Open: func(ctx context.Context, cfg Config, hooks platform.StoreHooks) (Store, error) {
			return openStore(ctx, cfg, reg, hooks)
		},
		Handlers: func(st Store) *service.Handlers {
			h := service.NewHandlers(st)
			h.Policy = opts.Backorders
			return h
		},
		Bus: service.NewBus,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Base: base, Registry: reg, log: cfg.Log}, nil
}

// openStore opens the store: in PostgreSQL when cfg.DB is set, else in the
// SQLite file allocation.db under cfg.DataDir.
func openStore(ctx context.Context, cfg Config, reg *messaging.Registry, hooks platform.StoreHooks) (Store, error) {
	if cfg.DB != "" {
		pool, err := mpostgres.Connect(ctx, cfg.DB, Name)
		if err != nil {
			return nil, err
		}
		plain, err := allocpg.Open(ctx, pool, reg, hooks.Committed)
		if err != nil {
			pool.Close()
			return nil, err
		}
		// Group commit and the product cache over the plain store: many
		// small transactions share a flush and a round trip.
		grouped := pggroup.New(plain, pggroup.Config{Committed: hooks.Committed, Retried: hooks.Retried})
		return pgStore{grouped, pool, mpostgres.NewOutbox(pool, Name)}, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	db, err := msqlite.Open(filepath.Join(cfg.DataDir, Name+".db"))
	if err != nil {
		return nil, err
	}
	store, err := allocsqlite.Open(ctx, db, allocsqlite.Config{Registry: reg, Committed: hooks.Committed, Retried: hooks.Retried})
	if err != nil {
		db.Close()
		return nil, err
	}
	return store, nil
}

// pgStore is the PostgreSQL store with its pool and messaging tables.
type pgStore struct {
	*pggroup.Store
	pool   *pgxpool.Pool
	outbox *mpostgres.Outbox
}

func (s pgStore) Messaging() messaging.Store     { return s.outbox }
func (s pgStore) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
func (s pgStore) Close()                         { s.Store.Close(); s.outbox.Close(); s.pool.Close() }

// Migrate creates or upgrades the service's tables in the PostgreSQL
// database at dbURL.
func Migrate(ctx context.Context, dbURL string) error {
	pool, err := mpostgres.Connect(ctx, dbURL, Name)
	if err != nil {
		return fmt.Errorf("allocation: %w", err)
	}
	defer pool.Close()
	return allocpg.Migrate(ctx, pool)
}

// Routes adds the service's HTTP routes to mux.
func (s *Service) Routes(mux httpx.Mux) {
	api := &allochttp.API{Bus: s.Bus, Views: s.Handlers, Log: s.log}
	api.Register(mux)
}
