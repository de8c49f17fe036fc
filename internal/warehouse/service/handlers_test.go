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
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
	"github.com/stockflow/stockflow/internal/warehouse/service"
)

type fixture struct {
	store    *docsqlite.Store
	bus      *messaging.Bus
	h        *service.Handlers
	consumer *messaging.Consumer
}

func setup(t *testing.T) *fixture {
	t.Helper()
	store, err := docsqlite.Open(context.Background(), filepath.Join(t.TempDir(), "warehouse.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	reg := service.Messages()
	h := service.NewHandlers(store, reg)
	log := testenv.Logger(t, slog.LevelWarn)
	bus := service.NewBus(h, log, nil)
	return &fixture{store: store, bus: bus, h: h, consumer: &messaging.Consumer{
		Name: "warehouse", Registry: reg, Bus: bus, DeadLetters: store.Messaging(), Log: log,
	}}
}

func (f *fixture) deliver(t *testing.T, id, channel string, payload any) {
	t.Helper()
	body, _ := json.Marshal(payload)
	if err := f.consumer.Handle(context.Background(), messaging.Delivery{Envelope: messaging.Envelope{ID: id, Channel: channel, Payload: body}, Attempt: 1}); err != nil {
		t.Fatalf("delivering %s: %v", channel, err)
	}
}

// batch returns the batch ref as the warehouse knows it; nil if unknown.
func (f *fixture) batch(t *testing.T, ref string) *domain.Batch {
	t.Helper()
	b, err := f.h.Batch(context.Background(), ref)
	if errors.Is(err, fail.NotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sent returns what the warehouse published, by channel, payloads as text.
func (f *fixture) sent(t *testing.T) map[string][]string {
	t.Helper()
	envs, err := f.store.Messaging().Unpublished(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range envs {
		out[e.Channel] = append(out[e.Channel], string(e.Payload))
	}
	return out
}

func TestDamageGoesOutAsStockReported(t *testing.T) {
	f := setup(t)
	f.deliver(t, "m1", service.ChannelBatchCreated, map[string]any{"ref": "b1", "sku": "LAMP", "qty": 10, "eta": nil, "version": 1})
	if _, err := f.bus.Handle(context.Background(), service.ReportStock{BatchRef: "b1", Kind: domain.ReportDamage, Qty: 4, Note: "leak"}); err != nil {
		t.Fatal(err)
	}
	sent := f.sent(t)
	const want = `{"batchref":"b1","sku":"LAMP","kind":"damage","qty":4,"seq":1,"dispatched":0,"note":"leak"}`
	if got := sent[service.ChannelStockReported]; len(got) != 1 || got[0] != want {
		t.Fatalf("stock_reported %v, want [%s]", got, want)
	}
	if got := sent["change_batch_quantity"]; len(got) != 0 {
		t.Fatalf("the warehouse still sends change_batch_quantity: %v", got)
	}
	if b := f.batch(t, "b1"); b.Qty != 6 {
		t.Fatalf("qty %d after the damage, want 6", b.Qty)
	}
	if _, err := f.bus.Handle(context.Background(), service.ReportStock{BatchRef: "nope", Kind: domain.ReportCount, Qty: 1}); !errors.Is(err, fail.NotFound) {
		t.Fatalf("report on an unknown batch: %v, want not found", err)
	}
	// The allocation service's announcement sets the quantity again; one
	// that does not include the damage yet is reckoned with it.
	f.deliver(t, "m2", service.ChannelBatchQuantityChanged, map[string]any{"batchref": "b1", "sku": "LAMP", "qty": 8, "dispatched": 0, "report_seq": 0, "version": 2})
	if b := f.batch(t, "b1"); b.Qty != 4 {
		t.Fatalf("qty %d after 8 announced without the damage of 4, want 4", b.Qty)
	}
	f.deliver(t, "m3", service.ChannelBatchQuantityChanged, map[string]any{"batchref": "b1", "sku": "LAMP", "qty": 3, "dispatched": 0, "report_seq": 1, "version": 3})
	b, err := f.h.Batch(context.Background(), "b1")
	if err != nil || b.Qty != 3 || len(b.Reports) != 1 {
		t.Fatalf("batch %+v, %v; want 3 units and one report", b, err)
	}
}

func TestDispatchOnceAndRedeliveries(t *testing.T) {
	f := setup(t)
	msgs := []struct {
		id, channel string
		payload     map[string]any
	}{
		{"c1", service.ChannelBatchCreated, map[string]any{"ref": "b1", "sku": "LAMP", "qty": 10, "version": 1}},
		{"c2", service.ChannelBatchCreated, map[string]any{"ref": "b2", "sku": "SOFA", "qty": 10, "version": 1}},
		{"a1", service.ChannelLineAllocated, map[string]any{"orderid": "o1", "sku": "LAMP", "qty": 1, "batchref": "b1"}},
		{"p1", service.ChannelOrderPlaced, map[string]any{"orderid": "o1", "customer": "alice", "email": "a@example.com", "lines": []any{map[string]any{"sku": "LAMP", "qty": 1}, map[string]any{"sku": "SOFA", "qty": 2}}, "placed_at": "2026-11-22T10:00:00Z"}},
		{"a2", service.ChannelLineAllocated, map[string]any{"orderid": "o1", "sku": "SOFA", "qty": 2, "batchref": "b2"}},
	}
	for _, m := range msgs {
		f.deliver(t, m.id, m.channel, m.payload)
		f.deliver(t, m.id, m.channel, m.payload) // redelivered
	}
	f.deliver(t, "a3", service.ChannelLineAllocated, map[string]any{"orderid": "o1", "sku": "SOFA", "qty": 2, "batchref": "b9"})
	got := f.sent(t)[service.ChannelGoodsDispatched]
	if len(got) != 1 {
		t.Fatalf("goods_dispatched sent %d times, want once: %v", len(got), got)
	}
	var g struct {
		OrderID string `json:"orderid"`
		Lines   []struct {
			SKU      string `json:"sku"`
			Qty      int    `json:"qty"`
			BatchRef string `json:"batchref"`
		} `json:"lines"`
	}
	json.Unmarshal([]byte(got[0]), &g)
	if g.OrderID != "o1" || len(g.Lines) != 2 || g.Lines[0].BatchRef != "b1" || g.Lines[1].BatchRef != "b2" || g.Lines[1].Qty != 2 {
		t.Errorf("goods_dispatched %s", got[0])
	}
	s, err := f.h.Shipment(context.Background(), "o1")
	if err != nil || s.Status() != domain.ShipmentDispatched {
		t.Fatalf("shipment %+v, %v", s, err)
	}
	// The goods left once.
	for ref, want := range map[string]int{"b1": 9, "b2": 8} {
		if b := f.batch(t, ref); b.Qty != want {
			t.Errorf("%s: qty %d, want %d", ref, b.Qty, want)
		}
	}
	if b := f.batch(t, "b9"); b != nil {
		t.Errorf("b9 followed a dispatched order: %+v", b)
	}
}

func TestCancelledOrdersStay(t *testing.T) {
	f := setup(t)
	f.deliver(t, "c0", service.ChannelBatchCreated, map[string]any{"ref": "b1", "sku": "LAMP", "qty": 10, "version": 1})
	f.deliver(t, "p1", service.ChannelOrderPlaced, map[string]any{"orderid": "o1", "customer": "alice", "lines": []any{map[string]any{"sku": "LAMP", "qty": 1}}})
	f.deliver(t, "c1", service.ChannelOrderCancelled, map[string]any{"orderid": "o1", "customer": "alice", "lines": []any{}})
	f.deliver(t, "a1", service.ChannelLineAllocated, map[string]any{"orderid": "o1", "sku": "LAMP", "qty": 1, "batchref": "b1"})
	if got := f.sent(t)[service.ChannelGoodsDispatched]; len(got) != 0 {
		t.Fatalf("a cancelled order was dispatched: %v", got)
	}
	if b := f.batch(t, "b1"); b.Qty != 10 || b.Dispatched != 0 {
		t.Fatalf("goods of a cancelled order left: %+v", b)
	}
}

// A batch on its way (with an ETA) is not on the shelf: an order allocated
// to it is held until the day it comes in, when the warehouse's own timer
// (batch_arrival_due, scheduled in the same transaction as the batch it
// heard of) tries it again.
func TestBatchOnItsWayIsDispatchedOnTheDayItComesIn(t *testing.T) {
	f := setup(t)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	f.h.Now = func() time.Time { return now }
	f.deliver(t, "c1", service.ChannelBatchCreated, map[string]any{"ref": "ship-1", "sku": "LAMP", "qty": 10, "eta": "2026-12-05", "version": 1})
	scheduled, err := f.store.Messaging().(messaging.Scheduler).Scheduled(context.Background())
	if err != nil || scheduled != 1 {
		t.Fatalf("%d timers scheduled (%v), want the batch's arrival", scheduled, err)
	}
	if got := f.sent(t)[service.ChannelBatchArrivalDue]; len(got) != 0 {
		t.Fatalf("the arrival was published before it is due: %v", got)
	}
	f.deliver(t, "a1", service.ChannelLineAllocated, map[string]any{"orderid": "o1", "sku": "LAMP", "qty": 2, "batchref": "ship-1"})
	f.deliver(t, "p1", service.ChannelOrderPlaced, map[string]any{"orderid": "o1", "customer": "alice", "lines": []any{map[string]any{"sku": "LAMP", "qty": 2}}})
	if got := f.sent(t)[service.ChannelGoodsDispatched]; len(got) != 0 {
		t.Fatalf("goods of a batch still at sea were dispatched: %v", got)
	}
	if b := f.batch(t, "ship-1"); len(b.Held) != 1 || b.Held[0] != "o1" {
		t.Fatalf("held %v, want o1 waiting for the batch", b.Held)
	}

	// The day comes; the timer fires (twice: redelivered).
	now = time.Date(2026, 12, 5, 0, 0, 1, 0, time.UTC)
	due := map[string]any{"batchref": "ship-1", "sku": "LAMP", "arrives": "2026-12-05T00:00:00Z"}
	f.deliver(t, "t1", service.ChannelBatchArrivalDue, due)
	f.deliver(t, "t1", service.ChannelBatchArrivalDue, due)
	if got := f.sent(t)[service.ChannelGoodsDispatched]; len(got) != 1 {
		t.Fatalf("goods_dispatched sent %d times on arrival, want once", len(got))
	}
	if b := f.batch(t, "ship-1"); b.Qty != 8 || len(b.Held) != 0 {
		t.Fatalf("batch %+v after the dispatch, want 8 on the shelf and nothing held", b)
	}
}

func TestBatchCreatedWithABadETAIsDeadLettered(t *testing.T) {
	f := setup(t)
	body, _ := json.Marshal(map[string]any{"ref": "b1", "sku": "LAMP", "qty": 1, "eta": "next tuesday", "version": 1})
	err := f.consumer.Handle(context.Background(), messaging.Delivery{Envelope: messaging.Envelope{ID: "x", Channel: service.ChannelBatchCreated, Payload: body}, Attempt: 1})
	if err != nil {
		t.Fatalf("a bad message stopped the consumer: %v", err)
	}
	dl, err := f.store.Messaging().DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead letters %v, %v; want the bad batch_created", dl, err)
	}
}
