package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// product is GET /products/{sku}: its stock and its waiting list.
type product struct {
	SKU     string `json:"sku"`
	Waiting []struct {
		OrderID  string `json:"orderid"`
		Qty      int    `json:"qty"`
		Customer string `json:"customer"`
		VIP      bool   `json:"vip"`
	} `json:"waiting"`
	Available int `json:"available"`
}

func (sh *shop) product(t *testing.T, sku string) (product, bool) {
	t.Helper()
	r := sh.at("allocation").do(t, http.MethodGet, "/products/"+sku, nil)
	if r.Status == http.StatusNotFound {
		return product{}, false
	}
	expect(t, r, http.StatusOK)
	var p product
	r.decode(t, &p)
	return p, true
}

// waitWaiting waits until the waiting list of sku is orders, in order,
// each with its VIP mark when vip names it.
func (sh *shop) waitWaiting(t *testing.T, sku string, orders []string, vip map[string]bool) {
	t.Helper()
	await(t, sku+"'s waiting list", func() string {
		p, ok := sh.product(t, sku)
		if !ok {
			return "no product yet"
		}
		var got []string
		for _, w := range p.Waiting {
			if w.VIP != vip[w.OrderID] {
				return fmt.Sprintf("%s VIP %v", w.OrderID, w.VIP)
			}
			got = append(got, w.OrderID)
		}
		if strings.Join(got, ",") != strings.Join(orders, ",") {
			return fmt.Sprintf("waiting %v, want %v", got, orders)
		}
		return ""
	})
}

func (o order) detail(event string) string {
	for _, h := range o.History {
		if h.Event == event {
			return h.Detail
		}
	}
	return ""
}

// makeVIP makes cust a VIP, if they are not yet, as the CRM does: three
// placed orders.
func (sh *shop) makeVIP(t *testing.T, cust string) {
	t.Helper()
	if c, ok := sh.customer(t, cust); ok && c.VIP {
		return
	}
	sku := "VIP-MUG-" + cust
	sh.at("allocation").addBatch(t, uniq("vip-mug"), sku, 3, "")
	for range 3 {
		id := sh.newOrder(t, cust)
		sh.addItem(t, id, sku, 1)
		sh.waitStatus(t, id, "reserved")
		expect(t, sh.at("orders").post(t, "/orders/"+id+"/place", nil), http.StatusOK)
	}
	await(t, cust+" a VIP", func() string {
		if c, _ := sh.customer(t, cust); !c.VIP {
			return "not yet"
		}
		return ""
	})
}

