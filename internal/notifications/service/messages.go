// Package service is the notifications service layer: the handlers of the
// events it turns into notifications, the sender that delivers them
// through a Mailer, the queries of notifications, and the messages it
// consumes.
package service

import (
	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Channels of the messages the notifications service consumes; it
// publishes none.
const (
	// ChannelOutOfStock is the allocation service's.
	ChannelOutOfStock = "out_of_stock"
	// ChannelCustomerBecameVIP is the CRM service's.
	ChannelCustomerBecameVIP = "customer_became_vip"
	// ChannelBackorderFilled is the orders service's.
	ChannelBackorderFilled = "backorder_filled"
)

// Inbound are the channels the notifications service consumes.
var Inbound = []string{ChannelOutOfStock, ChannelCustomerBecameVIP, ChannelBackorderFilled}

// OutOfStock is the allocation service's out_of_stock, as the
// notifications service reads it: no batch could take a line of SKU.
// The allocation service always sends OrderID and Qty; only SKU is
// required here.
type OutOfStock struct {
	SKU        string `json:"sku"`
	OrderID    string `json:"orderid"`
	Qty        int    `json:"qty"`
	UnknownSKU bool   `json:"unknown_sku"`
}

// CustomerBecameVIP is the CRM service's customer_became_vip, as the
// notifications service reads it.
type CustomerBecameVIP struct {
	Customer string `json:"customer"`
	Email    string `json:"email"`
	Orders   int    `json:"orders"`
}

// BackorderFilled is the orders service's backorder_filled, as the
// notifications service reads it: Qty units of SKU that the customer
// waited for got stock, for their order (Placed) or their cart.
type BackorderFilled struct {
	OrderID  string `json:"orderid"`
	Customer string `json:"customer"`
	Email    string `json:"email"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	Placed   bool   `json:"placed"`
}

// Messages returns the registry of the messages the notifications service
// consumes.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelOutOfStock, func(e OutOfStock) string { return e.SKU }, decode.Strict[OutOfStock]("sku"))
	messaging.Register(r, ChannelCustomerBecameVIP, func(e CustomerBecameVIP) string { return e.Customer },
		decode.Strict[CustomerBecameVIP]("customer", "email", "orders"))
	messaging.Register(r, ChannelBackorderFilled, func(e BackorderFilled) string { return e.OrderID },
		decode.Strict[BackorderFilled]("orderid", "customer", "email", "sku", "qty"))
	return r
}
