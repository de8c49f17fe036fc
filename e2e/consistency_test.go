package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// The services must agree about stock whatever order the broker delivers
// facts in. Each case holds a service back (SIGTERM, as in flow 5), so
// that the facts it misses meanwhile reach it together, in whatever order
// the broker hands them over, and checks that the books balance once it is
// back. They run as separate processes on Redis Streams.

// batchView is the allocation service's GET /batches/{ref}.
type batchView struct {
	Qty        int `json:"qty"`
	Allocated  int `json:"allocated"`
	Available  int `json:"available"`
	Dispatched int `json:"dispatched"`
	Lines      []struct {
		OrderID string `json:"orderid"`
		Qty     int    `json:"qty"`
	} `json:"lines"`
}

// warehouseBatch is the warehouse's GET /warehouse/batches/{ref}.
type warehouseBatch struct {
	Qty int `json:"qty"`
}

func (sh *shop) allocBatch(t *testing.T, ref string) batchView {
	t.Helper()
	r := sh.at("allocation").do(t, http.MethodGet, "/batches/"+ref, nil)
	expect(t, r, http.StatusOK)
	var b batchView
	r.decode(t, &b)
	return b
}

func (sh *shop) warehouseBatch(t *testing.T, ref string) warehouseBatch {
	t.Helper()
	r := sh.at("warehouse").do(t, http.MethodGet, "/warehouse/batches/"+ref, nil)
	expect(t, r, http.StatusOK)
	var b warehouseBatch
	r.decode(t, &b)
	return b
}

// waitBooks waits until both the allocation service and the warehouse say
// the batch holds qty units, and the allocation service promises no more
// than that.
func (sh *shop) waitBooks(t *testing.T, ref string, qty int) batchView {
	t.Helper()
	var b batchView
	await(t, fmt.Sprintf("batch %s holds %d units in every service", ref, qty), func() string {
		b = sh.allocBatch(t, ref)
		w := sh.warehouseBatch(t, ref)
		if b.Qty != qty || w.Qty != qty || b.Allocated > b.Qty {
			return fmt.Sprintf("allocation %+v, warehouse %+v", b, w)
		}
		return ""
	})
	return b
}

// reserve opens a cart for cust with qty of sku and waits for it to be
// reserved.
func (sh *shop) reserve(t *testing.T, cust, sku string, qty int) string {
	t.Helper()
	id := sh.newOrder(t, cust)
	sh.addItem(t, id, sku, qty)
	sh.waitStatus(t, id, "reserved")
	return id
}

// holdBack stops a service (SIGTERM), runs hold, and starts it again, to
// live as long as the test top (not the subtest that holds it back).
func (sh *shop) holdBack(top *testing.T, name string, hold func()) {
	top.Helper()
	sh.at(name).stop()
	hold()
	sh.startService(top, name)
}

