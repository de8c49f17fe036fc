// Package allocation is the allocation service of Architecture Patterns
// with Python, assembled: its store, message bus, outbox relay, broker
// consumer and HTTP API (the book's bootstrap and entrypoints).
//
//	domain/            the model: OrderLine, Batch, Product; commands, events
//	service/           handlers, unit of work and repository ports, bus wiring
//	adapters/sqlite/   the embedded store
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
	allocsqlite "github.com/stockflow/stockflow/internal/allocation/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

// Name is the service's name: its consumer group and its database file.
const Name = "allocation"

// Config configures the service.
type Config struct {
	// DataDir holds the SQLite database (allocation.db).
	DataDir string
	// Transport carries messages in and out.
	Transport messaging.Transport
	Log       *slog.Logger
}

// Service is a running allocation service.
type Service struct {
	Bus      *messaging.Bus
	Handlers *service.Handlers
	Registry *messaging.Registry
	Relay    *messaging.Relay
	Consumer *messaging.Consumer

	store     service.Store
	outbox    outbox
	db        *msqlite.DB
	transport messaging.Transport
	log       *slog.Logger
}

// outbox is what the service needs of its store's messaging tables.
type outbox interface {
	messaging.Outbox
	messaging.DispatchLog
	messaging.DeadLetters
	Undispatched(ctx context.Context, olderThan time.Duration, limit, maxAttempts int) ([]messaging.Envelope, error)
	ForgetHandled(ctx context.Context, age time.Duration) error
}

// Open opens the service's store, applying migrations, and wires it.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("allocation: %w", err)
	}
	db, err := msqlite.Open(filepath.Join(cfg.DataDir, Name+".db"))
	if err != nil {
		return nil, fmt.Errorf("allocation: %w", err)
	}
	reg := service.Messages()
	store, err := allocsqlite.Open(ctx, db, reg)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("allocation: %w", err)
	}
	ob := msqlite.NewOutbox(db)
	s := &Service{
		Registry:  reg,
		store:     store,
		outbox:    ob,
		db:        db,
		transport: cfg.Transport,
		log:       cfg.Log,
	}
	s.Handlers = service.NewHandlers(store)
	s.Bus = service.NewBus(s.Handlers, cfg.Log, ob)
	s.Relay = messaging.NewRelay(ob, cfg.Transport, cfg.Log)
	store.OnCommit = s.Relay.Notify
	s.Consumer = &messaging.Consumer{
		Name:        Name,
		Registry:    reg,
		Bus:         s.Bus,
		DeadLetters: ob,
		Log:         cfg.Log,
		Permanent:   service.IsPermanent,
	}
	return s, nil
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
		if len(envs) < 256 {
			return nil
		}
	}
}

// Run runs the relay, the consumer of the service's inbound channels and
// the housekeeping, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 3)
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
		return s.Consumer.Run(ctx, s.transport, service.Inbound...)
	})
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
func (s *Service) Ready(ctx context.Context) error { return s.db.R.PingContext(ctx) }

// DeadLetters lists the latest dead letters.
func (s *Service) DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error) {
	return s.outbox.DeadLetters(ctx, limit)
}

// Close closes the store.
func (s *Service) Close() error { return s.db.Close() }
