package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
	"github.com/stockflow/stockflow/internal/warehouse/service"
)

type message struct {
	id, channel string
	payload     map[string]any
}

func batchCreated(id, ref string, qty, version int) message {
	return message{id, service.ChannelBatchCreated, map[string]any{"ref": ref, "sku": "LAMP", "qty": qty, "eta": nil, "version": version}}
}

func quantityChanged(id, ref string, qty, dispatched, reportSeq, version int) message {
	return message{id, service.ChannelBatchQuantityChanged, map[string]any{"batchref": ref, "sku": "LAMP", "qty": qty, "dispatched": dispatched, "report_seq": reportSeq, "version": version}}
}

func orderPlaced(id, orderID string, qty int) message {
	return message{id, service.ChannelOrderPlaced, map[string]any{"orderid": orderID, "customer": "alice", "lines": []any{map[string]any{"sku": "LAMP", "qty": qty}}}}
}

func lineAllocated(id, orderID, ref string, version int) message {
	return message{id, service.ChannelLineAllocated, map[string]any{"orderid": orderID, "sku": "LAMP", "batchref": ref, "version": version}}
}

func lineDeallocated(id, orderID, ref string, version int) message {
	return message{id, service.ChannelLineDeallocated, map[string]any{"orderid": orderID, "sku": "LAMP", "batchref": ref, "reason": "batch_quantity_changed", "version": version}}
}

// send delivers m, and again when twice (a redelivery: same id).
func (f *fixture) send(t *testing.T, twice bool, ms ...message) {
	t.Helper()
	for _, m := range ms {
		f.deliver(t, m.id, m.channel, m.payload)
		if twice {
			f.deliver(t, m.id, m.channel, m.payload)
		}
	}
}

func (f *fixture) report(t *testing.T, ref, kind string, qty int) *domain.Batch {
	t.Helper()
	res, err := f.bus.Handle(context.Background(), service.ReportStock{BatchRef: ref, Kind: kind, Qty: qty})
	if err != nil {
		t.Fatalf("reporting %s of %d on %s: %v", kind, qty, ref, err)
	}
	return res.(*domain.Batch)
}

func (f *fixture) qty(t *testing.T, ref string, want int, when string) {
	t.Helper()
	b := f.batch(t, ref)
	if b == nil {
		t.Fatalf("%s: the warehouse knows no batch %s", when, ref)
	}
	if b.Qty != want {
		t.Fatalf("%s: %s holds %d, want %d (announced %+v, dispatched %d, reports %+v)", when, ref, b.Qty, want, b.Announced, b.Dispatched, b.Reports)
	}
}

type dispatchedLine struct {
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref"`
}

// dispatches returns the goods_dispatched sent, by order.
func (f *fixture) dispatches(t *testing.T) map[string][][]dispatchedLine {
	t.Helper()
	out := map[string][][]dispatchedLine{}
	for _, p := range f.sent(t)[service.ChannelGoodsDispatched] {
		var g struct {
			OrderID string           `json:"orderid"`
			Lines   []dispatchedLine `json:"lines"`
		}
		if err := json.Unmarshal([]byte(p), &g); err != nil {
			t.Fatal(err)
		}
		out[g.OrderID] = append(out[g.OrderID], g.Lines)
	}
	return out
}

func (f *fixture) status(t *testing.T, orderID string) string {
	t.Helper()
	s, err := f.h.Shipment(context.Background(), orderID)
	if err != nil {
		t.Fatal(err)
	}
	return s.Status()
}

