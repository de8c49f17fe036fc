// Package domain is the orders model: a customer's order, from cart to
// dispatch, whose lines follow what the allocation service and the
// warehouse announce. Pure Go: no I/O.
package domain

import (
	"fmt"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/valid"
)

// Errors the order's methods return; the HTTP API answers ErrConflict
// with a 409.
var (
	ErrPlaced     = fail.Errorf(fail.Conflict, "the order is placed: its items can no longer change")
	ErrCancelled  = fail.Errorf(fail.Conflict, "the order is cancelled")
	ErrDispatched = fail.Errorf(fail.Conflict, "the order is dispatched: it can no longer be cancelled")
	ErrEmpty      = fail.Errorf(fail.Conflict, "the cart is empty: add an item before placing the order")
	ErrItemInCart = fail.Errorf(fail.Conflict, "the sku is in the cart already")
	ErrExpired    = fail.Errorf(fail.Conflict, "the cart expired: its reservations were released; add an item to reserve stock again")
)

// The states of a line: its stock, as the allocation service and the
// warehouse report it.
const (
	LineRequested  = "requested"         // announced; allocation has not answered yet
	LineReserved   = "reserved"          // allocated to BatchRef
	LineWaiting    = "waiting_for_stock" // no batch could take it
	LineMoving     = "moving"            // its batch shrank; allocation is finding another
	LineReleased   = "released"          // its stock was freed (the order was cancelled, or the cart expired)
	LineDispatched = "dispatched"        // the goods left the warehouse
)

// The statuses of an order, derived from its lines (see Order.Status).
const (
	StatusCart        = "cart"     // no items yet
	StatusPending     = "pending"  // some line awaits the allocation service's answer
	StatusReserved    = "reserved" // every line is allocated
	StatusWaiting     = "waiting_for_stock"
	StatusReallocated = "reallocated" // every line is allocated, some moved to another batch
	StatusDispatched  = "dispatched"
	StatusCancelled   = "cancelled"
	StatusExpired     = "expired" // a cart not placed in time: its reservations were released
)

// Line is an item of the order.
type Line struct {
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	State    string `json:"state"`
	BatchRef string `json:"batchref,omitempty"`
	// Moved: the line was allocated to another batch than its first.
	Moved bool `json:"moved,omitempty"`
	// News is the newest news of the allocation service applied to the
	// line (see newer): older news, arriving later on another channel, is
	// ignored.
	News int `json:"news,omitempty"`
}

// What the allocation service says of a line, in the order it says it
// within one version (see newer).
const (
	newsDeallocated = iota
	newsAllocated
	newsOutOfStock
)

// newer reports whether news of the allocation service about the line,
// at version, is newer than what the line applied, and records it as
// applied if so. The allocation service numbers its facts by the
// product's version: a change carries the version it committed, an
// outcome that changed nothing (out of stock) the version it was read at.
// Within one version, a line may be deallocated, then allocated again (its
// batch shrank), or found out of stock: kind orders them. News of version
// 0 (of earlier versions, which carried none) is always applied.
func (l *Line) newer(version, kind int) bool {
	if version == 0 {
		return true
	}
	n := 3*version + kind + 1
	if n <= l.News {
		return false
	}
	l.News = n
	return true
}

// Entry is a line of the order's history.
type Entry struct {
	Seq    int       `json:"seq"`
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail"`
}

// Order is the aggregate: a customer's cart, then their order.
type Order struct {
	ID         string     `json:"orderid"`
	Customer   string     `json:"customer"`
	Email      string     `json:"email"`
	CreatedAt  time.Time  `json:"created_at"`
	PlacedAt   *time.Time `json:"placed_at,omitempty"`
	Cancelled  bool       `json:"cancelled,omitempty"`
	Dispatched bool       `json:"dispatched,omitempty"`
	// ExpiresAt is when the reservations of a cart not yet placed expire
	// (see Expire); nil before its first item, and once it is placed,
	// cancelled or expired.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// ExpiredAt is when the cart expired; nil unless it is expired now.
	ExpiredAt *time.Time `json:"expired_at,omitempty"`
	// Reopened: the cart expired and was reopened; its lines were added
	// since (see LineDeallocated).
	Reopened bool    `json:"reopened,omitempty"`
	Lines    []Line  `json:"lines"`
	History  []Entry `json:"history"`

	events []any
	dirty  bool
}

