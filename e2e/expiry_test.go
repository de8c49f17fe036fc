package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Flow 8: an unplaced cart expires, its stock goes to a waiting customer,
// and placing the expired cart is 409; adding an item reopens it.
func runExpiryFlow(t *testing.T, sh *shop) {
	t.Helper()
	alloc := sh.at("allocation")
	alloc.addBatch(t, "f8-b1", "F8-DESK", 5, "")
	ann := sh.newOrder(t, "ann")
	sh.addItem(t, ann, "F8-DESK", 5)
	sh.waitStatus(t, ann, "reserved")
	bob := sh.newOrder(t, "bob")
	sh.addItem(t, bob, "F8-DESK", 3)
	sh.waitStatus(t, bob, "waiting_for_stock")
	expect(t, sh.at("orders").post(t, "/orders/"+bob+"/place", nil), http.StatusOK)

	o := sh.waitStatus(t, ann, "expired")
	if !strings.Contains(o.detail("expired"), "released") || o.Lines[0].State != "released" {
		t.Errorf("ann's cart: history %s (%q), line %s", o.events(), o.detail("expired"), o.Lines[0].State)
	}
	// Bob's placed order waited longer than a cart may, and does not expire:
	// it got ann's stock, and left.
	o = sh.waitStatus(t, bob, "dispatched")
	if strings.Contains(o.events(), "expired") {
		t.Errorf("bob's placed order expired: %s", o.events())
	}
	expectMessageContains(t, sh.at("orders").post(t, "/orders/"+ann+"/place", nil), http.StatusConflict, "expired")

	// Ann adds an item again: a new reservation, on a new clock.
	sh.addItem(t, ann, "F8-DESK", 2)
	o = sh.waitStatus(t, ann, "reserved")
	if !strings.Contains(o.events(), "expired,reopened,item_added") {
		t.Errorf("ann's cart history %s", o.events())
	}
	expect(t, sh.at("orders").post(t, "/orders/"+ann+"/place", nil), http.StatusOK)
	sh.waitStatus(t, ann, "dispatched")
}

func TestReservationsExpireInOneProcess(t *testing.T) {
	runExpiryFlow(t, startShopInOneProcess(t, "--reservation-ttl", "2s"))
}

func TestReservationsExpireAsSeparateProcesses(t *testing.T) {
	sh := startShopInProcesses(t, startRedisStreamsBroker(t), "--reservation-ttl", "3s")
	runExpiryFlow(t, sh)

	// Flow 10: the service holding the timer is killed (SIGKILL) before the
	// timer is due, and started again after: the timer fires, once.
	t.Run("TimerSurvivesKill", func(t *testing.T) {
		sh.at("allocation").addBatch(t, "f10-b1", "F10-LAMP", 1, "")
		id := sh.newOrder(t, "carl")
		sh.addItem(t, id, "F10-LAMP", 1)
		sh.waitStatus(t, id, "reserved")
		sh.at("orders").kill()
		time.Sleep(4 * time.Second) // past due, nobody to fire it
		sh.startService(t, "orders")
		o := sh.waitStatus(t, id, "expired")
		time.Sleep(time.Second) // a second firing would show by now
		o = sh.order(t, id)
		if n := strings.Count(o.events(), "expired"); n != 1 || o.Status != "expired" {
			t.Fatalf("status %s, history %s: want expired once", o.Status, o.events())
		}
		await(t, "the lamp is free again", func() string {
			if p, ok := sh.product(t, "F10-LAMP"); !ok || p.Available != 1 {
				return "product " + sh.at("allocation").do(t, http.MethodGet, "/products/F10-LAMP", nil).String()
			}
			return ""
		})
	})
}
