package service

import (
	"encoding/json"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/valid"
)

// Channels of the messages the allocation service exchanges, named as in
// the book where the book names them.
const (
	ChannelChangeBatchQuantity  = "change_batch_quantity" // in: a batch's new quantity
	ChannelAllocate             = "allocate"              // in: allocate an order line
	ChannelDeallocate           = "deallocate"            // in: free an order line's stock
	ChannelBatchCreated         = "batch_created"
	ChannelBatchQuantityChanged = "batch_quantity_changed"
	ChannelLineAllocated        = "line_allocated"
	ChannelLineDeallocated      = "line_deallocated"
	ChannelOutOfStock           = "out_of_stock"
	ChannelBackorderCancelled   = "backorder_cancelled"

	// The shop's events the allocation service follows.
	ChannelCartItemAdded   = "cart_item_added"  // orders: reserve the item's stock
	ChannelOrderCancelled  = "order_cancelled"  // orders: release the order's stock
	ChannelGoodsDispatched = "goods_dispatched" // warehouse: the stock left
	ChannelStockReported   = "stock_reported"   // warehouse: a batch counted, or damage found
	// orders: a cart's reservations expired; release its stock.
	ChannelReservationExpired = "reservation_expired"
	// crm: a customer became a VIP; their waiting lines go first.
	ChannelCustomerBecameVIP = "customer_became_vip"
)

// Inbound are the channels the allocation service consumes.
var Inbound = []string{
	ChannelChangeBatchQuantity, ChannelAllocate, ChannelDeallocate,
	ChannelCartItemAdded, ChannelOrderCancelled, ChannelGoodsDispatched, ChannelStockReported,
	ChannelReservationExpired, ChannelCustomerBecameVIP,
}

// CartItemAdded is the orders service's cart_item_added, as allocation
// reads it: the customer's line waits for stock if none is free.
type CartItemAdded struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	Customer string `json:"customer"`
}

// Item is a line of an order, as the shop's events carry it; a line of
// goods_dispatched names the batch its goods left from.
type Item struct {
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref,omitempty"`
}

// OrderCancelled is the orders service's order_cancelled.
type OrderCancelled struct {
	OrderID string `json:"orderid"`
	Lines   []Item `json:"lines"`
}

// ReservationExpired is the orders service's reservation_expired: a cart
// was not placed in time.
type ReservationExpired struct {
	OrderID string `json:"orderid"`
	Lines   []Item `json:"lines"`
}

// CustomerBecameVIP is the CRM's customer_became_vip, as allocation reads
// it.
type CustomerBecameVIP struct {
	Customer string `json:"customer"`
}

// GoodsDispatched is the warehouse's goods_dispatched.
type GoodsDispatched struct {
	OrderID string `json:"orderid"`
	Lines   []Item `json:"lines"`
}

// StockReported is the warehouse's stock_reported: a worker counted a
// batch, or found damage in it (see domain.StockReport).
type StockReported struct {
	BatchRef   string `json:"batchref"`
	SKU        string `json:"sku"`
	Kind       string `json:"kind"`
	Qty        int    `json:"qty"`
	Seq        int    `json:"seq"`
	Dispatched int    `json:"dispatched"`
}

func (e StockReported) Validate() error {
	var err error
	switch {
	case e.Kind != domain.ReportCount && e.Kind != domain.ReportDamage:
		err = fail.Errorf(fail.Invalid, "kind must be %q or %q, got %q", domain.ReportCount, domain.ReportDamage, e.Kind)
	case e.Kind == domain.ReportCount && e.Qty < 0, e.Kind == domain.ReportDamage && e.Qty <= 0:
		err = fail.Errorf(fail.Invalid, "qty of a %s must not be %d", e.Kind, e.Qty)
	case e.Seq <= 0:
		err = fail.Errorf(fail.Invalid, "seq must be positive, got %d", e.Seq)
	case e.Dispatched < 0:
		err = fail.Errorf(fail.Invalid, "dispatched must not be negative, got %d", e.Dispatched)
	}
	return valid.First(domain.ValidateRef("batchref", e.BatchRef), domain.ValidateRef("sku", e.SKU), err)
}