// Scenario A of the issue: the warehouse dispatches 3 of a batch of 10
// and reports 1 damaged; the allocation service's announcements cross the
// damage report. The warehouse's batch shows 6 throughout.
func TestScenarioADamageAfterDispatch(t *testing.T) {
	for _, twice := range []bool{false, true} {
		name := "delivered once"
		if twice {
			name = "every message redelivered"
		}
		t.Run(name, func(t *testing.T) {
			f := setup(t)
			f.send(t, twice, batchCreated("m1", "b1", 10, 1), orderPlaced("m2", "o1", 3), lineAllocated("m3", "o1", "b1", 2))
			want := map[string][][]dispatchedLine{"o1": {{{SKU: "LAMP", Qty: 3, BatchRef: "b1"}}}}
			if got := f.dispatches(t); !reflect.DeepEqual(got, want) {
				t.Fatalf("goods_dispatched %+v, want %+v", got, want)
			}
			f.qty(t, "b1", 7, "dispatched 3")

			if b := f.report(t, "b1", domain.ReportDamage, 1); b.Qty != 6 {
				t.Fatalf("the damage report answered qty %d, want 6", b.Qty)
			}
			const reported = `{"batchref":"b1","sku":"LAMP","kind":"damage","qty":1,"seq":1,"dispatched":3}`
			if got := f.sent(t)[service.ChannelStockReported]; !reflect.DeepEqual(got, []string{reported}) {
				t.Fatalf("stock_reported %v, want [%s]", got, reported)
			}
			f.qty(t, "b1", 6, "1 damaged")
			// Damage beyond what the warehouse reckons on the shelf: a conflict.
			if _, err := f.bus.Handle(context.Background(), service.ReportStock{BatchRef: "b1", Kind: domain.ReportDamage, Qty: 7}); !errors.Is(err, fail.Conflict) {
				t.Fatalf("damaging 7 of 6: %v, want a conflict", err)
			}

			// Allocation announces the dispatch, not the damage yet.
			f.send(t, twice, quantityChanged("m4", "b1", 7, 3, 0, 3))
			f.qty(t, "b1", 6, "announced 7, dispatched 3, report_seq 0")
			// Then the damage.
			f.send(t, twice, quantityChanged("m5", "b1", 6, 3, 1, 4))
			f.qty(t, "b1", 6, "announced 6, dispatched 3, report_seq 1")
			// The older announcement again, as a new message: stale.
			f.send(t, twice, quantityChanged("m6", "b1", 7, 3, 0, 3))
			f.qty(t, "b1", 6, "the stale announcement resent")

			sent := f.sent(t)
			if len(sent[service.ChannelGoodsDispatched]) != 1 || len(sent[service.ChannelStockReported]) != 1 || len(sent) != 2 {
				t.Errorf("sent %v, want one goods_dispatched and one stock_reported", sent)
			}
			b := f.batch(t, "b1")
			if b.Dispatched != 3 || b.Announced.Version != 4 || len(b.Reports) != 1 || len(b.Held) != 0 {
				t.Errorf("batch %+v", b)
			}
		})
	}
}

// A line allocated to a batch the warehouse has not heard of yet: the
// shipment waits for the batch's announcement.
func TestShipmentHeldUntilTheBatchIsAnnounced(t *testing.T) {
	for _, twice := range []bool{false, true} {
		t.Run(map[bool]string{false: "delivered once", true: "every message redelivered"}[twice], func(t *testing.T) {
			f := setup(t)
			f.send(t, twice, lineAllocated("m1", "o1", "b1", 2), orderPlaced("m2", "o1", 3))
			if got := f.dispatches(t); len(got) != 0 {
				t.Fatalf("dispatched from a batch not announced: %+v", got)
			}
			if st := f.status(t, "o1"); st != domain.ShipmentWaiting {
				t.Fatalf("status %s, want waiting", st)
			}
			if b := f.batch(t, "b1"); b == nil || b.Qty != 0 || !reflect.DeepEqual(b.Held, []string{"o1"}) {
				t.Fatalf("batch %+v, want empty, holding o1", b)
			}

			f.send(t, twice, batchCreated("m3", "b1", 10, 1))
			want := map[string][][]dispatchedLine{"o1": {{{SKU: "LAMP", Qty: 3, BatchRef: "b1"}}}}
			if got := f.dispatches(t); !reflect.DeepEqual(got, want) {
				t.Fatalf("goods_dispatched %+v, want %+v", got, want)
			}
			if st := f.status(t, "o1"); st != domain.ShipmentDispatched {
				t.Fatalf("status %s, want dispatched", st)
			}
			f.qty(t, "b1", 7, "created, then o1 dispatched")
			if b := f.batch(t, "b1"); len(b.Held) != 0 || b.Dispatched != 3 || b.SKU != "LAMP" {
				t.Fatalf("batch %+v", b)
			}
			// The announcement again, as a new message: nothing more.
			f.send(t, twice, batchCreated("m4", "b1", 10, 1))
			f.qty(t, "b1", 7, "batch_created resent")
			if got := f.dispatches(t); len(got["o1"]) != 1 {
				t.Fatalf("goods_dispatched %+v", got)
			}
		})
	}
}

