package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	docsqlite "github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/orders/domain"
	"github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/testenv"
)

type fixture struct {
	store    *docsqlite.Store
	bus      *messaging.Bus
	h        *service.Handlers
	consumer *messaging.Consumer
}

func setup(t *testing.T) *fixture {
	t.Helper()
	store, err := docsqlite.Open(context.Background(), filepath.Join(t.TempDir(), "orders.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	reg := service.Messages()
	h := service.NewHandlers(store, reg, ttl)
	log := testenv.Logger(t, slog.LevelWarn)
	bus := service.NewBus(h, log, nil)
	return &fixture{store: store, bus: bus, h: h, consumer: &messaging.Consumer{
		Name: "orders", Registry: reg, Bus: bus, DeadLetters: store.Messaging(), Log: log,
	}}
}

func (f *fixture) handle(t *testing.T, cmd any) service.View {
	t.Helper()
	res, err := f.bus.Handle(context.Background(), cmd)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return res.(service.View)
}

// deliver hands the consumer a message from another service.
func (f *fixture) deliver(t *testing.T, id, channel string, payload any) {
	t.Helper()
	body, _ := json.Marshal(payload)
	d := messaging.Delivery{Envelope: messaging.Envelope{ID: id, Channel: channel, Payload: body, OccurredAt: time.Now()}, Attempt: 1}
	if err := f.consumer.Handle(context.Background(), d); err != nil {
		t.Fatalf("delivering %s: %v", channel, err)
	}
}

func (f *fixture) order(t *testing.T, id string) service.View {
	t.Helper()
	v, err := f.h.Order(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCartToDispatchFollowsEvents(t *testing.T) {
	f := setup(t)
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	envs, err := f.store.Messaging().Unpublished(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 || envs[0].Channel != service.ChannelCartItemAdded || envs[0].Key != o.ID {
		t.Fatalf("outbox %+v, want one cart_item_added keyed by the order", envs)
	}
	var added map[string]any
	json.Unmarshal(envs[0].Payload, &added)
	if added["orderid"] != o.ID || added["sku"] != "LAMP" || added["qty"] != 2.0 || added["customer"] != "alice" {
		t.Errorf("cart_item_added payload %s", envs[0].Payload)
	}

	allocated := map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b1"}
	f.deliver(t, "m1", service.ChannelLineAllocated, allocated)
	if v := f.order(t, o.ID); v.Status != domain.StatusReserved {
		t.Fatalf("status %s after line_allocated, want reserved", v.Status)
	}
	f.handle(t, domain.PlaceOrder{OrderID: o.ID})
	f.deliver(t, "m2", service.ChannelGoodsDispatched, map[string]any{"orderid": o.ID, "lines": []any{}})
	v := f.order(t, o.ID)
	if v.Status != domain.StatusDispatched {
		t.Fatalf("status %s, want dispatched", v.Status)
	}
	if _, err := f.bus.Handle(context.Background(), domain.CancelOrder{OrderID: o.ID}); !errors.Is(err, fail.Conflict) {
		t.Fatalf("cancelling a dispatched order: %v, want a conflict", err)
	}
}

func TestRedeliveryChangesNothing(t *testing.T) {
	f := setup(t)
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	f.handle(t, domain.PlaceOrder{OrderID: o.ID})
	for _, m := range []struct {
		channel string
		payload map[string]any
	}{
		{service.ChannelLineAllocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b1"}},
		{service.ChannelLineDeallocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b1", "reason": "batch_quantity_changed"}},
		{service.ChannelOutOfStock, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2}},
		{service.ChannelGoodsDispatched, map[string]any{"orderid": o.ID, "lines": []any{}}},
	} {
		t.Run(m.channel, func(t *testing.T) {
			id := messaging.NewID()
			f.deliver(t, id, m.channel, m.payload)
			before := f.order(t, o.ID)
			f.deliver(t, id, m.channel, m.payload)
			after := f.order(t, o.ID)
			if len(after.History) != len(before.History) || after.Status != before.Status {
				t.Errorf("redelivered %s: history %d → %d, status %s → %s", m.channel, len(before.History), len(after.History), before.Status, after.Status)
			}
		})
	}
}

func TestNewsOfOtherOrdersIsIgnored(t *testing.T) {
	f := setup(t)
	f.deliver(t, "m1", service.ChannelLineAllocated, map[string]any{"orderid": "not-a-cart", "sku": "LAMP", "qty": 1, "batchref": "b1"})
	f.deliver(t, "m2", service.ChannelOutOfStock, map[string]any{"sku": "LAMP"})
	if _, err := f.h.Order(context.Background(), "not-a-cart"); !errors.Is(err, fail.NotFound) {
		t.Fatalf("an order appeared from another's news: %v", err)
	}
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	f := setup(t)
	for _, m := range []struct{ channel, payload string }{
		{service.ChannelLineAllocated, `{not json`},
		{service.ChannelLineAllocated, `{"orderid": "o1", "sku": "LAMP"}`},
		{service.ChannelLineDeallocated, `{"orderid": 5, "sku": "LAMP", "batchref": "b1", "reason": "x"}`},
		{service.ChannelGoodsDispatched, `[]`},
	} {
		d := messaging.Delivery{Envelope: messaging.Envelope{ID: messaging.NewID(), Channel: m.channel, Payload: json.RawMessage(m.payload)}, Attempt: 1}
		if err := f.consumer.Handle(context.Background(), d); err != nil {
			t.Fatalf("%s %s: %v (a poison message must be acknowledged)", m.channel, m.payload, err)
		}
	}
	dls, err := f.store.Messaging().DeadLetters(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 4 {
		t.Fatalf("%d dead letters, want 4: %+v", len(dls), dls)
	}
}
