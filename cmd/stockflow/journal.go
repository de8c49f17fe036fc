package main

import (
	"context"
	"fmt"

	"github.com/stockflow/stockflow/docs"
	allocservice "github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/contract"
	crmservice "github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/flows"
	flowsservice "github.com/stockflow/stockflow/internal/flows/service"
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
		doc, err := flowsContract(docs.AsyncAPI)
		if err != nil {
			return nil, err
		}
		return flows.Open(ctx, cfg, flows.Options{Channels: channels, Producers: producers, Retention: f.flowsRetention, Contract: doc})
	},
	migrate: flows.Migrate,
}

func init() { services = append(services, flowsService) }

// flowsContract reads the AsyncAPI document data as the contract the
// flows service's map checks what runs against.
func flowsContract(data []byte) (*flowsservice.Contract, error) {
	doc, err := contract.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("docs/asyncapi.json: %w", err)
	}
	c := &flowsservice.Contract{Check: func(party, channel string, payload []byte) ([]string, bool) {
		op, ok := doc.Find(party, contract.Send, channel)
		if !ok {
			return nil, false
		}
		return doc.CheckPayload(op, payload), true
	}}
	for _, op := range doc.Operations {
		c.Operations = append(c.Operations, flowsservice.Operation{Party: op.Party, Action: op.Action, Channel: op.Channel})
	}
	return c, nil
}
