// Package orders is the orders service: customers' carts and orders, whose
// stock the allocation service reserves, and whose status follows what
// the allocation service and the warehouse announce.
//
//	domain/        the Order aggregate, its commands and events
//	service/       handlers, the messages it exchanges, bus wiring
//	adapters/http/ the HTTP API
//
// Orders are kept in a document store (internal/docstore).
package orders

import (
	"context"
	"fmt"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/httpx"
	ordershttp "github.com/stockflow/stockflow/internal/orders/adapters/http"
	"github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/platform"
)

// Name is the service's name: its consumer group, database file and schema.
const Name = "orders"

// Service is a running orders service.
type Service struct {
	*platform.Base[docstore.Store, *service.Handlers]
	cfg platform.Config
}

// Options tune the service.
type Options struct {
	// ReservationTTL is how long a cart's reservations last unless it is
	// placed: the clock starts with its first item. Zero means
	// service.DefaultReservationTTL (30 minutes).
	ReservationTTL time.Duration
}

func (o Options) validate() error {
	if o.ReservationTTL < 0 {
		return fail.Errorf(fail.Invalid, "reservation TTL must be positive, got %s", o.ReservationTTL)
	}
	return nil
}

// Open opens the service's store and wires it, tuned by opts.
func Open(ctx context.Context, cfg platform.Config, opts Options) (*Service, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	reg := service.Messages()
	base, err := platform.Assemble(ctx, cfg, platform.Parts[docstore.Store, *service.Handlers]{
		Name: Name, Registry: reg, Inbound: service.Inbound,
		Open: platform.DocStore(Name),
		Handlers: func(store docstore.Store) *service.Handlers {
			return service.NewHandlers(store, reg, opts.ReservationTTL)
		},
		Bus: service.NewBus,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Base: base, cfg: cfg}, nil
}

// Routes adds the service's HTTP routes to mux.
func (s *Service) Routes(mux httpx.Mux) {
	(&ordershttp.API{Bus: s.Bus, Orders: s.Handlers, Log: s.cfg.Log}).Register(mux)
}