func TestServicesAgreeAboutStock(t *testing.T) {
	top := t
	sh := startShopInProcesses(t, startRedisStreamsBroker(t))

	// A: a damage report does not give back units just dispatched. The
	// warehouse dispatches 3 of 10 and finds 1 damaged while the
	// allocation service is away: it must end with 6, not 9.
	t.Run("DamageAfterDispatch", func(t *testing.T) {
		sh.at("allocation").addBatch(t, "a-b1", "A-LAMP", 10, "")
		id := sh.reserve(t, "amy", "A-LAMP", 3)
		sh.holdBack(top, "allocation", func() {
			expect(t, sh.at("orders").post(t, "/orders/"+id+"/place", nil), http.StatusOK)
			sh.waitStatus(t, id, "dispatched")
			expect(t, sh.at("warehouse").post(t, "/warehouse/batches/a-b1/damage", map[string]any{"qty": 1}), http.StatusAccepted)
		})
		b := sh.waitBooks(t, "a-b1", 6)
		if b.Dispatched != 3 || b.Allocated != 0 {
			t.Errorf("batch %+v, want 3 dispatched and nothing allocated", b)
		}
		alloc := sh.at("allocation")
		expectMessage(t, alloc.allocate(t, "a-big", "A-LAMP", 7), http.StatusConflict, "Out of stock for sku A-LAMP")
		expect(t, alloc.allocate(t, "a-fits", "A-LAMP", 6), http.StatusCreated)
	})

	// A, the other way round: goods dispatched before a stock count are
	// not taken out again when the dispatch is applied after the count.
	t.Run("CountAfterDispatch", func(t *testing.T) {
		sh.at("allocation").addBatch(t, "a2-b1", "A2-LAMP", 10, "")
		id := sh.reserve(t, "abe", "A2-LAMP", 3)
		sh.holdBack(top, "allocation", func() {
			expect(t, sh.at("orders").post(t, "/orders/"+id+"/place", nil), http.StatusOK)
			sh.waitStatus(t, id, "dispatched")
			expect(t, sh.at("warehouse").post(t, "/warehouse/batches/a2-b1/count", map[string]any{"qty": 7}), http.StatusAccepted)
		})
		sh.waitBooks(t, "a2-b1", 7)
		expect(t, sh.at("allocation").allocate(t, "a2-all", "A2-LAMP", 7), http.StatusCreated)
	})

	// B: goods that left a batch are taken out of it though the line was
	// moved out of it meanwhile. Five lines of one unit fill a batch of 5;
	// with the allocation service away, a unit is found damaged (so the
	// latest line must move) and the warehouse ships that latest line from
	// the batch all the same: 3 units are left there.
	t.Run("DispatchOfAMovedLine", func(t *testing.T) {
		a := sh.at("allocation")
		a.addBatch(t, "b-b1", "B-RUG", 5, "")
		a.addBatch(t, "b-b2", "B-RUG", 10, "2031-01-01")
		var ids []string
		for i := range 5 {
			ids = append(ids, sh.reserve(t, fmt.Sprintf("bo%d", i), "B-RUG", 1))
		}
		last := ids[4]
		sh.holdBack(top, "allocation", func() {
			expect(t, sh.at("warehouse").post(t, "/warehouse/batches/b-b1/damage", map[string]any{"qty": 1}), http.StatusAccepted)
			expect(t, sh.at("orders").post(t, "/orders/"+last+"/place", nil), http.StatusOK)
			sh.waitStatus(t, last, "dispatched")
		})
		b := sh.waitBooks(t, "b-b1", 3)
		for _, l := range b.Lines {
			if l.OrderID == last {
				t.Errorf("the dispatched line is still allocated in b-b1: %+v", b)
			}
		}
		await(t, "the dispatched line holds nothing in b-b2", func() string {
			for _, l := range sh.allocBatch(t, "b-b2").Lines {
				if l.OrderID == last {
					return "b-b2 still holds the dispatched order's line"
				}
			}
			return ""
		})
		// Every other line is reserved where a batch holds it.
		sh.checkLinesHeld(t, ids[:4])
	})

	// B: goods dispatched before the cancellation reached the warehouse.
	// The allocation service released the line (the order was cancelled,
	// here by POST /deallocate) when it hears that the warehouse shipped it
	// all the same: the goods must still leave the batch they left from.
	// The warehouse's goods_dispatched is sent from the test, as the
	// warehouse sends it.
	t.Run("DispatchOfAReleasedLine", func(t *testing.T) {
		a := sh.at("allocation")
		a.addBatch(t, "c-b1", "C-DESK", 10, "")
		expect(t, a.allocate(t, "c-o1", "C-DESK", 3), http.StatusCreated)
		expect(t, a.post(t, "/deallocate", lineBody("c-o1", "C-DESK", 3)), http.StatusOK)
		sh.b.publish(t, "goods_dispatched", "c-o1", map[string]any{"orderid": "c-o1", "customer": "cal", "dispatched_at": "2026-12-02T10:00:00Z",
			"lines": []any{map[string]any{"sku": "C-DESK", "qty": 3, "batchref": "c-b1"}}})
		await(t, "the goods leave c-b1", func() string {
			if b := sh.allocBatch(t, "c-b1"); b.Qty != 7 || b.Dispatched != 3 || b.Allocated != 0 {
				return fmt.Sprintf("batch %+v", b)
			}
			return ""
		})
		expectMessage(t, a.allocate(t, "c-big", "C-DESK", 10), http.StatusConflict, "Out of stock for sku C-DESK")
		expect(t, a.allocate(t, "c-fits", "C-DESK", 7), http.StatusCreated)
	})

	// C: the orders service applies line events in the allocation
	// service's order, whatever order it hears them in. Carts are reserved,
	// the orders service leaves (it may or may not have heard of the
	// reservations), and their batch is counted empty: each line is
	// deallocated and runs out of stock while it is away, and it hears of
	// it all together, on three channels.
	t.Run("LineEventsOutOfOrder", func(t *testing.T) {
		sh.at("allocation").addBatch(t, "d-b1", "D-SOFA", 10, "")
		var ids []string
		for i := range 5 {
			id := sh.newOrder(t, fmt.Sprintf("do%d", i))
			ids = append(ids, id)
			sh.addItem(t, id, "D-SOFA", 2)
		}
		await(t, "every line allocated", func() string {
			if b := sh.allocBatch(t, "d-b1"); b.Allocated != 10 {
				return fmt.Sprintf("allocated %d", b.Allocated)
			}
			return ""
		})
		sh.holdBack(top, "orders", func() {
			expect(t, sh.at("warehouse").post(t, "/warehouse/batches/d-b1/count", map[string]any{"qty": 0}), http.StatusAccepted)
			sh.waitBooks(t, "d-b1", 0)
		})
		for _, id := range ids {
			o := sh.waitStatus(t, id, "waiting_for_stock")
			if l := o.Lines[0]; l.State != "waiting_for_stock" || l.BatchRef != "" {
				t.Errorf("order %s: line %+v, want waiting for stock in no batch (history %s)", id, l, o.events())
			}
		}
	})
}

// checkLinesHeld waits until each order's lines are reserved in a batch
// that holds them.
func (sh *shop) checkLinesHeld(t *testing.T, ids []string) {
	t.Helper()
	await(t, "every line reserved where a batch holds it", func() string {
		for _, id := range ids {
			o := sh.order(t, id)
			for _, l := range o.Lines {
				if l.State != "reserved" {
					return fmt.Sprintf("order %s: line %s is %s (history %s)", id, l.SKU, l.State, o.events())
				}
				b := sh.allocBatch(t, l.BatchRef)
				held := false
				for _, bl := range b.Lines {
					held = held || bl.OrderID == id
				}
				if !held {
					return fmt.Sprintf("order %s: line %s reserved in %s, which holds %s", id, l.SKU, l.BatchRef, strings.TrimSpace(fmt.Sprint(b.Lines)))
				}
			}
		}
		return ""
	})
}