// runBackorderFlows drives the backorder flows 6, 7 and 9 on a running
// shop.
func runBackorderFlows(t *testing.T, sh *shop) {
	alloc := sh.at("allocation")
	wh := sh.at("warehouse")

	// Flow 6: an out-of-stock cart line is reserved when a batch arrives,
	// and the placed order is dispatched; the customer hears of it.
	t.Run("BackorderFilledWhenStockArrives", func(t *testing.T) {
		id := sh.newOrder(t, "jane")
		sh.addItem(t, id, "F6-LAMP", 2)
		sh.waitStatus(t, id, "waiting_for_stock")
		expect(t, sh.at("orders").post(t, "/orders/"+id+"/place", nil), http.StatusOK)
		sh.waitWaiting(t, "F6-LAMP", []string{id}, nil)
		// The book's API knows no batch of it: 400, as the book answers.
		expectMessageContains(t, alloc.allocate(t, "f6-direct", "F6-LAMP", 1), http.StatusBadRequest, "Invalid sku")

		alloc.addBatch(t, "f6-b1", "F6-LAMP", 5, "")
		o := sh.waitStatus(t, id, "dispatched")
		if d := o.detail("stock_arrived"); !strings.Contains(d, "F6-LAMP arrived") || !strings.Contains(d, "f6-b1") {
			t.Errorf("history %s: stock_arrived %q", o.events(), d)
		}
		await(t, "jane told her order got its stock", func() string {
			if n := countNotifications(sh.notifications(t), "backorder_filled", "F6-LAMP"); n != 1 {
				return fmt.Sprintf("%d backorder_filled notifications", n)
			}
			return ""
		})
		if p, _ := sh.product(t, "F6-LAMP"); len(p.Waiting) != 0 || p.Available != 3 {
			t.Errorf("F6-LAMP %+v, want nobody waiting and 3 available", p)
		}
	})

	// Flow 7: two customers wait; the VIP gets the stock first though they
	// waited less, the other the next stock.
	t.Run("VIPServedFirst", func(t *testing.T) {
		sh.makeVIP(t, "erin")
		// Placed, so that their carts do not expire while they wait.
		first := sh.newOrder(t, "kurt")
		sh.addItem(t, first, "F7-CHAIR", 4)
		sh.waitStatus(t, first, "waiting_for_stock")
		expect(t, sh.at("orders").post(t, "/orders/"+first+"/place", nil), http.StatusOK)
		vip := sh.newOrder(t, "erin")
		sh.addItem(t, vip, "F7-CHAIR", 4)
		sh.waitStatus(t, vip, "waiting_for_stock")
		expect(t, sh.at("orders").post(t, "/orders/"+vip+"/place", nil), http.StatusOK)
		sh.waitWaiting(t, "F7-CHAIR", []string{vip, first}, map[string]bool{vip: true})

		alloc.addBatch(t, "f7-b1", "F7-CHAIR", 6, "")
		sh.waitStatus(t, vip, "dispatched")
		time.Sleep(300 * time.Millisecond)
		if o := sh.order(t, first); o.Status != "waiting_for_stock" {
			t.Fatalf("kurt's order %s with 2 units left for his 4 (strict: the first in line is served first)", o.Status)
		}
		// A line is never split between batches: 2 more units in another
		// batch do not make 4 for kurt; 4 do.
		alloc.addBatch(t, "f7-b2", "F7-CHAIR", 2, "")
		alloc.addBatch(t, "f7-b3", "F7-CHAIR", 4, "")
		sh.waitStatus(t, first, "dispatched")
		if r := wh.do(t, http.MethodGet, "/warehouse/shipments/"+first, nil); !strings.Contains(string(r.Body), "f7-b3") {
			t.Errorf("kurt's shipment %s, want his goods from f7-b3", r.Body)
		}
	})

	// Flow 9: damage pushes a line out with nowhere to go; it waits, and a
	// stock count brings it back.
	t.Run("DamageThenCount", func(t *testing.T) {
		alloc.addBatch(t, "f9-b1", "F9-RUG", 4, "")
		await(t, "the warehouse knows batch f9-b1", func() string {
			if r := wh.do(t, http.MethodGet, "/warehouse/batches/f9-b1", nil); r.Status != http.StatusOK {
				return r.String()
			}
			return ""
		})
		// A cart, not placed: a placed order would leave at once.
		id := sh.newOrder(t, "lena")
		sh.addItem(t, id, "F9-RUG", 3)
		sh.waitStatus(t, id, "reserved")
		expect(t, wh.post(t, "/warehouse/batches/f9-b1/damage", map[string]any{"qty": 2, "note": "moth"}), http.StatusAccepted)
		sh.waitStatus(t, id, "waiting_for_stock")
		sh.waitWaiting(t, "F9-RUG", []string{id}, nil)
		expect(t, wh.post(t, "/warehouse/batches/f9-b1/count", map[string]any{"qty": 4, "note": "found behind the shelf"}), http.StatusAccepted)
		o := sh.waitStatus(t, id, "reserved")
		if o.Lines[0].BatchRef != "f9-b1" || !strings.Contains(o.events(), "stock_arrived") {
			t.Errorf("line in %q, history %s", o.Lines[0].BatchRef, o.events())
		}
	})
}

// The backorder and expiry flows, as separate processes on the other
// durable brokers (Redis Streams runs them in TestShopFlowsAsSeparateProcesses
// and TestReservationsExpireAsSeparateProcesses).
func TestBackordersOnEveryBroker(t *testing.T) {
	for _, b := range []struct {
		name  string
		start func(*testing.T) *testBroker
	}{{"nats", startNATSBroker}, {"kafka", startKafkaBroker}} {
		t.Run(b.name, func(t *testing.T) {
			// Long enough for the carts of flows 6, 7 and 9 to be placed or
			// done before they expire; flow 8 waits for its cart's expiry.
			sh := startShopInProcesses(t, b.start(t), "--reservation-ttl", "8s")
			runBackorderFlows(t, sh)
			t.Run("CartExpires", func(t *testing.T) { runExpiryFlow(t, sh) })
		})
	}
}
