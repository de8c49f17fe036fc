// Package service is the CRM service layer: the handlers of the orders
// service's events it follows, the queries of its customers, and the
// messages it exchanges.
package service

import (
	"time"

	"github.com/stockflow/stockflow/internal/crm/domain"
	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Channels of the messages the CRM service exchanges.
const (
	// Published.
	ChannelCustomerBecameVIP = "customer_became_vip"

	// Followed: what the orders service announces.
	ChannelOrderPlaced        = "order_placed"
	ChannelOrderStatusChanged = "order_status_changed"
)

// Inbound are the channels the CRM service consumes.
var Inbound = []string{ChannelOrderPlaced, ChannelOrderStatusChanged}

// Item is a line of an order, as the orders service's events carry it.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// OrderPlaced is the orders service's order_placed, as the CRM reads it.
type OrderPlaced struct {
	OrderID  string    `json:"orderid"`
	Customer string    `json:"customer"`
	Email    string    `json:"email"`
	Lines    []Item    `json:"lines"`
	PlacedAt time.Time `json:"placed_at"`
}

// OrderStatusChanged is the orders service's order_status_changed: the
// entry Seq of a placed order's history, and the order's status after it.
type OrderStatusChanged struct {
	OrderID  string    `json:"orderid"`
	Customer string    `json:"customer"`
	Seq      int       `json:"seq"`
	Status   string    `json:"status"`
	Event    string    `json:"event"`
	Detail   string    `json:"detail"`
	At       time.Time `json:"at"`
}

// Messages returns the registry of the messages the CRM service
// exchanges.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelCustomerBecameVIP, func(e domain.CustomerBecameVIP) string { return e.Customer }, nil)
	// Keyed by order, as the orders service publishes them.
	messaging.Register(r, ChannelOrderPlaced, func(e OrderPlaced) string { return e.OrderID },
		decode.Strict[OrderPlaced]("orderid", "customer", "email", "placed_at"))
	messaging.Register(r, ChannelOrderStatusChanged, func(e OrderStatusChanged) string { return e.OrderID },
		decode.Strict[OrderStatusChanged]("orderid", "customer", "seq", "status", "at"))
	return r
}
