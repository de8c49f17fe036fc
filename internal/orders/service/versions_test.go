package service_test

import (
	"testing"

	"github.com/stockflow/stockflow/internal/orders/domain"
	"github.com/stockflow/stockflow/internal/orders/service"
)

// The allocation service's versions reach the order through the messages:
// scenario C of the issue, out_of_stock (read at version 6) arriving
// before the line_allocated (version 5) and line_deallocated (version 6)
// that preceded it, leaves the line waiting for stock; the news survives
// the store.
func TestVersionsOrderTheNewsOfALine(t *testing.T) {
	f := setup(t)
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	f.handle(t, domain.PlaceOrder{OrderID: o.ID})
	f.deliver(t, "m1", service.ChannelOutOfStock, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "version": 6})
	f.deliver(t, "m2", service.ChannelLineAllocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b1", "version": 5})
	f.deliver(t, "m3", service.ChannelLineDeallocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b1", "reason": "batch_quantity_changed", "version": 6})
	v := f.order(t, o.ID)
	if v.Status != domain.StatusWaiting || v.Lines[0].BatchRef != "" {
		t.Fatalf("status %s, line %+v; want waiting_for_stock in no batch", v.Status, v.Lines[0])
	}
	f.deliver(t, "m4", service.ChannelLineAllocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b2", "version": 7})
	if v := f.order(t, o.ID); v.Status != domain.StatusReserved || v.Lines[0].BatchRef != "b2" {
		t.Fatalf("status %s, line %+v; want reserved in b2", v.Status, v.Lines[0])
	}
	// Messages of an earlier version carry no version: the old rules.
	f.deliver(t, "m5", service.ChannelLineDeallocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b2", "reason": "batch_quantity_changed"})
	if v := f.order(t, o.ID); v.Status != domain.StatusPending || v.Lines[0].State != domain.LineMoving {
		t.Fatalf("status %s, line %+v; want pending, moving", v.Status, v.Lines[0])
	}
}
