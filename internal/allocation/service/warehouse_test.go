package service_test

// What the warehouse tells the allocation service: goods_dispatched naming
// the batch the goods left from, and stock_reported (counts and damage).

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// deliver hands ev to the bus as a consumer would, in an envelope of id
// (a new one when empty), and the events its handlers commit after it.
func deliver(t *testing.T, f *fixture, id string, ev any) {
	t.Helper()
	env, err := service.Messages().Envelope(t.Context(), ev)
	if err != nil {
		t.Fatalf("Envelope(%T): %v", ev, err)
	}
	if id != "" {
		env.ID = id
	}
	if err := f.bus.Dispatch(t.Context(), []messaging.Raised{{Envelope: env, Event: ev}}); err != nil {
		t.Fatalf("delivering %T: %v", ev, err)
	}
}

func damage(ref, sku string, seq, qty int) service.StockReported {
	return service.StockReported{BatchRef: ref, SKU: sku, Kind: domain.ReportDamage, Qty: qty, Seq: seq}
}

// The scenario B: a line moves to another batch (damage shrank its
// batch) while the warehouse, which has not heard of it yet, ships it from
// the batch it was in. The goods left that batch: it is the one whose
// stock falls, and the line leaves the batch it moved to.
func TestDispatchOrderFromTheBatchTheLineLeft(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 3, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	f.allocate(t, "o0", "S", 1)
	f.allocate(t, "o1", "S", 1)

	// 2 of b1's 3 units are damaged: o1, the latest, moves to b2.
	deliver(t, f, "", damage("b1", "S", 1, 2))
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 1, Allocated: 1, ReportSeq: 1, Lines: []domain.OrderLine{line("o0", "S", 1)}})
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 1, Lines: []domain.OrderLine{line("o1", "S", 1)}})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b2"}})
	n := f.store.outboxLen()

	// The warehouse ships o1 from b1.
	deliver(t, f, "", service.GoodsDispatched{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 1, BatchRef: "b1"}}})

	// b1 is down by 1: its last unit is gone, so o0 can no longer be
	// served from it and moves to b2 too; o1 left b2.
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 0, Dispatched: 1, ReportSeq: 1})
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 1, Lines: []domain.OrderLine{line("o0", "S", 1)}})
	assertEvents(t, f.store.eventsSince(n), []domain.Event{
		domain.BatchQuantityChanged{Ref: "b1", SKU: "S", Qty: 0, Dispatched: 1, ReportSeq: 1},
		domain.Deallocated{OrderID: "o1", SKU: "S", Qty: 1, BatchRef: "b2", Reason: domain.ReasonDispatched},
		domain.Deallocated{OrderID: "o0", SKU: "S", Qty: 1, BatchRef: "b1", Reason: domain.ReasonBatchShrank},
		domain.Allocated{OrderID: "o0", SKU: "S", Qty: 1, BatchRef: "b2"},
	})
	assertView(t, f.store, "o1", nil)
	assertView(t, f.store, "o0", []service.AllocationView{{SKU: "S", BatchRef: "b2"}})
}

// A cancellation reaches the allocation service, but the warehouse ships
// the order all the same: named, the batch the goods left loses them, and
// its stock is not promised again.
func TestDispatchOrderAfterItsCancellation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		batchRef string
		wantB1   domain.Batch
		// The next order for the batch's whole quantity.
		wantErr error
	}{
		{
			name:     "the dispatch names its batch: it loses the goods",
			batchRef: "b1",
			wantB1:   domain.Batch{Ref: "b1", SKU: "S", Purchased: 0, Dispatched: 5},
			wantErr:  domain.ErrOutOfStock,
		},
		{
			name:     "legacy dispatch, naming no batch: nothing to take the goods from",
			batchRef: "",
			wantB1:   domain.Batch{Ref: "b1", SKU: "S", Purchased: 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.createBatch(t, "b1", "S", 5, noETA)
			f.allocate(t, "o1", "S", 5)
			deliver(t, f, "", service.OrderCancelled{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 5}}})
			assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 5})

			deliver(t, f, "", service.GoodsDispatched{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 5, BatchRef: tt.batchRef}}})
			assertBatch(t, f.store, tt.wantB1)

			_, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o2", SKU: "S", Qty: 5})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("allocating the batch's 5 units again: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// goods_dispatched delivered again is applied once: naming its batch, a
