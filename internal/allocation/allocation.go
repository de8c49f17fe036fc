// Package allocation is the allocation service of Architecture Patterns
// with Python, assembled: its store, message bus, outbox relay, broker
// consumer and HTTP API (the book's bootstrap and entrypoints).
//
//	domain/            the model: OrderLine, Batch, Product; commands, events
//	service/           handlers, unit of work and repository ports, bus wiring
//	adapters/sqlite/   the embedded store
//	adapters/postgres/ the production store
//	adapters/http/     the HTTP API
package allocation

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	allochttp "github.com/stockflow/stockflow/internal/allocation/adapters/http"
	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	allocsqlite "github.com/stockflow/stockflow/internal/allocation/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/allocation/service"
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
	*messaging.Runtime
	Bus      *messaging.Bus
	Handlers *service.Handlers
	Registry *messaging.Registry

	store service.Store
	ready func(context.Context) error
	close func()
	log   *slog.Logger
}

// Open opens the service's store, applying migrations, and wires it.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{Registry: service.Messages(), log: cfg.Log}
	var onCommit *func()
	var st messaging.Store
	if cfg.DB != "" {
		pool, err := mpostgres.Connect(ctx, cfg.DB, Name)
		if err != nil {
			return nil, fmt.Errorf("allocation: %w", err)
		}
		store, err := allocpg.Open(ctx, pool, s.Registry)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("allocation: %w", err)
		}
		ob := mpostgres.NewOutbox(pool, Name)
		s.store, st, onCommit = store, ob, &store.OnCommit
		s.ready = func(ctx context.Context) error { return pool.Ping(ctx) }
		s.close = func() { store.Close(); ob.Close(); pool.Close() }
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("allocation: %w", err)
		}
		db, err := msqlite.Open(filepath.Join(cfg.DataDir, Name+".db"))
		if err != nil {
			return nil, fmt.Errorf("allocation: %w", err)
		}
		store, err := allocsqlite.Open(ctx, db, s.Registry)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("allocation: %w", err)
		}
		s.store, st, onCommit = store, msqlite.NewOutbox(db), &store.OnCommit
		s.ready = func(ctx context.Context) error { return db.R.PingContext(ctx) }
		s.close = func() { db.Close() }
	}
	rt, err := messaging.NewRuntime(messaging.RuntimeConfig{
		Name: Name, Registry: s.Registry, Store: st, Transport: cfg.Transport, Log: cfg.Log,
		Inbound: service.Inbound, Replay: cfg.Replay,
		Permanent: service.IsPermanent, Outcome: service.IsOutcome,
	})
	if err != nil {
		s.close()
		return nil, err
	}
	s.Runtime = rt
	s.Handlers = service.NewHandlers(s.store)
	s.Bus = service.NewBus(s.Handlers, cfg.Log, rt.Dispatched)
	rt.Attach(s.Bus)
	*onCommit = rt.Relay.Notify
	if cfg.Metrics != nil {
		m := cfg.Metrics.Service(Name, st)
		rt.SetMetrics(m)
		s.Handlers.OnRetry = m.Retried
	}
	return s, nil
}

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
func (s *Service) Routes(mux *http.ServeMux) {
	api := &allochttp.API{Bus: s.Bus, Views: s.Handlers, Log: s.log}
	api.Register(mux)
}

// Ready reports whether the service can answer.
func (s *Service) Ready(ctx context.Context) error { return s.ready(ctx) }

// Close closes the store.
func (s *Service) Close() { s.close() }