func (e CartItemAdded) Validate() error {
	return domain.Allocate{OrderID: e.OrderID, SKU: e.SKU, Qty: e.Qty}.Validate()
}

func (e ReservationExpired) Validate() error { return validateLines(e.OrderID, e.Lines) }

func (e CustomerBecameVIP) Validate() error { return valid.Ref("customer", e.Customer) }

func (e OrderCancelled) Validate() error { return validateLines(e.OrderID, e.Lines) }

func (e GoodsDispatched) Validate() error { return validateLines(e.OrderID, e.Lines) }

func validateLines(orderID string, lines []Item) error {
	for _, l := range lines {
		if err := (domain.Deallocate{OrderID: orderID, SKU: l.SKU, Qty: l.Qty}).Validate(); err != nil {
			return err
		}
	}
	return domain.ValidateRef("orderid", orderID)
}

// Messages returns the registry of the allocation service's messages.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelChangeBatchQuantity, func(c domain.ChangeBatchQuantity) string { return c.Ref }, decodeChangeBatchQuantity)
	messaging.Register(r, ChannelAllocate, func(c domain.Allocate) string { return c.SKU }, decodeLine(func(l line) domain.Allocate { return domain.Allocate(l) }))
	messaging.Register(r, ChannelDeallocate, func(c domain.Deallocate) string { return c.SKU }, decodeLine(func(l line) domain.Deallocate { return domain.Deallocate(l) }))
	messaging.Register(r, ChannelBatchCreated, func(e domain.BatchCreated) string { return e.SKU }, nil)
	messaging.Register(r, ChannelBatchQuantityChanged, func(e domain.BatchQuantityChanged) string { return e.SKU }, nil)
	messaging.Register(r, ChannelLineAllocated, func(e domain.Allocated) string { return e.SKU }, nil)
	messaging.Register(r, ChannelLineDeallocated, func(e domain.Deallocated) string { return e.SKU }, nil)
	messaging.Register(r, ChannelOutOfStock, func(e domain.OutOfStock) string { return e.SKU }, nil)
	messaging.Register(r, ChannelBackorderCancelled, func(e domain.BackorderCancelled) string { return e.SKU }, nil)
	messaging.Register(r, ChannelCartItemAdded, func(e CartItemAdded) string { return e.OrderID }, decode.Strict[CartItemAdded]("orderid", "sku", "qty"))
	messaging.Register(r, ChannelOrderCancelled, func(e OrderCancelled) string { return e.OrderID }, decode.Strict[OrderCancelled]("orderid", "lines"))
	messaging.Register(r, ChannelGoodsDispatched, func(e GoodsDispatched) string { return e.OrderID }, decode.Strict[GoodsDispatched]("orderid", "lines"))
	messaging.Register(r, ChannelStockReported, func(e StockReported) string { return e.SKU }, decode.Strict[StockReported]("batchref", "sku", "kind", "qty", "seq", "dispatched"))
	messaging.Register(r, ChannelReservationExpired, func(e ReservationExpired) string { return e.OrderID }, decode.Strict[ReservationExpired]("orderid", "lines"))
	messaging.Register(r, ChannelCustomerBecameVIP, func(e CustomerBecameVIP) string { return e.Customer }, decode.Strict[CustomerBecameVIP]("customer"))
	return r
}

// decodeChangeBatchQuantity reads the book's {"batchref": str, "qty": int}.
func decodeChangeBatchQuantity(b json.RawMessage) (domain.ChangeBatchQuantity, error) {
	var m struct {
		BatchRef string `json:"batchref"`
		Qty      int    `json:"qty"`
	}
	if err := decode.Object(b, &m, "batchref", "qty"); err != nil {
		return domain.ChangeBatchQuantity{}, err
	}
	return domain.ChangeBatchQuantity{Ref: m.BatchRef, Qty: m.Qty}, nil
}

// line is an order line as it travels: {"orderid": str, "sku": str, "qty": int}.
type line struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

func decodeLine[C any](to func(line) C) func(json.RawMessage) (C, error) {
	return func(b json.RawMessage) (C, error) {
		var l line
		if err := decode.Object(b, &l, "orderid", "sku", "qty"); err != nil {
			var zero C
			return zero, err
		}
		return to(l), nil
	}
}
