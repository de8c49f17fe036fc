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

// ReservationTimeout is the orders service's own timer: a cart's
// reservations are due to expire at ExpiresAt. It is raised when the
// cart's clock starts, delivered when due (Due), and handled by the
// orders service itself (Order.Expire), which checks that the clock it
// belongs to still runs.
type ReservationTimeout struct {
	OrderID   string    `json:"orderid"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Due is when the timer is to be delivered: it makes the event a durable
// timer (messaging.Timer) rather than news to hand on at once.
func (e ReservationTimeout) Due() time.Time { return e.ExpiresAt }

// ReservationExpired: a cart was not placed in time; the stock of Lines,
// reserved or waited for, must be released (the lines waiting for stock
// leave the waiting list).
type ReservationExpired struct {
	OrderID   string    `json:"orderid"`
	Customer  string    `json:"customer"`
	Lines     []Item    `json:"lines"`
	ExpiredAt time.Time `json:"expired_at"`
}

// BackorderFilled: a line that waited for stock got it; the customer is
// told. Placed says whether it is an order's line or a cart's.
type BackorderFilled struct {
	OrderID  string `json:"orderid"`
	Customer string `json:"customer"`
	Email    string `json:"email"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref"`
	Placed   bool   `json:"placed"`
}
