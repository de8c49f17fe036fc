// Package platform assembles stockflow's services (the book's bootstrap):
// their configuration, the interface the stockflow command runs them
// through, and Assemble, which builds each of the five the same way from
// its own Parts: it opens the store (handing it the relay's doorbell),
// then the handlers over the store, the bus over the handlers, and the
// messaging runtime around the bus, each from what the ones before made.
// OpenDocStore opens the document store of the orders, warehouse, CRM and
// notifications services on SQLite or PostgreSQL.
package platform

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	docpg "github.com/stockflow/stockflow/internal/docstore/postgres"
	docsqlite "github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	"github.com/stockflow/stockflow/internal/metrics"
)

// Config is what every service is opened with.
type Config struct {
	// DB is the PostgreSQL URL (postgres://...), where each service keeps
	// a schema of its own; empty for the embedded default, a SQLite file
	// per service under DataDir.
	DB      string
	DataDir string
	// Transport carries messages in and out.
	Transport messaging.Transport
	Log       *slog.Logger
	// Metrics, when set, observe the service.
	Metrics *metrics.Metrics
	// Replay makes the service's consumer group read again every message
	// the broker keeps, from the oldest (a durable transport only).
	Replay bool
	// NoReceipts stops the service recording a receipt of each message it
	// handles (messaging.Receipt), which the flows service's journal
	// follows.
	NoReceipts bool
}

// Service is a running service, as the stockflow command drives it.
type Service interface {
	// Routes adds the service's HTTP routes to mux.
	Routes(mux httpx.Mux)
	// Recover hands the events a crash left undispatched, committed at
	// least olderThan ago, to their handlers.
	Recover(ctx context.Context, olderThan time.Duration) error
	// Run relays the outbox and consumes the inbound channels until ctx is
	// done.
	Run(ctx context.Context) error
	// Ready reports whether the service can answer.
	Ready(ctx context.Context) error
	// DeadLetters lists the latest messages the service could not handle.
	DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error)
	// FindDeadLetters, RetryDeadLetters and DiscardDeadLetters are the
	// dead-letter console of the service (messaging.Runtime's).
	FindDeadLetters(ctx context.Context, q messaging.DeadLetterQuery) ([]messaging.DeadLetter, error)
	RetryDeadLetters(ctx context.Context, ids []int64, opts messaging.RetryOptions) ([]messaging.RetryResult, error)
	DiscardDeadLetters(ctx context.Context, ids []int64, by string) ([]messaging.DeadLetter, error)
	Close()
}

// StoreHooks are what a service's store calls back, given when it is
// opened: they are made before it.
type StoreHooks struct {
	// Committed is called after each commit that stored messages in the
	// outbox (it wakes the relay).
	Committed func()
	// Retried is called each time a transaction runs again after losing
	// a race.
	Retried func()
}

// Store is what every service's store offers the platform, besides what
// its own service layer uses.
type Store interface {
	// Messaging is the outbox, inbox and dead letters of the same database.
	Messaging() messaging.Store
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close()
}

// Parts are what a service is assembled from: its name, its messages, its
// store, its handlers over the store and the bus that routes messages to
// them. Each service names its own; Assemble puts them together the same
// way for all five (the book's bootstrap).
type Parts[S Store, H any] struct {
	// Name is the service's consumer group, database file and schema.
	Name     string
	Registry *messaging.Registry
	// Inbound are the channels the service consumes.
	Inbound []string
	// Open opens the service's store.
	Open func(ctx context.Context, cfg Config, hooks StoreHooks) (S, error)
	// Handlers returns the service's handlers over its store.
	Handlers func(S) H
	// Bus wires the handlers to a bus that logs to log and records the
	// events it dispatched in dispatched.
	Bus func(h H, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus
}

// Base is an assembled service, but for its HTTP routes: its store,
// handlers and bus, and the messaging runtime around them.
type Base[S Store, H any] struct {
	*messaging.Runtime
	Store    S
	Handlers H
	Bus      *messaging.Bus
}

// Assemble opens the service's store and builds its handlers, bus and
// runtime, each from what the ones before it made.
func Assemble[S Store, H any](ctx context.Context, cfg Config, p Parts[S, H]) (*Base[S, H], error) {
	wake := messaging.NewWake()
	var m *metrics.Service
	hooks := StoreHooks{Committed: wake.Notify}
	if cfg.Metrics != nil {
		m = cfg.Metrics.Service(p.Name)
		hooks.Retried = m.Retried
	}
	store, err := p.Open(ctx, cfg, hooks)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	dispatched := messaging.NewDispatchLog(store.Messaging(), cfg.Log)
	handlers := p.Handlers(store)
	bus := p.Bus(handlers, cfg.Log, dispatched)
	bus.SetReceipts(!cfg.NoReceipts)
	rc := messaging.RuntimeConfig{
		Name: p.Name, Registry: p.Registry, Store: store.Messaging(), Transport: cfg.Transport,
		Log: cfg.Log, Inbound: p.Inbound, Replay: cfg.Replay,
		Bus: bus, Dispatched: dispatched, Wake: wake,
	}
	if m != nil {
		m.WatchOutbox(store.Messaging())
		if timers, ok := store.Messaging().(metrics.Timers); ok {
			m.WatchTimers(timers)
		}
		rc.Metrics = m
	}
	rt, err := messaging.NewRuntime(rc)
	if err != nil {
		store.Close()
		return nil, err
	}
	return &Base[S, H]{Runtime: rt, Store: store, Handlers: handlers, Bus: bus}, nil
}

// Ready implements Service.
func (b *Base[S, H]) Ready(ctx context.Context) error { return b.Store.Ping(ctx) }

// Close implements Service.
func (b *Base[S, H]) Close() { b.Store.Close() }

// OpenDocStore opens the document store of the service name: in the
// PostgreSQL schema name when cfg.DB is set, else in the SQLite file
// name.db under cfg.DataDir.
func OpenDocStore(ctx context.Context, cfg Config, name string, hooks StoreHooks) (docstore.Store, error) {
	if cfg.DB != "" {
		return docpg.Open(ctx, cfg.DB, name, hooks.Committed)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	return docsqlite.Open(ctx, filepath.Join(cfg.DataDir, name+".db"), hooks.Committed)
}

// DocStore returns the Open of Parts for the document store of the service
// name.
func DocStore(name string) func(context.Context, Config, StoreHooks) (docstore.Store, error) {
	return func(ctx context.Context, cfg Config, hooks StoreHooks) (docstore.Store, error) {
		return OpenDocStore(ctx, cfg, name, hooks)
	}
}

// MigrateDocStore creates or upgrades the tables of the service name in
// the PostgreSQL database at dbURL.
func MigrateDocStore(ctx context.Context, dbURL, name string) error {
	pool, err := mpostgres.Connect(ctx, dbURL, name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer pool.Close()
	if err := docpg.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
