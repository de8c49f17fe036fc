// Package domain is the CRM model: a customer's order history, as the
// orders service's events tell it, and the customer's becoming a VIP on
// their third placed order. Pure Go: no I/O.
//
// The events come from another service through a broker: out of order,
// some more than once. Every method takes a message's news as a fact to
// merge, so that the same fact twice, or facts in any order, end in the
// same customer.
package domain

import (
	"cmp"
	"slices"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/valid"
)

// VIPOrders is the number of placed orders that makes a customer a VIP.
const VIPOrders = 3

// Line is an item of an order.
type Line struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// Entry is a line of an order's history, as the orders service numbered
// it (Seq) and the order's status after it.
type Entry struct {
	Seq    int       `json:"seq"`
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail"`
	Status string    `json:"status"`
}

// Order is one of the customer's orders.
type Order struct {
	ID string `json:"orderid"`
	// PlacedAt is when the order was placed; nil until its OrderPlaced
	// came (its status changes may come first).
	PlacedAt *time.Time `json:"placed_at,omitempty"`
	// Status is the status of the order's latest history entry (by Seq);
	// empty while there is none.
	Status  string  `json:"status,omitempty"`
	Lines   []Line  `json:"lines"`
	History []Entry `json:"history"`
}

// Placed reports whether the order's OrderPlaced came.
func (o *Order) Placed() bool { return o.PlacedAt != nil }

// Placement is the news that the customer placed an order.
type Placement struct {
	OrderID  string
	Email    string
	Lines    []Line
	PlacedAt time.Time
}

// CustomerBecameVIP: the customer placed their VIPOrders-th order, and is
// a VIP from At on. Raised once per customer.
type CustomerBecameVIP struct {
	Customer string    `json:"customer"`
	Email    string    `json:"email"`
	Orders   int       `json:"orders"`
	At       time.Time `json:"at"`
}

// Customer is the aggregate: a customer and their orders.
type Customer struct {
	ID string `json:"customer"`
	// Email is the address of the customer's latest placed order; empty
	// while no OrderPlaced of theirs came.
	Email    string     `json:"email"`
	VIP      bool       `json:"vip"`
	VIPSince *time.Time `json:"vip_since,omitempty"`
	// Orders are sorted by when they were placed (by their first known
	// entry while that is unknown), then by id.
	Orders []Order `json:"orders"`

	events []any
	dirty  bool
}

// NewCustomer returns a customer with no orders yet.
func NewCustomer(id string) (*Customer, error) {
	if err := valid.Ref("customer", id); err != nil {
		return nil, err
	}
	return &Customer{ID: id, Orders: []Order{}}, nil
}

// Events returns the events raised since the customer was loaded.
func (c *Customer) Events() []any { return c.events }

// Changed reports whether the customer changed since they were loaded.
func (c *Customer) Changed() bool { return c.dirty }

// PlacedOrders counts the customer's placed orders.
func (c *Customer) PlacedOrders() int {
	n := 0
	for _, o := range c.Orders {
		if o.Placed() {
			n++
		}
	}
	return n
}

// Order returns the customer's order id, or nil.
func (c *Customer) Order(id string) *Order {
	for i := range c.Orders {
		if c.Orders[i].ID == id {
			return &c.Orders[i]
		}
	}
	return nil
}

// order returns the order id, added when the customer has none by that id.
func (c *Customer) order(id string) *Order {
	if o := c.Order(id); o != nil {
		return o
	}
	c.Orders = append(c.Orders, Order{ID: id, Lines: []Line{}, History: []Entry{}})
	return &c.Orders[len(c.Orders)-1]
}

// OrderPlaced records that the customer placed an order; the order that
// makes VIPOrders makes the customer a VIP. An order already placed
// changes nothing.
func (c *Customer) OrderPlaced(p Placement) error {
	if err := p.validate(); err != nil {
		return err
	}
	if o := c.Order(p.OrderID); o != nil && o.Placed() {
		return nil // told twice
	}
	if c.latest(p.PlacedAt) {
		c.Email = p.Email
	}
	o := c.order(p.OrderID)
	at := p.PlacedAt
	o.PlacedAt = &at
	o.Lines = append([]Line{}, p.Lines...)
	c.dirty = true
	c.sort()
	if n := c.PlacedOrders(); !c.VIP && n >= VIPOrders {
		// The orders counted are the customer's first VIPOrders, in any
		// order: the latest of them made the customer a VIP.
		since := c.lastPlaced()
		c.VIP, c.VIPSince = true, &since
		c.events = append(c.events, CustomerBecameVIP{Customer: c.ID, Email: c.Email, Orders: n, At: since})
	}
	return nil
}

func (p Placement) validate() error {
	err := valid.First(valid.Ref("orderid", p.OrderID), valid.Email("email", p.Email))
	if err == nil && p.PlacedAt.IsZero() {
		err = fail.Errorf(fail.Invalid, "placed_at must be set")
	}
	for _, l := range p.Lines {
		if err != nil {
			break
		}
		err = valid.First(valid.Ref("sku", l.SKU), valid.Positive("qty", l.Qty))
	}
	return err
}

// latest reports whether no placed order of the customer's is later than
// at.
func (c *Customer) latest(at time.Time) bool {
	return !c.lastPlaced().After(at)
}

// lastPlaced returns when the customer's latest placed order was placed,
// or the zero time.
func (c *Customer) lastPlaced() time.Time {
	var last time.Time
	for _, o := range c.Orders {
		if o.Placed() && o.PlacedAt.After(last) {
			last = *o.PlacedAt
		}
	}
	return last
}

// StatusChanged records an entry of the history of the customer's order
// orderID, which may come before the order's OrderPlaced; an entry whose
// Seq the order has already changes nothing.
func (c *Customer) StatusChanged(orderID string, e Entry) error {
	err := valid.First(valid.Ref("orderid", orderID), valid.Positive("seq", e.Seq), valid.Ref("status", e.Status))
	if err == nil && e.At.IsZero() {
		err = fail.Errorf(fail.Invalid, "at must be set")
	}
	if err != nil {
		return err
	}
	o := c.order(orderID)
	i, found := slices.BinarySearchFunc(o.History, e.Seq, func(x Entry, seq int) int { return cmp.Compare(x.Seq, seq) })
	if found {
		return nil // told twice
	}
	o.History = slices.Insert(o.History, i, e)
	o.Status = o.History[len(o.History)-1].Status
	c.dirty = true
	c.sort()
	return nil
}

// sort keeps the orders sorted by when they were placed, or, before their
// OrderPlaced came, by their first entry; then by id.
func (c *Customer) sort() {
	when := func(o Order) time.Time {
		switch {
		case o.Placed():
			return *o.PlacedAt
		case len(o.History) > 0:
			return o.History[0].At
		}
		return time.Time{}
	}
	slices.SortStableFunc(c.Orders, func(a, b Order) int {
		return cmp.Or(when(a).Compare(when(b)), cmp.Compare(a.ID, b.ID))
	})
}
