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
)

// Inbound are the channels the notifications service consumes.
var Inbound = []string{ChannelOutOfStock, ChannelCustomerBecameVIP}

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

// Messages returns the registry of the messages the notifications service
// consumes.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelOutOfStock, func(e OutOfStock) string { return e.SKU }, decode.Strict[OutOfStock]("sku"))
	messaging.Register(r, ChannelCustomerBecameVIP, func(e CustomerBecameVIP) string { return e.Customer },
		decode.Strict[CustomerBecameVIP]("customer", "email", "orders"))
	return r
}
