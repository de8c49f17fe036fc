package domain

import (
	"fmt"
	"time"
)

// A cart holds stock that others may be waiting for, so its reservations
// last a while only: the clock starts with the cart's first item (and
// again when an expired cart is reopened), and unless the cart is placed
// before it runs out, the cart expires and its stock is released. The
// clock is a durable timer, ReservationTimeout, raised with the change
// that started it and handled by Expire when due, which checks the state
// first, as a process manager does: the timer of a clock that stopped or
// started again changes nothing.

// Expired reports whether the cart expired (and was not reopened since).
func (o *Order) Expired() bool { return o.ExpiredAt != nil }

// startClock starts the cart's clock: its reservations expire ttl from at.
func (o *Order) startClock(ttl time.Duration, at time.Time) {
	expires := at.Add(ttl)
	o.ExpiresAt = &expires
	o.events = append(o.events, ReservationTimeout{OrderID: o.ID, ExpiresAt: expires})
}

// reopen empties an expired cart, whose lines were released, so that
// items can be added again: each reserves its stock anew.
func (o *Order) reopen(at time.Time) {
	o.ExpiredAt, o.Reopened = nil, true
	o.Lines = []Line{}
	o.record(at, "reopened", "cart reopened: its expired items were removed; new items reserve stock again")
}

// Expire handles the timer of the clock that was due to run out at
// expiresAt, at, for a service whose reservations last ttl. It changes
// nothing unless that clock still runs: a cart placed, cancelled or
// expired already, or whose clock started again since, stays as it is, so
// that a timer delivered twice or late is harmless. A timer delivered
// before the clock ran out (the clocks of two machines disagree) is set
// again for the time the cart expires. When the clock ran out, the cart
// expires: its lines are released, and the allocation service is told to
// free their stock (ReservationExpired).
func (o *Order) Expire(expiresAt time.Time, ttl time.Duration, at time.Time) {
	if o.Placed() || o.Cancelled || o.Dispatched || o.Expired() || o.ExpiresAt == nil || !o.ExpiresAt.Equal(expiresAt) {
		return
	}
	if at.Before(*o.ExpiresAt) {
		o.events = append(o.events, ReservationTimeout{OrderID: o.ID, ExpiresAt: *o.ExpiresAt})
		return
	}
	items := o.items()
	o.ExpiresAt, o.ExpiredAt = nil, &at
	for i := range o.Lines {
		o.Lines[i].State = LineReleased
	}
	o.events = append(o.events, ReservationExpired{OrderID: o.ID, Customer: o.Customer, Lines: items, ExpiredAt: at})
	o.record(at, "expired", fmt.Sprintf("reservations expired after %s: their stock was released", ttl))
}
