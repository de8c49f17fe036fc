package domain

import "time"

// Item is a sku and a quantity of an order, as events carry it.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// CartItemAdded: a customer put an item in their cart; the allocation
// service reserves its stock.
type CartItemAdded struct {
	OrderID  string `json:"orderid"`
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
}

// OrderPlaced: a customer placed their order.
type OrderPlaced struct {
	OrderID  string    `json:"orderid"`
	Customer string    `json:"customer"`
	Email    string    `json:"email"`
	Lines    []Item    `json:"lines"`
	PlacedAt time.Time `json:"placed_at"`
}

// OrderCancelled: an order was cancelled before dispatch; the stock of
// Lines must be released (the compensation of its reservations).
type OrderCancelled struct {
	OrderID  string `json:"orderid"`
	Customer string `json:"customer"`
	Lines    []Item `json:"lines"`
}

// OrderStatusChanged: a placed order's history grew by one entry (Seq);
// Status is the order's status after it.
type OrderStatusChanged struct {
	OrderID  string    `json:"orderid"`
	Customer string    `json:"customer"`
	Seq      int       `json:"seq"`
	Status   string    `json:"status"`
	Event    string    `json:"event"`
	Detail   string    `json:"detail"`
	At       time.Time `json:"at"`
}
