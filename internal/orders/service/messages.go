// Package service is the orders service layer: the handlers of its
// commands and of the events it follows, and the messages it exchanges.
package service

import (
	"time"

	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/orders/domain"
)

// Channels of the messages the orders service exchanges.
const (
	ChannelCartItemAdded      = "cart_item_added"
	ChannelOrderPlaced        = "order_placed"
	ChannelOrderCancelled     = "order_cancelled"
	ChannelOrderStatusChanged = "order_status_changed"
	ChannelReservationExpired = "reservation_expired"
	ChannelBackorderFilled    = "backorder_filled"

	// ChannelReservationTimeout is the service's own timer (a cart's
	// clock), which it publishes for later and consumes when due.
	ChannelReservationTimeout = "reservation_timeout"

	// Followed: what the allocation service and the warehouse announce.
	ChannelLineAllocated   = "line_allocated"
	ChannelLineDeallocated = "line_deallocated"
	ChannelOutOfStock      = "out_of_stock"
	// A waiting line left the waiting list without stock.
	ChannelBackorderCancelled = "backorder_cancelled"
	ChannelGoodsDispatched    = "goods_dispatched"
)

// A cart's clock is a durable timer: raised with the change that starts
// it, delivered when due.
var _ messaging.Timer = domain.ReservationTimeout{}

// Inbound are the channels the orders service consumes.
var Inbound = []string{ChannelLineAllocated, ChannelLineDeallocated, ChannelOutOfStock, ChannelBackorderCancelled, ChannelGoodsDispatched, ChannelReservationTimeout}

// LineAllocated is the allocation service's line_allocated, as orders
// reads it. Backorder (optional) says the line had waited for stock.
type LineAllocated struct {
	OrderID   string `json:"orderid"`
	SKU       string `json:"sku"`
	BatchRef  string `json:"batchref"`
	Version   int    `json:"version"`
	Backorder bool   `json:"backorder"`
}

// LineDeallocated is the allocation service's line_deallocated.
type LineDeallocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	BatchRef string `json:"batchref"`
	Reason   string `json:"reason"`
	Version  int    `json:"version"`
}

// OutOfStock is the allocation service's out_of_stock. Lines allocated
// from outside the shop (POST /allocate, the allocate channel) carry order
// ids no cart has: those are ignored. Waiting (optional) says the line
// joined the allocation service's waiting list.
type OutOfStock struct {
	SKU        string `json:"sku"`
	OrderID    string `json:"orderid"`
	Version    int    `json:"version"`
	UnknownSKU bool   `json:"unknown_sku"`
	Waiting    bool   `json:"waiting"`
}

// BackorderCancelled is the allocation service's backorder_cancelled.
type BackorderCancelled struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Version int    `json:"version"`
}

// GoodsDispatched is the warehouse's goods_dispatched: each line names the
// batch its goods left from.
type GoodsDispatched struct {
	OrderID      string    `json:"orderid"`
	DispatchedAt time.Time `json:"dispatched_at"`
	Lines        []struct {
		SKU      string `json:"sku"`
		BatchRef string `json:"batchref"`
	} `json:"lines"`
}

// Messages returns the registry of the messages the orders service
// exchanges.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	byOrder := func(id string) string { return id }
	messaging.Register(r, ChannelCartItemAdded, func(e domain.CartItemAdded) string { return byOrder(e.OrderID) }, nil)
	messaging.Register(r, ChannelOrderPlaced, func(e domain.OrderPlaced) string { return byOrder(e.OrderID) }, nil)
	messaging.Register(r, ChannelOrderCancelled, func(e domain.OrderCancelled) string { return byOrder(e.OrderID) }, nil)
	messaging.Register(r, ChannelOrderStatusChanged, func(e domain.OrderStatusChanged) string { return byOrder(e.OrderID) }, nil)
	messaging.Register(r, ChannelReservationExpired, func(e domain.ReservationExpired) string { return byOrder(e.OrderID) }, nil)
	messaging.Register(r, ChannelBackorderFilled, func(e domain.BackorderFilled) string { return byOrder(e.OrderID) }, nil)
	messaging.Register(r, ChannelReservationTimeout, func(e domain.ReservationTimeout) string { return byOrder(e.OrderID) },
		decode.Strict[domain.ReservationTimeout]("orderid", "expires_at"))
	messaging.Register(r, ChannelLineAllocated, func(e LineAllocated) string { return e.SKU }, decode.Strict[LineAllocated]("orderid", "sku", "batchref"))
	messaging.Register(r, ChannelLineDeallocated, func(e LineDeallocated) string { return e.SKU }, decode.Strict[LineDeallocated]("orderid", "sku", "batchref", "reason"))
	messaging.Register(r, ChannelOutOfStock, func(e OutOfStock) string { return e.SKU }, decode.Strict[OutOfStock]("sku"))
	messaging.Register(r, ChannelBackorderCancelled, func(e BackorderCancelled) string { return e.SKU }, decode.Strict[BackorderCancelled]("orderid", "sku"))
	messaging.Register(r, ChannelGoodsDispatched, func(e GoodsDispatched) string { return e.OrderID }, decode.Strict[GoodsDispatched]("orderid"))
	return r
}
