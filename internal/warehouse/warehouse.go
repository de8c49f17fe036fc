// Package warehouse is the warehouse service: it dispatches the goods of
// placed orders once all their lines are allocated and on the shelf
// (GoodsDispatched), and announces workers' stock counts and damage
// reports (StockReported) for the allocation service to apply.
//
//	domain/        shipments and batches as the warehouse sees them
//	service/       handlers, the messages it exchanges, bus wiring
//	adapters/http/ the HTTP API
//
// Its state is kept in a document store (internal/docstore).
package warehouse

import (
	"context"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/platform"
	warehousehttp "github.com/stockflow/stockflow/internal/warehouse/adapters/http"
	"github.com/stockflow/stockflow/internal/warehouse/service"
)

// Name is the service's name: its consumer group, database file and schema.
const Name = "warehouse"

// Service is a running warehouse service.
type Service struct {
	*platform.Base[docstore.Store, *service.Handlers]
	cfg platform.Config
}

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
	(&warehousehttp.API{Bus: s.Bus, Views: s.Handlers, Log: s.cfg.Log}).Register(mux)
}