// dispatch is no longer a no-op the second time, the inbox must stop it.
func TestDispatchOrderRedeliveredAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "c1", "T", 10, noETA)
	f.allocate(t, "o1", "S", 3)
	f.allocate(t, "o1", "T", 2)
	ev := service.GoodsDispatched{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 3, BatchRef: "b1"}, {SKU: "T", Qty: 2, BatchRef: "c1"}}}

	deliver(t, f, "m-1", ev)
	committed, n := f.store.committedCount(), f.store.outboxLen()
	deliver(t, f, "m-1", ev)

	if got := f.store.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
	if got := f.store.outboxLen(); got != n {
		t.Errorf("outbox has %d messages, want %d", got, n)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 7, Dispatched: 3})
	assertBatch(t, f.store, domain.Batch{Ref: "c1", SKU: "T", Purchased: 8, Dispatched: 2})
	for _, sku := range []string{"S", "T"} {
		if !f.store.inboxHas("allocation.dispatch_order#"+sku, "m-1") {
			t.Errorf("inbox lacks the line of %s", sku)
		}
	}
}

// A dispatch naming its batch loads the batch's lines: when its goods
// leave, the lines it can no longer hold move on.
func TestDispatchOrderShrinksTheBatchNamed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 5, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	f.allocate(t, "o2", "S", 2)
	f.allocate(t, "o3", "S", 3) // b1 is full
	// o1 was never allocated here (released, say), yet 1 unit left b1 for it.
	deliver(t, f, "", service.GoodsDispatched{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 1, BatchRef: "b1"}}})

	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 4, Dispatched: 1, Allocated: 2, Lines: []domain.OrderLine{line("o2", "S", 2)}})
	assertBatch(t, f.store, domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 3, Lines: []domain.OrderLine{line("o3", "S", 3)}})
	assertView(t, f.store, "o3", []service.AllocationView{{SKU: "S", BatchRef: "b2"}})
}

// ReportStock

func TestReportStock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ev      service.StockReported
		wantB1  domain.Batch
		wantB2  domain.Batch
		wantO2  []service.AllocationView
		wantEvs []string
	}{
		{
			name:    "damage within the free stock",
			ev:      damage("b1", "S", 1, 3),
			wantB1:  domain.Batch{Ref: "b1", SKU: "S", Purchased: 7, Allocated: 6, ReportSeq: 1, Lines: []domain.OrderLine{line("o1", "S", 4), line("o2", "S", 2)}},
			wantB2:  domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow},
			wantO2:  []service.AllocationView{{SKU: "S", BatchRef: "b1"}},
			wantEvs: []string{"BatchQuantityChanged"},
		},
		{
			name:    "damage beyond it: the latest line is reallocated",
			ev:      damage("b1", "S", 1, 5),
			wantB1:  domain.Batch{Ref: "b1", SKU: "S", Purchased: 5, Allocated: 4, ReportSeq: 1, Lines: []domain.OrderLine{line("o1", "S", 4)}},
			wantB2:  domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 2, Lines: []domain.OrderLine{line("o2", "S", 2)}},
			wantO2:  []service.AllocationView{{SKU: "S", BatchRef: "b2"}},
			wantEvs: []string{"BatchQuantityChanged", "Deallocated", "Allocated"},
		},
		{
			name:    "count that includes a dispatch not heard of yet",
			ev:      service.StockReported{BatchRef: "b1", SKU: "S", Kind: domain.ReportCount, Qty: 5, Seq: 4, Dispatched: 3},
			wantB1:  domain.Batch{Ref: "b1", SKU: "S", Purchased: 8, Allocated: 6, ReportSeq: 4, Lines: []domain.OrderLine{line("o1", "S", 4), line("o2", "S", 2)}},
			wantB2:  domain.Batch{Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow},
			wantO2:  []service.AllocationView{{SKU: "S", BatchRef: "b1"}},
			wantEvs: []string{"BatchQuantityChanged"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.createBatch(t, "b1", "S", 10, noETA)
			f.createBatch(t, "b2", "S", 10, tomorrow)
			f.allocate(t, "o1", "S", 4)
			f.allocate(t, "o2", "S", 2)
			n := f.store.outboxLen()

			deliver(t, f, "", tt.ev)
			assertBatch(t, f.store, tt.wantB1)
			assertBatch(t, f.store, tt.wantB2)
			assertView(t, f.store, "o2", tt.wantO2)
			var got []string
			for _, ev := range f.store.eventsSince(n) {
				got = append(got, reflect.TypeOf(ev).Name())
			}
			if !slices.Equal(got, tt.wantEvs) {
				t.Errorf("events %v, want %v", got, tt.wantEvs)
			}
		})
	}
}

func TestReportStockRedeliveredAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.allocate(t, "o1", "S", 4)
	ev := damage("b1", "S", 1, 2)
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m-1", Consumer: "allocation.report_stock"})

	raised, err := f.handlers.ReportStock(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventTypes(raised); !slices.Equal(got, []string{"BatchQuantityChanged"}) {
		t.Fatalf("raised %v, want BatchQuantityChanged", got)
	}
	committed, n := f.store.committedCount(), f.store.outboxLen()

	// Delivered again: the inbox skips it, without a transaction.
	raised, err = f.handlers.ReportStock(ctx, ev)
	if err != nil || len(raised) != 0 {
		t.Fatalf("redelivery raised %v, %v", eventTypes(raised), err)
	}
	if got := f.store.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
	if !f.store.inboxHas("allocation.report_stock", "m-1") {
		t.Error("inbox did not record the report")
	}
	// Sent again, as another message: its seq stops it.
	again := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m-2", Consumer: "allocation.report_stock"})
	if raised, err := f.handlers.ReportStock(again, ev); err != nil || len(raised) != 0 {
		t.Fatalf("the same report in another message raised %v, %v", eventTypes(raised), err)
	}
	if got := f.store.outboxLen(); got != n {
		t.Errorf("outbox has %d messages, want %d", got, n)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 8, Allocated: 4, ReportSeq: 1, Lines: []domain.OrderLine{line("o1", "S", 4)}})
}

func TestReportStockUnknownBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	committed := f.store.committedCount()

	_, err := f.handlers.ReportStock(t.Context(), damage("nope", "S", 1, 1))
	if !errors.Is(err, domain.ErrUnknownBatch) {
		t.Fatalf("err = %v, want ErrUnknownBatch", err)
	}
	if !messaging.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false", err)
	}
	if got := f.store.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
}

func TestStockReportedValidate(t *testing.T) {
	t.Parallel()
	valid := service.StockReported{BatchRef: "b1", SKU: "S", Kind: domain.ReportCount, Qty: 7, Seq: 1, Dispatched: 3}
	with := func(f func(*service.StockReported)) service.StockReported {
		e := valid
		f(&e)
		return e
	}
	tests := []struct {
		name string
		ev   service.StockReported
		want string // a word of the error; "" when valid
	}{
		{"count", valid, ""},
		{"count of nothing", with(func(e *service.StockReported) { e.Qty = 0 }), ""},
		{"count before any dispatch", with(func(e *service.StockReported) { e.Dispatched = 0 }), ""},
		{"damage", damage("b1", "S", 2, 1), ""},
		{"bad kind", with(func(e *service.StockReported) { e.Kind = "lost" }), "kind"},
		{"kind in capitals", with(func(e *service.StockReported) { e.Kind = "Count" }), "kind"},
		{"no kind", with(func(e *service.StockReported) { e.Kind = "" }), "kind"},
		{"negative count", with(func(e *service.StockReported) { e.Qty = -1 }), "qty"},
		{"zero damage", damage("b1", "S", 1, 0), "qty"},
		{"negative damage", damage("b1", "S", 1, -2), "qty"},
		{"seq 0", with(func(e *service.StockReported) { e.Seq = 0 }), "seq"},
		{"negative seq", with(func(e *service.StockReported) { e.Seq = -1 }), "seq"},
		{"negative dispatched", with(func(e *service.StockReported) { e.Dispatched = -1 }), "dispatched"},
		{"empty batchref", with(func(e *service.StockReported) { e.BatchRef = "" }), "batchref"},
		{"blank batchref", with(func(e *service.StockReported) { e.BatchRef = " " }), "batchref"},
		{"batchref too long", with(func(e *service.StockReported) { e.BatchRef = strings.Repeat("b", domain.MaxRefLen+1) }), "batchref"},
		{"empty sku", with(func(e *service.StockReported) { e.SKU = "" }), "sku"},
		{"sku with a control character", with(func(e *service.StockReported) { e.SKU = "S\n" }), "sku"},
	}
	for _, tt := range tests {
		err := tt.ev.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.want == "":
		case !errors.Is(err, fail.Invalid):
			t.Errorf("%s: Validate() = %v, want ErrInvalid", tt.name, err)
		case !strings.Contains(err.Error(), tt.want):
			t.Errorf("%s: Validate() = %q, want it to name %s", tt.name, err, tt.want)
		}
	}
}