// NewOrder returns the empty cart of a customer.
func NewOrder(id, customer, email string, at time.Time) (*Order, error) {
	if err := valid.First(valid.Ref("orderid", id), valid.Ref("customer", customer), valid.Email("email", email)); err != nil {
		return nil, err
	}
	o := &Order{ID: id, Customer: customer, Email: email, CreatedAt: at, Lines: []Line{}, History: []Entry{}}
	o.record(at, "created", "cart opened for "+customer)
	return o, nil
}

// Events returns the events raised since the order was loaded.
func (o *Order) Events() []any { return o.events }

// Changed reports whether the order changed since it was loaded.
func (o *Order) Changed() bool { return len(o.events) > 0 || o.dirty }

// Placed reports whether the order was placed.
func (o *Order) Placed() bool { return o.PlacedAt != nil }

// Status is the order's status, derived from its lines.
func (o *Order) Status() string {
	switch {
	case o.Cancelled:
		return StatusCancelled
	case o.Dispatched:
		return StatusDispatched
	case o.Expired():
		return StatusExpired
	case len(o.Lines) == 0:
		return StatusCart
	}
	states := map[string]bool{}
	moved := false
	for _, l := range o.Lines {
		states[l.State] = true
		moved = moved || l.Moved
	}
	switch {
	case states[LineWaiting]:
		return StatusWaiting
	case states[LineRequested] || states[LineMoving]:
		return StatusPending
	case moved:
		return StatusReallocated
	}
	return StatusReserved
}

func (o *Order) line(sku string) *Line {
	for i := range o.Lines {
		if o.Lines[i].SKU == sku {
			return &o.Lines[i]
		}
	}
	return nil
}

func (o *Order) items() []Item {
	out := make([]Item, len(o.Lines))
	for i, l := range o.Lines {
		out[i] = Item{SKU: l.SKU, Qty: l.Qty}
	}
	return out
}

// record appends to the history; once the order is placed, each entry is
// announced (OrderStatusChanged) for whoever follows orders.
func (o *Order) record(at time.Time, event, detail string) {
	e := Entry{Seq: len(o.History) + 1, At: at, Event: event, Detail: detail}
	o.History = append(o.History, e)
	o.dirty = true
	if o.Placed() {
		o.events = append(o.events, OrderStatusChanged{
			OrderID: o.ID, Customer: o.Customer, Seq: e.Seq, Status: o.Status(), Event: event, Detail: detail, At: at,
		})
	}
}

// AddItem adds qty units of sku to the cart, and asks for their stock.
// The first item starts the cart's clock: unless it is placed within ttl
// (positive), its reservations expire. Adding an item to an expired cart
// reopens it (see reopen).
func (o *Order) AddItem(sku string, qty int, ttl time.Duration, at time.Time) error {
	if err := valid.First(valid.Ref("sku", sku), valid.Positive("qty", qty)); err != nil {
		return err
	}
	switch {
	case o.Cancelled:
		return ErrCancelled
	case o.Placed():
		return ErrPlaced
	case o.Expired():
		o.reopen(at)
	case o.line(sku) != nil:
		return fmt.Errorf("%w: %s", ErrItemInCart, sku)
	}
	o.Lines = append(o.Lines, Line{SKU: sku, Qty: qty, State: LineRequested})
	o.events = append(o.events, CartItemAdded{OrderID: o.ID, Customer: o.Customer, SKU: sku, Qty: qty})
	o.record(at, "item_added", fmt.Sprintf("%d × %s added; reserving stock", qty, sku))
	if o.ExpiresAt == nil {
		o.startClock(ttl, at)
	}
	return nil
}

// Place places the order: its reservations stand, and the warehouse
// dispatches it once every line is allocated. Placing it again changes
// nothing.
func (o *Order) Place(at time.Time) error {
	switch {
	case o.Cancelled:
		return ErrCancelled
	case o.Placed():
		return nil
	case o.Expired():
		return ErrExpired
	case len(o.Lines) == 0:
		return ErrEmpty
	}
	o.PlacedAt = &at
	o.ExpiresAt = nil // a placed order keeps its reservations, and waits for stock as long as it takes
	o.events = append(o.events, OrderPlaced{OrderID: o.ID, Customer: o.Customer, Email: o.Email, Lines: o.items(), PlacedAt: at})
	o.record(at, "placed", "order placed; status "+o.Status())
	return nil
}

