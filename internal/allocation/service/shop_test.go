package service_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
)

// eventTypes names the events in raised.
func eventTypes(raised []messaging.Raised) []string {
	var out []string
	for _, r := range raised {
		out = append(out, reflect.TypeOf(r.Event).Name())
	}
	return out
}

func TestReserveCartItem(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	for _, c := range []struct {
		name string
		ev   service.CartItemAdded
		want []string
	}{
		{"in stock", service.CartItemAdded{OrderID: "o1", SKU: "S", Qty: 4}, []string{"Allocated"}},
		{"not enough", service.CartItemAdded{OrderID: "o2", SKU: "S", Qty: 7}, []string{"OutOfStock"}},
		{"a sku without batches is out of stock", service.CartItemAdded{OrderID: "o3", SKU: "NOPE", Qty: 1}, []string{"OutOfStock"}},
	} {
		raised, err := f.handlers.ReserveCartItem(t.Context(), c.ev)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := eventTypes(raised); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: raised %v, want %v", c.name, got, c.want)
		}
		// Only a sku nobody stocks is told apart: it says "Invalid sku",
		// as POST /allocate does.
		for _, r := range raised {
			if oos, ok := r.Event.(domain.OutOfStock); ok && oos.UnknownSKU != (c.ev.SKU == "NOPE") {
				t.Errorf("%s: unknown_sku = %v", c.name, oos.UnknownSKU)
			}
		}
	}
}

func TestReleaseCancelledOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "c1", "T", 10, noETA)
	f.allocate(t, "o1", "S", 10)
	f.allocate(t, "o1", "T", 2)
	ev := service.OrderCancelled{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 10}, {SKU: "T", Qty: 2}, {SKU: "NEVER", Qty: 1}}}
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m1", Consumer: "allocation.release_cancelled_order"})
	raised, err := f.handlers.ReleaseCancelledOrder(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventTypes(raised); !reflect.DeepEqual(got, []string{"Deallocated", "Deallocated"}) {
		t.Fatalf("raised %v, want two Deallocated", got)
	}
	// Redelivered: every line was done, nothing happens.
	if raised, err := f.handlers.ReleaseCancelledOrder(ctx, ev); err != nil || len(raised) != 0 {
		t.Fatalf("redelivery raised %v, %v", eventTypes(raised), err)
	}
	// Released again (a crossed message): nothing held, nothing to do.
	again := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m2", Consumer: "allocation.release_cancelled_order"})
	if raised, err := f.handlers.ReleaseCancelledOrder(again, ev); err != nil || len(raised) != 0 {
		t.Fatalf("a second release raised %v, %v", eventTypes(raised), err)
	}
	if got := f.allocate(t, "o2", "S", 10); got != "b1" {
		t.Errorf("the freed stock went to %q, want b1", got)
	}
}

func TestDispatchOrderTakesTheStockOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.allocate(t, "o1", "S", 3)
	f.allocate(t, "o2", "S", 2)
	raised, err := f.handlers.DispatchOrder(context.Background(), service.GoodsDispatched{OrderID: "o1", Lines: []service.Item{{SKU: "S", Qty: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := eventTypes(raised); !reflect.DeepEqual(got, []string{"BatchQuantityChanged", "Deallocated"}) {
		t.Fatalf("raised %v", got)
	}
	if d := raised[1].Event.(domain.Deallocated); d.Reason != domain.ReasonDispatched || d.BatchRef != "b1" {
		t.Errorf("Deallocated %+v, want reason dispatched from b1", d)
	}
	// 7 units left, 2 of them allocated to o2: the batch holds only o2.
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 7, Allocated: 2, Dispatched: 3, Lines: []domain.OrderLine{line("o2", "S", 2)}})
	// Dispatching what is not allocated here changes nothing.
	if raised, err := f.handlers.DispatchOrder(context.Background(), service.GoodsDispatched{OrderID: "o9", Lines: []service.Item{{SKU: "S", Qty: 1}}}); err != nil || len(raised) != 0 {
		t.Fatalf("dispatching an unknown line: %v, %v", eventTypes(raised), err)
	}
}

// The shop's lines wait for stock; each consumer of the waiting list's
// messages applies a message once, however often it is delivered.
func TestWaitingListHandlers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	deliver := func(id, consumer string) context.Context {
		return messaging.WithMeta(t.Context(), messaging.Meta{MessageID: id, Consumer: consumer})
	}
	reserve := func(id, order, customer string, qty int) []string {
		t.Helper()
		raised, err := f.handlers.ReserveCartItem(deliver(id, "allocation.reserve_cart_item"), service.CartItemAdded{OrderID: order, SKU: "LAMP", Qty: qty, Customer: customer})
		if err != nil {
			t.Fatal(err)
		}
		return eventTypes(raised)
	}
	f.createBatch(t, "b1", "LAMP", 2, noETA)
	if got := reserve("c1", "o1", "ann", 2); !reflect.DeepEqual(got, []string{"Allocated"}) {
		t.Fatalf("ann's line: %v", got)
	}
	if got := reserve("c2", "o2", "bob", 3); !reflect.DeepEqual(got, []string{"OutOfStock"}) {
		t.Fatalf("bob's line: %v, want it to wait", got)
	}
	if got := reserve("c2", "o2", "bob", 3); len(got) != 0 {
		t.Fatalf("bob's line redelivered: %v", got)
	}
	if got := reserve("c3", "o3", "cid", 2); !reflect.DeepEqual(got, []string{"OutOfStock"}) {
		t.Fatalf("cid's line: %v, want it to wait", got)
	}

	// cid becomes a VIP: his line goes first (nothing to serve it yet).
	promote := func() []string {
		raised, err := f.handlers.PromoteVIP(deliver("v1", "allocation.promote_vip"), service.CustomerBecameVIP{Customer: "cid"})
		if err != nil {
			t.Fatal(err)
		}
		return eventTypes(raised)
	}
	if got := promote(); len(got) != 0 {
		t.Fatalf("promotion raised %v", got)
	}
	if got := promote(); len(got) != 0 {
		t.Fatalf("promotion redelivered raised %v", got)
	}

	// Ann's cart expires: her 2 units go to cid, the VIP, though bob waited
	// longer; redelivered, nothing more happens.
	expire := func() []string {
		raised, err := f.handlers.ReleaseExpiredCart(deliver("x1", "allocation.release_expired_cart"),
			service.ReservationExpired{OrderID: "o1", Lines: []service.Item{{SKU: "LAMP", Qty: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		return eventTypes(raised)
	}
	if got := expire(); !reflect.DeepEqual(got, []string{"Deallocated", "Allocated"}) {
		t.Fatalf("expiry raised %v, want ann's line freed and cid's served", got)
	}
	if got := expire(); len(got) != 0 {
		t.Fatalf("expiry redelivered raised %v", got)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "LAMP", Purchased: 2, Allocated: 2,
		Lines: []domain.OrderLine{{OrderID: "o3", SKU: "LAMP", Qty: 2, Customer: "cid"}}})

	// Bob cancels: his line leaves the waiting list.
	raised, err := f.handlers.ReleaseCancelledOrder(deliver("k1", "allocation.release_cancelled_order"),
		service.OrderCancelled{OrderID: "o2", Lines: []service.Item{{SKU: "LAMP", Qty: 3}}})
	if err != nil || !reflect.DeepEqual(eventTypes(raised), []string{"BackorderCancelled"}) {
		t.Fatalf("cancellation of a waiting line: %v, %v", eventTypes(raised), err)
	}
	p, err := f.handlers.Product(t.Context(), "LAMP")
	if err != nil || len(p.Waiting) != 0 || p.Free != 0 {
		t.Fatalf("product %+v, %v: want nobody waiting, nothing free", p, err)
	}
}
