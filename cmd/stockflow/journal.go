package main

import (
	"context"

	allocservice "github.com/stockflow/stockflow/internal/allocation/service"
	crmservice "github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/flows"
	"github.com/stockflow/stockflow/internal/messaging"
	notificationsservice "github.com/stockflow/stockflow/internal/notifications/service"
	ordersservice "github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/platform"
	warehouseservice "github.com/stockflow/stockflow/internal/warehouse/service"
)

// flowsService is the flows service: it journals the channels of every
// other service, knowing from their contracts (registries and inbound
// channels) which service raises each.
var flowsService = serviceDef{
	name: flows.Name,
	open: func(ctx context.Context, cfg platform.Config, f *serverFlags) (platform.Service, error) {
		channels, producers := flows.Producers(map[string]*messaging.Registry{
			"allocation": allocservice.Messages(), "orders": ordersservice.Messages(), "warehouse": warehouseservice.Messages(),
			"crm": crmservice.Messages(), "notifications": notificationsservice.Messages(),
		}, map[string][]string{
			"allocation": allocservice.Inbound, "orders": ordersservice.Inbound, "warehouse": warehouseservice.Inbound,
			"crm": crmservice.Inbound, "notifications": notificationsservice.Inbound,
		})
		return flows.Open(ctx, cfg, flows.Options{Channels: channels, Producers: producers, Retention: f.flowsRetention})
	},
	migrate: flows.Migrate,
}

func init() { services = append(services, flowsService) }