// Cancel cancels an order not yet dispatched: the allocation service frees
// its stock. Cancelling it again changes nothing.
func (o *Order) Cancel(at time.Time) error {
	switch {
	case o.Dispatched:
		return ErrDispatched
	case o.Cancelled:
		return nil
	}
	o.Cancelled, o.ExpiresAt = true, nil
	o.events = append(o.events, OrderCancelled{OrderID: o.ID, Customer: o.Customer, Lines: o.items()})
	o.record(at, "cancelled", "order cancelled; its stock is released")
	return nil
}

// LineAllocated: the allocation service allocated the line of sku to a
// batch, at version; backorder when the line had waited for stock, on the
// allocation service's waiting list. A line that waited (as the order
// knows it, or as the allocation service says, should its out_of_stock
// not be in yet) got stock that arrived: the customer is told
// (BackorderFilled).
func (o *Order) LineAllocated(sku, batchRef string, version int, backorder bool, at time.Time) {
	l := o.line(sku)
	if l == nil || o.Dispatched || !o.newer(l, version, newsAllocated) {
		return
	}
	switch {
	case o.Cancelled || o.Expired():
		// Allocated after the cancellation or the expiry freed its stock
		// (the messages crossed): ask again for the stock to be released.
		// With a version, it is news: the line was allocated again, even
		// to the batch it was released from.
		if version != 0 || l.State != LineReleased || l.BatchRef != batchRef {
			l.State, l.BatchRef = LineReleased, batchRef
			o.release(*l)
			o.record(at, "released", fmt.Sprintf("%s was allocated to %s after the %s; releasing it", sku, batchRef, o.ending()))
		}
	case l.State == LineReserved && l.BatchRef == batchRef:
		// told twice
	case l.State == LineWaiting || backorder:
		l.State, l.BatchRef = LineReserved, batchRef
		o.events = append(o.events, BackorderFilled{
			OrderID: o.ID, Customer: o.Customer, Email: o.Email, SKU: sku, Qty: l.Qty, BatchRef: batchRef, Placed: o.Placed(),
		})
		o.record(at, "stock_arrived", fmt.Sprintf("%s arrived: reserved in batch %s", sku, batchRef))
	case l.BatchRef != "" && l.BatchRef != batchRef || l.State == LineMoving:
		l.State, l.BatchRef, l.Moved = LineReserved, batchRef, true
		o.record(at, "reallocated", fmt.Sprintf("%s reallocated to batch %s", sku, batchRef))
	default:
		l.State, l.BatchRef = LineReserved, batchRef
		o.record(at, "reserved", fmt.Sprintf("%s reserved in batch %s", sku, batchRef))
	}
}

// newer reports whether news of kind at version is newer than what l
// applied, and records it if so (see Line.newer).
func (o *Order) newer(l *Line, version, kind int) bool {
	before := l.News
	ok := l.newer(version, kind)
	if l.News != before {
		o.dirty = true
	}
	return ok
}

// OutOfStock: no batch could take the line of sku, as read at version;
// unknown when no batch of the sku exists at all. Either way the line
// waits for stock: a sku nobody stocks yet may be stocked later; waiting
// when the allocation service put it on its waiting list, to allocate
// it when stock arrives.
func (o *Order) OutOfStock(sku string, version int, unknown, waiting bool, at time.Time) {
	l := o.line(sku)
	if l == nil || o.Dispatched || !o.newer(l, version, newsOutOfStock) {
		return
	}
	if o.Cancelled || o.Expired() {
		if waiting {
			// It joined the waiting list after the cancellation or the
			// expiry reached the allocation service (the messages
			// crossed): ask again for it to leave.
			o.release(*l)
		}
		return
	}
	if l.State == LineWaiting {
		return
	}
	l.State, l.BatchRef = LineWaiting, ""
	then := "waiting for stock"
	if waiting {
		then = "waiting for stock: it is reserved as soon as stock arrives"
	}
	if unknown {
		o.record(at, "out_of_stock", fmt.Sprintf("Invalid sku %s: nobody stocks it yet; %s", sku, then))
		return
	}
	o.record(at, "out_of_stock", fmt.Sprintf("Out of stock for sku %s; %s", sku, then))
}

// release asks the allocation service again to free the stock of the line
// of a cancelled or expired order (reserved or waited for), with the event
// that freed the others.
func (o *Order) release(l Line) {
	items := []Item{{SKU: l.SKU, Qty: l.Qty}}
	if o.Cancelled {
		o.events = append(o.events, OrderCancelled{OrderID: o.ID, Customer: o.Customer, Lines: items})
		return
	}
	o.events = append(o.events, ReservationExpired{OrderID: o.ID, Customer: o.Customer, Lines: items, ExpiredAt: *o.ExpiredAt})
}

