// Package flows is the flows service: the journal of every message the
// services exchange, and what each of them did with it, so that an
// operator sees an order's whole journey across the services. It follows
// every channel, the receipts the services record in the transactions
// that handle their messages (messaging.Receipt), and the dead letters,
// as a consumer group of its own; it reads no service's tables. Started
// late or after a stop, it catches up from the broker like any consumer.
//
//	domain/            messages, handlings, the causal tree of a trace
//	service/           the handlers of what it follows, the traces
//	adapters/sqlite/   the journal's embedded store
//	adapters/postgres/ the journal in a PostgreSQL schema
//	adapters/http/     GET /flows, the live page at / and its service map
package flows

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	flowshttp "github.com/stockflow/stockflow/internal/flows/adapters/http"
	flowspg "github.com/stockflow/stockflow/internal/flows/adapters/postgres"
	flowsqlite "github.com/stockflow/stockflow/internal/flows/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
	"github.com/stockflow/stockflow/internal/platform"
)

// Name is the service's name: its consumer group and database file.
const Name = "flows"

// DefaultRetention is how long the journal keeps a message by default.
const DefaultRetention = 7 * 24 * time.Hour

// Options are the flows service's own settings.
type Options struct {
	// Channels are the channels it journals: every service's.
	Channels []string
	// Producers names the service that raises each channel's messages.
	Producers map[string]string
	// Retention is how long a message is kept (DefaultRetention if zero).
	Retention time.Duration
	// Contract is what the service map checks what runs against
	// (docs/asyncapi.json); none if nil.
	Contract *service.Contract
}

// Store is the journal's store.
type Store interface {
	service.Store
	platform.Store
}

// Service is a running flows service.
type Service struct {
	*platform.Base[Store, *service.Handlers]
	opts Options
	cfg  platform.Config
}

var _ platform.Service = (*Service)(nil)

// Open opens the journal and wires the service.
func Open(ctx context.Context, cfg platform.Config, opts Options) (*Service, error) {
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Retention < 0 {
		return nil, fmt.Errorf("%s: retention must be positive, got %s", Name, opts.Retention)
	}
	reg := service.Registry(opts.Channels)
	cfg.NoReceipts = true // the journal's own handlings are not journaled
	base, err := platform.Assemble(ctx, cfg, platform.Parts[Store, *service.Handlers]{
		Name: Name, Registry: reg, Inbound: reg.Channels(),
		Open: func(ctx context.Context, cfg platform.Config, _ platform.StoreHooks) (Store, error) {
			if cfg.DB != "" {
				pool, err := mpostgres.Connect(ctx, cfg.DB, Name)
				if err != nil {
					return nil, err
				}
				st, err := flowspg.Open(ctx, pool, Name)
				if err != nil {
					pool.Close()
					return nil, err
				}
				return st, nil
			}
			if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
				return nil, err
			}
			return flowsqlite.Open(ctx, filepath.Join(cfg.DataDir, Name+".db"))
		},
		Handlers: func(st Store) *service.Handlers { return service.NewHandlers(st, opts.Producers, opts.Contract) },
		Bus:      service.NewBus,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Base: base, opts: opts, cfg: cfg}, nil
}

// Run follows the channels and prunes the journal, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		s.prune(ctx)
	}()
	err := s.Base.Run(ctx)
	cancel()
	<-pruned
	return err
}

// prune forgets what is older than the retention, at start and hourly.
func (s *Service) prune(ctx context.Context) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		n, err := s.Store.Prune(ctx, time.Now().Add(-s.opts.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Log.WarnContext(ctx, "pruning the journal", "service", Name, "err", err)
		case n > 0:
			s.cfg.Log.InfoContext(ctx, "journal pruned", "service", Name, "messages", n, "retention", s.opts.Retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Routes adds the service's HTTP routes to mux.
func (s *Service) Routes(mux httpx.Mux) {
	(&flowshttp.API{Flows: s.Handlers, Log: s.cfg.Log}).Register(mux)
}

// Migrate creates or upgrades the journal's tables in the PostgreSQL
// database at url.
func Migrate(ctx context.Context, url string) error {
	pool, err := mpostgres.Connect(ctx, url, Name)
	if err != nil {
		return err
	}
	defer pool.Close()
	return flowspg.Migrate(ctx, pool)
}

// Producers returns, for registries of the services by name and the
// channels each consumes, the service that raises each channel's
// messages: the channels a service knows and does not consume. A
// channel several services raise (the dead letters, the receipts) is
// nobody's.
func Producers(services map[string]*messaging.Registry, inbound map[string][]string) (channels []string, producers map[string]string) {
	producers = map[string]string{}
	seen := map[string]bool{}
	for name, reg := range services {
		in := map[string]bool{}
		for _, c := range inbound[name] {
			in[c] = true
		}
		for _, c := range reg.Channels() {
			if !seen[c] {
				seen[c] = true
				channels = append(channels, c)
			}
			if in[c] {
				continue
			}
			if _, dup := producers[c]; dup {
				producers[c] = ""
				continue
			}
			producers[c] = name
		}
	}
	return channels, producers
}
