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
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	allochttp "github.com/stockflow/stockflow/internal/allocation/adapters/http"
	allocpg "github.com/stockflow/stockflow/internal/allocation/adapters/postgres"
	allocsqlite "github.com/stockflow/stockflow/internal/allocation/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
	"github.com/stockflow/stockflow/internal/metrics"
)

// Name is the service's name: its consumer group and its database file.
const Name = "allocation"

// Config configures the service.
type Config struct {
	// DB is the PostgreSQL URL of the store (postgres://...); empty for
	// the embedded SQLite database under DataDir.
	DB string
	// DataDir holds the SQLite database (allocation.db) when DB is empty.
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

// Service is a running allocation service.
type Service struct {
	Bus      *messaging.Bus
	Handlers *service.Handlers
	Registry *messaging.Registry
	Relay    *messaging.Relay
	Consumer *messaging.Consumer

	dispatched *messaging.BufferedDispatchLog
	store      service.Store
	outbox     outbox
	ready      func(context.Context) error
	close      func()
	transport  messaging.Transport
	replay     bool
	log        *slog.Logger
}

// outbox is what the service needs of its store's messaging tables.
type outbox interface {
	messaging.Outbox
	messaging.DispatchLog
	messaging.DeadLetters
	Undispatched(ctx context.Context, olderThan time.Duration, limit, maxAttempts int) ([]messaging.Envelope, error)
	ForgetHandled(ctx context.Context, age time.Duration) error
	Depth(ctx context.Context) (int, time.Time, error)
}

// Open opens the service's store, applying migrations, and wires it.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{Registry: service.Messages(), transport: cfg.Transport, replay: cfg.Replay, log: cfg.Log}
	if _, ok := cfg.Transport.(messaging.Rewinder); cfg.Replay && !ok {
		return nil, fmt.Errorf("allocation: --replay: the broker keeps no history to replay")
	}
	var onCommit *func()
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
		s.store, s.outbox, onCommit = store, ob, &store.OnCommit
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
		s.store, s.outbox, onCommit = store, msqlite.NewOutbox(db), &store.OnCommit
		s.ready = func(ctx context.Context) error { return db.R.PingContext(ctx) }
		s.close = func() { db.Close() }
	}
	s.Handlers = service.NewHandlers(s.store)
	s.dispatched = messaging.NewBufferedDispatchLog(s.outbox, 50*time.Millisecond, cfg.Log)
	s.Bus = service.NewBus(s.Handlers, cfg.Log, s.dispatched)
	s.Relay = messaging.NewRelay(s.outbox, cfg.Transport, cfg.Log)
	*onCommit = s.Relay.Notify
	s.Consumer = &messaging.Consumer{
		Name:        Name,
		Registry:    s.Registry,
		Bus:         s.Bus,
		DeadLetters: s.outbox,
		Log:         cfg.Log,
		Permanent:   service.IsPermanent,
		Outcome:     service.IsOutcome,
	}
	if cfg.Metrics != nil {
		m := cfg.Metrics.Service(Name, s.outbox)
		s.Bus.SetMetrics(m)
		s.Relay.Metrics = m
		s.Consumer.Metrics = m
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
	api := &allochttp.API{Bus: s.Bus, Views: s.store, Log: s.log}
	api.Register(mux)
}

// Recover hands the events a crash left undispatched to their handlers.
func (s *Service) Recover(ctx context.Context, olderThan time.Duration) error {
	for {
		envs, err := s.outbox.Undispatched(ctx, olderThan, 256, 5)
		if err != nil {
			return err
		}
		if len(envs) == 0 {
			return nil
		}
		s.log.InfoContext(ctx, "dispatching events left over", "count", len(envs))
		s.Bus.Redispatch(ctx, s.Registry, envs)
		s.dispatched.Flush(ctx)
		if len(envs) < 256 {
			return nil
		}
	}
}

// Run runs the relay, the consumer of the service's inbound channels and
// the housekeeping, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	run("relay", s.Relay.Run)
	run("consumer", func(ctx context.Context) error {
		if s.replay {
			if err := s.transport.(messaging.Rewinder).Rewind(ctx, Name, service.Inbound); err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			s.log.InfoContext(ctx, "replaying the retained history", "group", Name, "channels", service.Inbound)
		}
		return s.Consumer.Run(ctx, s.transport, service.Inbound...)
	})
	run("dispatch log", s.dispatched.Run)
	run("housekeeping", s.housekeeping)
	wg.Wait()
	close(errc)
	return <-errc
}

// housekeeping retries local event handlers that failed, and forgets inbox
// entries old enough that no redelivery will come.
func (s *Service) housekeeping(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := s.Recover(ctx, 10*time.Second); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "recovering undispatched events", "err", err)
		}
		if time.Since(last) > time.Hour {
			if err := s.outbox.ForgetHandled(ctx, 7*24*time.Hour); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "pruning the inbox", "err", err)
			}
			last = time.Now()
		}
	}
}

// Ready reports whether the service can answer.
func (s *Service) Ready(ctx context.Context) error { return s.ready(ctx) }

// DeadLetters lists the latest dead letters.
func (s *Service) DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error) {
	return s.outbox.DeadLetters(ctx, limit)
}

// Close closes the store.
func (s *Service) Close() { s.close() }