// Orders held for goods the batch lacks leave when the batch gains them:
// by an announcement, or by a count; not by a stale announcement.
func TestHeldOrdersLeaveWhenTheBatchRises(t *testing.T) {
	f := setup(t)
	f.send(t, false, batchCreated("m1", "b1", 4, 2))
	f.send(t, false, orderPlaced("p1", "o1", 3), lineAllocated("a1", "o1", "b1", 3))
	f.send(t, false, orderPlaced("p2", "o2", 3), lineAllocated("a2", "o2", "b1", 4))
	f.send(t, false, orderPlaced("p3", "o3", 2), lineAllocated("a3", "o3", "b1", 5))
	if got := f.dispatches(t); len(got) != 1 || len(got["o1"]) != 1 {
		t.Fatalf("goods_dispatched %+v, want o1 alone", got)
	}
	f.qty(t, "b1", 1, "o1 dispatched")
	if b := f.batch(t, "b1"); !reflect.DeepEqual(b.Held, []string{"o2", "o3"}) {
		t.Fatalf("held %v, want [o2 o3]", b.Held)
	}

	f.send(t, false, quantityChanged("m2", "b1", 9, 0, 0, 1)) // stale
	if got := f.dispatches(t); len(got) != 1 {
		t.Fatalf("a stale announcement dispatched %+v", got)
	}
	f.qty(t, "b1", 1, "stale announcement")

	// A count finds 3 more: o2 leaves, o3 is held again.
	if b := f.report(t, "b1", domain.ReportCount, 4); b.Qty != 1 {
		t.Fatalf("the count answered qty %d, want 1 (4 counted, 3 left with o2)", b.Qty)
	}
	got := f.dispatches(t)
	if len(got) != 2 || len(got["o2"]) != 1 {
		t.Fatalf("goods_dispatched %+v, want o1 and o2", got)
	}
	if b := f.batch(t, "b1"); !reflect.DeepEqual(b.Held, []string{"o3"}) || b.Dispatched != 6 {
		t.Fatalf("batch %+v, want o3 held, 6 dispatched", b)
	}
	const counted = `{"batchref":"b1","sku":"LAMP","kind":"count","qty":4,"seq":1,"dispatched":3}`
	if got := f.sent(t)[service.ChannelStockReported]; !reflect.DeepEqual(got, []string{counted}) {
		t.Fatalf("stock_reported %v, want [%s]", got, counted)
	}

	// The allocation service announces more (the book's change): o3 leaves.
	f.send(t, false, quantityChanged("m3", "b1", 5, 6, 1, 6))
	if got := f.dispatches(t); len(got) != 3 || len(got["o3"]) != 1 {
		t.Fatalf("goods_dispatched %+v, want o1, o2 and o3", got)
	}
	f.qty(t, "b1", 3, "o3 dispatched")
	if b := f.batch(t, "b1"); len(b.Held) != 0 {
		t.Fatalf("held %v after every order left", b.Held)
	}
}

// The allocation service's versions order the news of a line, whichever
// channel brings it first.
func TestShipmentFollowsTheNewestAllocation(t *testing.T) {
	f := setup(t)
	f.send(t, false, batchCreated("c1", "b1", 10, 1), batchCreated("c2", "b2", 10, 2))
	f.send(t, false, lineDeallocated("d1", "o1", "b1", 6), orderPlaced("p1", "o1", 3))
	f.send(t, false, lineAllocated("a1", "o1", "b1", 5)) // older than the deallocation
	if got := f.dispatches(t); len(got) != 0 {
		t.Fatalf("dispatched on stale news: %+v", got)
	}
	if st := f.status(t, "o1"); st != domain.ShipmentWaiting {
		t.Fatalf("status %s, want waiting", st)
	}
	f.send(t, false, lineAllocated("a2", "o1", "b2", 7))
	want := map[string][][]dispatchedLine{"o1": {{{SKU: "LAMP", Qty: 3, BatchRef: "b2"}}}}
	if got := f.dispatches(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("goods_dispatched %+v, want %+v", got, want)
	}
	f.qty(t, "b1", 10, "b1 after o1 left from b2")
	f.qty(t, "b2", 7, "b2 after o1 left from it")
}
