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

	crmhttp "github.com/stockflow/stockflow/internal/crm/adapters/http"
	"github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/platform"
)

// Name is the service's name: its consumer group, database file and schema.
const Name = "crm"

// Service is a running CRM service.
type Service struct {
	*platform.Base[docstore.Store, *service.Handlers]
	cfg platform.Config
}

var _ platform.Service = (*Service)(nil)

// Open opens the service's store and wires it.
func Open(ctx context.Context, cfg platform.Config) (*Service, error) {
	reg := service.Messages()
	base, err := platform.Assemble(ctx, cfg, platform.Parts[docstore.Store, *service.Handlers]{
		Name: Name, Registry: reg, Inbound: service.Inbound,
		Open:     platform.DocStore(Name),
		Handlers: func(store docstore.Store) *service.Handlers { return service.NewHandlers(store, reg) },
		Bus:      service.NewBus,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Base: base, cfg: cfg}, nil
}

// Routes adds the service's HTTP routes to mux.
func (s *Service) Routes(mux httpx.Mux) {
	(&crmhttp.API{Customers: s.Handlers, Log: s.cfg.Log}).Register(mux)
}
