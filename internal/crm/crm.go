// Package crm is the CRM service: each customer's orders and their
// history, kept from what the orders service announces, and the customers
// who became VIPs on their third placed order (announced once, as
// customer_became_vip).
//
//	domain/        the Customer aggregate and its event
//	service/       handlers, queries, the messages it exchanges, bus wiring
//	adapters/http/ the HTTP API
//
// Customers are kept in a document store (internal/docstore).
package crm

import (
	"context"
	"net/http"

	crmhttp "github.com/stockflow/stockflow/internal/crm/adapters/http"
	"github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/platform"
)

// Name is the service's name: its consumer group, database file and schema.
const Name = "crm"

// Service is a running CRM service.
type Service struct {
	*platform.Base
	Handlers *service.Handlers
	cfg      platform.Config
}

var _ platform.Service = (*Service)(nil)

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
	(&crmhttp.API{Customers: s.Handlers, Log: s.cfg.Log}).Register(mux)
}