// ending names what released the order's stock, for its history.
func (o *Order) ending() string {
	if o.Cancelled {
		return "cancellation"
	}
	return "expiry"
}

// Deallocation reasons, as the allocation service names them.
const (
	ReasonBatchShrank = "batch_quantity_changed"
	ReasonRequested   = "requested"
	ReasonDispatched  = "dispatched"
)

// LineDeallocated: the line of sku lost its batch batchRef, for reason,
// at version: newer news than any applied says the line holds no stock
// now. Goods that left are recorded by GoodsDispatched, from the
// warehouse.
func (o *Order) LineDeallocated(sku, batchRef, reason string, version int, at time.Time) {
	l := o.line(sku)
	if l == nil || o.Dispatched {
		return
	}
	if version == 0 && l.BatchRef != batchRef {
		return // news older than the line's, of an earlier version
	}
	if !o.newer(l, version, newsDeallocated) {
		return
	}
	switch {
	case reason == ReasonBatchShrank && !o.Cancelled && l.State == LineReserved:
		l.State = LineMoving
		o.record(at, "moving", fmt.Sprintf("batch %s shrank; finding %s another batch", batchRef, sku))
	case reason == ReasonRequested && o.stale(l):
		o.reserveAgain(l, at)
	case reason == ReasonRequested && l.State != LineReleased:
		l.State = LineReleased
		o.record(at, "released", fmt.Sprintf("%s released from batch %s", sku, batchRef))
	}
}

// BackorderCancelled: the line of sku left the allocation service's
// waiting list without stock, at version (its order was cancelled, its
// cart expired, or it was deallocated on request).
func (o *Order) BackorderCancelled(sku string, version int, at time.Time) {
	l := o.line(sku)
	if l == nil || o.Dispatched || !o.newer(l, version, newsDeallocated) {
		return
	}
	switch {
	case l.State == LineWaiting && o.stale(l):
		o.reserveAgain(l, at)
	case l.State == LineWaiting:
		l.State = LineReleased
		o.record(at, "released", fmt.Sprintf("%s taken off the waiting list", sku))
	}
}

// stale reports whether a release of the line can only be the expiry's
// that came before the cart was reopened, late: the cart was reopened (all
// its lines were added since), and is neither cancelled nor expired again.
// The expiry, on another channel than the new line's cart_item_added, may
// reach the allocation service after the new line, which has the same
// order and sku, and release it.
func (o *Order) stale(l *Line) bool {
	return o.Reopened && !o.Cancelled && !o.Expired() && l.State != LineReleased
}

// reserveAgain asks again for the stock of a line a late release freed.
func (o *Order) reserveAgain(l *Line, at time.Time) {
	l.State, l.BatchRef = LineRequested, ""
	o.events = append(o.events, CartItemAdded{OrderID: o.ID, Customer: o.Customer, SKU: l.SKU, Qty: l.Qty})
	o.record(at, "reserving_again", fmt.Sprintf("%s was released by the expiry before the cart was reopened; reserving it again", l.SKU))
}

// GoodsDispatched: the warehouse dispatched the order's goods.
// from names the batch each line's goods left from (sku -> ref), as the
// warehouse says: a line still waiting for stock here got it (the
// allocation service's line_allocated is late, on another channel), and
// the customer is told, as LineAllocated would have.
func (o *Order) GoodsDispatched(from map[string]string, at time.Time) {
	if o.Dispatched {
		return
	}
	for i := range o.Lines {
		if l := &o.Lines[i]; l.State == LineWaiting && from[l.SKU] != "" {
			o.events = append(o.events, BackorderFilled{
				OrderID: o.ID, Customer: o.Customer, Email: o.Email, SKU: l.SKU, Qty: l.Qty, BatchRef: from[l.SKU], Placed: o.Placed(),
			})
			o.record(at, "stock_arrived", fmt.Sprintf("%s arrived: reserved in batch %s", l.SKU, from[l.SKU]))
		}
	}
	detail := "goods dispatched"
	if o.Cancelled {
		// The cancellation reached the warehouse after the goods had left.
		o.Cancelled = false
		detail = "goods dispatched before the cancellation reached the warehouse: the order stands"
	}
	o.Dispatched = true
	for i := range o.Lines {
		o.Lines[i].State = LineDispatched
	}
	o.record(at, "dispatched", detail)
}
