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
	"net/http"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/messaging"
	ordershttp "github.com/stockflow/stockflow/internal/orders/adapters/http"
	"github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/platform"
)

// Name is the service's name: its consumer group, database file and schema.
const Name = "orders"

// Service is a running orders service.
type Service struct {
	*platform.Base
	Handlers *service.Handlers
	cfg      platform.Config
}

// Open opens the service's store and wires it.
func Open(ctx context.Context, cfg platform.Config) (*Service, error) {
	s := &Service{cfg: cfg}
	reg := service.Messages()
	base, err := platform.NewBase(ctx, cfg, platform.Spec{
		Name: Name, Registry: reg, Inbound: service.Inbound, Permanent: service.IsPermanent,
		Bus: func(store docstore.Store, dispatched messaging.DispatchLog) *messaging.Bus {
			s.Handlers = service.NewHandlers(store, reg)
			return service.NewBus(s.Handlers, cfg.Log, dispatched)
		},
	})
	if err != nil {
		return nil, err
	}
	s.Base = base
	return s, nil
}

// Routes adds the service's HTTP routes to mux.
func (s *Service) Routes(mux *http.ServeMux) {
	(&ordershttp.API{Bus: s.Bus, Orders: s.Handlers, Log: s.cfg.Log}).Register(mux)
}
