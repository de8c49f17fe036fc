// Package platform is what every stockflow service is assembled from: its
// configuration, the interface the stockflow command runs it through, and
// the base of the services kept in a document store (orders, warehouse,
// CRM, notifications): the store, opened on SQLite or PostgreSQL, and the
// messaging runtime around their bus.
package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	docpg "github.com/stockflow/stockflow/internal/docstore/postgres"
	docsqlite "github.com/stockflow/stockflow/internal/docstore/sqlite"
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
}

// Service is a running service, as the stockflow command drives it.
type Service interface {
	// Routes adds the service's HTTP routes to mux.
	Routes(mux *http.ServeMux)
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
	Close()
}

// OpenDocStore opens the document store of the service name: in the
// PostgreSQL schema name when cfg.DB is set, else in the SQLite file
// name.db under cfg.DataDir. notify is called after each commit that
// stored messages (to wake the relay).
func OpenDocStore(ctx context.Context, cfg Config, name string) (docstore.Store, *func(), error) {
	if cfg.DB != "" {
		s, err := docpg.Open(ctx, cfg.DB, name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return s, &s.OnCommit, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	s, err := docsqlite.Open(ctx, filepath.Join(cfg.DataDir, name+".db"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, &s.OnCommit, nil
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

// Spec describes a document-store service to NewBase.
type Spec struct {
	Name     string
	Registry *messaging.Registry
	// Inbound are the channels the service consumes.
	Inbound []string
	// Bus wires the service's handlers over store to a bus that records
	// dispatched events in dispatched.
	Bus func(store docstore.Store, dispatched messaging.DispatchLog) *messaging.Bus
	// Permanent reports whether a handler's error is the message's fault.
	Permanent func(error) bool
}

// Base is a running document-store service, but for its HTTP routes.
type Base struct {
	*messaging.Runtime
	Store docstore.Store
	Bus   *messaging.Bus
}

// NewBase opens the service's store and wires its bus and runtime.
func NewBase(ctx context.Context, cfg Config, spec Spec) (*Base, error) {
	store, onCommit, err := OpenDocStore(ctx, cfg, spec.Name)
	if err != nil {
		return nil, err
	}
	rt, err := messaging.NewRuntime(messaging.RuntimeConfig{
		Name: spec.Name, Registry: spec.Registry, Store: store.Messaging(), Transport: cfg.Transport,
		Log: cfg.Log, Inbound: spec.Inbound, Replay: cfg.Replay, Permanent: spec.Permanent,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	b := &Base{Runtime: rt, Store: store, Bus: spec.Bus(store, rt.Dispatched)}
	rt.Attach(b.Bus)
	*onCommit = rt.Relay.Notify
	if cfg.Metrics != nil {
		rt.SetMetrics(cfg.Metrics.Service(spec.Name, store.Messaging()))
	}
	return b, nil
}

// Ready implements Service.
func (b *Base) Ready(ctx context.Context) error { return b.Store.Ping(ctx) }

// Close implements Service.
func (b *Base) Close() { b.Store.Close() }

// IgnoreHandled treats a message the inbox says was handled as done.
func IgnoreHandled(raised []messaging.Raised, err error) ([]messaging.Raised, error) {
	if errors.Is(err, docstore.ErrAlreadyHandled) {
		return nil, nil
	}
	return raised, err
}

// Aggregate is what a document-store service keeps: it knows whether it
// changed since it was loaded, and the events it raised meanwhile.
type Aggregate interface {
	Changed() bool
	Events() []any
}

// Save stores a, if it changed, as the document kind/id read at version
// (0: new), found by index, with the events it raised, in the outbox of
// the same transaction.
func Save(ctx context.Context, tx docstore.Tx, reg *messaging.Registry, kind, id string, version int64, index string, a Aggregate) error {
	if !a.Changed() {
		return nil
	}
	if err := docstore.Save(ctx, tx, kind, id, version, index, a); err != nil {
		return err
	}
	for _, ev := range a.Events() {
		env, err := reg.Envelope(ctx, ev)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, id, err)
		}
		tx.Raise(messaging.Raised{Envelope: env, Event: ev})
	}
	return nil
}