// stock_reported as it comes in: decoded by the registry, which requires
// every field but dispatched (damage has none).
func TestStockReportedDecode(t *testing.T) {
	t.Parallel()
	if !slices.Contains(service.Inbound, service.ChannelStockReported) {
		t.Errorf("Inbound %v lacks %s", service.Inbound, service.ChannelStockReported)
	}
	tests := []struct {
		name    string
		payload string
		want    any
		wantErr string // a word of the error; "" when it decodes
	}{
		{
			name:    "count",
			payload: `{"batchref":"b1","sku":"S","kind":"count","qty":7,"seq":2,"dispatched":3,"note":"shelf 4"}`,
			want:    service.StockReported{BatchRef: "b1", SKU: "S", Kind: "count", Qty: 7, Seq: 2, Dispatched: 3},
		},
		{
			name:    "damage",
			payload: `{"batchref":"b1","sku":"S","kind":"damage","qty":1,"seq":3,"dispatched":0}`,
			want:    service.StockReported{BatchRef: "b1", SKU: "S", Kind: "damage", Qty: 1, Seq: 3},
		},
		// A count without what it includes would take every dispatch out
		// again: dispatched is required.
		{name: "no dispatched", payload: `{"batchref":"b1","sku":"S","kind":"count","qty":7,"seq":3}`, wantErr: "dispatched"},
		{name: "malformed", payload: `{"batchref":"b1",`, wantErr: "malformed"},
		{name: "not an object", payload: `[1,2]`, wantErr: "object"},
		{name: "null", payload: `null`, wantErr: "object"},
		{name: "no seq", payload: `{"batchref":"b1","sku":"S","kind":"damage","qty":1,"dispatched":0}`, wantErr: "seq"},
		{name: "no batchref", payload: `{"sku":"S","kind":"damage","qty":1,"seq":1,"dispatched":0}`, wantErr: "batchref"},
		{name: "null kind", payload: `{"batchref":"b1","sku":"S","kind":null,"qty":1,"seq":1,"dispatched":0}`, wantErr: "kind"},
		{name: "no qty", payload: `{"batchref":"b1","sku":"S","kind":"count","seq":1,"dispatched":0}`, wantErr: "qty"},
		{name: "qty as a string", payload: `{"batchref":"b1","sku":"S","kind":"count","qty":"7","seq":1,"dispatched":0}`, wantErr: "qty"},
		{name: "seq not an integer", payload: `{"batchref":"b1","sku":"S","kind":"count","qty":7,"seq":1.5,"dispatched":0}`, wantErr: "seq"},
		{name: "dispatched as a string", payload: `{"batchref":"b1","sku":"S","kind":"count","qty":7,"seq":1,"dispatched":"3"}`, wantErr: "dispatched"},
	}
	reg := service.Messages()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reg.Decode(messaging.Envelope{Channel: service.ChannelStockReported, Payload: json.RawMessage(tt.payload)})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("decoded (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, fail.Invalid) {
				t.Fatalf("Decode = %v, %v; want fail.Invalid", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Decode error %q does not name %s", err, tt.wantErr)
			}
		})
	}
}

// A StockReported travels keyed by its sku, so that the reports on a
// batch keep their order.
func TestStockReportedEnvelope(t *testing.T) {
	t.Parallel()
	ev := damage("b1", "S", 1, 2)
	env, err := service.Messages().Envelope(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if env.Channel != service.ChannelStockReported || env.Key != "S" {
		t.Errorf("envelope on %q keyed %q, want %s keyed S", env.Channel, env.Key, service.ChannelStockReported)
	}
	got, err := service.Messages().Decode(env)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(any(ev), got); diff != "" {
		t.Errorf("round trip (-sent +decoded):\n%s", diff)
	}
}
