package domain_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/orders/domain"
)

// due is when the clock of a cart whose first item came at t0 runs out.
var due = t0.Add(ttl)

// timeout delivers the timer of the clock due at expiresAt, at.
func timeout(expiresAt, at time.Time) step {
	return func(o *domain.Order) error { o.Expire(expiresAt, ttl, at); return nil }
}

// addAt adds an item at.
func addAt(sku string, qty int, at time.Time) step {
	return func(o *domain.Order) error { return o.AddItem(sku, qty, ttl, at) }
}

func lastEvent(o *domain.Order) string { return o.History[len(o.History)-1].Event }

func TestExpiry(t *testing.T) {
	later := due.Add(time.Hour)
	for _, c := range []struct {
		name    string
		steps   []step
		status  string
		states  []string
		events  []string // raised, in order
		last    string   // the last history entry
		expires *time.Time
	}{
		{"due: the cart expires", []step{add("LAMP", 1), allocated("LAMP", "b1"), timeout(due, due)},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired"}, "expired", nil},
		{"late: the cart expires all the same", []step{add("LAMP", 1), outOfStock("LAMP"), timeout(due, later)},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired"}, "expired", nil},
		{"early: set again for when it is due", []step{add("LAMP", 1), allocated("LAMP", "b1"), timeout(due, due.Add(-time.Second))},
			domain.StatusReserved, []string{domain.LineReserved},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationTimeout"}, "reserved", &due},
		{"stale: a clock that is not the cart's", []step{add("LAMP", 1), timeout(due.Add(-time.Minute), later)},
			domain.StatusPending, []string{domain.LineRequested},
			[]string{"CartItemAdded", "ReservationTimeout"}, "item_added", &due},
		{"a second item does not restart the clock", []step{add("LAMP", 1), addAt("SOFA", 1, t0.Add(time.Minute)), timeout(due, due)},
			domain.StatusExpired, []string{domain.LineReleased, domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "CartItemAdded", "ReservationExpired"}, "expired", nil},
		{"placed: its clock stopped", []step{add("LAMP", 1), place, timeout(due, later)},
			domain.StatusPending, []string{domain.LineRequested},
			[]string{"CartItemAdded", "ReservationTimeout", "OrderPlaced", "OrderStatusChanged"}, "placed", nil},
		{"placed, waiting for stock: never expires", []step{add("LAMP", 1), outOfStock("LAMP"), place, timeout(due, later)},
			domain.StatusWaiting, []string{domain.LineWaiting},
			[]string{"CartItemAdded", "ReservationTimeout", "OrderPlaced", "OrderStatusChanged"}, "placed", nil},
		{"cancelled", []step{add("LAMP", 1), cancel, timeout(due, due)},
			domain.StatusCancelled, []string{domain.LineRequested},
			[]string{"CartItemAdded", "ReservationTimeout", "OrderCancelled"}, "cancelled", nil},
		{"redelivered: expires once", []step{add("LAMP", 1), timeout(due, due), timeout(due, later)},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired"}, "expired", nil},
		{"cancelling an expired cart", []step{add("LAMP", 1), timeout(due, due), cancel},
			domain.StatusCancelled, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired", "OrderCancelled"}, "cancelled", nil},
		{"allocated after the expiry: released again", []step{add("LAMP", 1), timeout(due, due), allocated("LAMP", "b1")},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired", "ReservationExpired"}, "released", nil},
		{"told twice after the expiry: released once", []step{add("LAMP", 1), timeout(due, due), allocated("LAMP", "b1"), allocated("LAMP", "b1")},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired", "ReservationExpired"}, "released", nil},
		{"waiting after the expiry: asked to leave the list", []step{add("LAMP", 1), timeout(due, due), outOfStockWaiting("LAMP")},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired", "ReservationExpired"}, "expired", nil},
		{"released after the expiry: nothing more", []step{add("LAMP", 1), allocated("LAMP", "b1"), timeout(due, due), deallocated("LAMP", "b1", domain.ReasonRequested)},
			domain.StatusExpired, []string{domain.LineReleased},
			[]string{"CartItemAdded", "ReservationTimeout", "ReservationExpired"}, "expired", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrder(t)
			for i, s := range c.steps {
				if err := s(o); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			if got := o.Status(); got != c.status {
				t.Errorf("status %q, want %q", got, c.status)
			}
			var states []string
			for _, l := range o.Lines {
				states = append(states, l.State)
			}
			if !reflect.DeepEqual(states, c.states) {
				t.Errorf("line states %v, want %v", states, c.states)
			}
			if got := eventNames(o.Events()); !reflect.DeepEqual(got, c.events) {
				t.Errorf("events %v, want %v", got, c.events)
			}
			if got := lastEvent(o); got != c.last {
				t.Errorf("last history entry %q, want %q (%+v)", got, c.last, o.History)
			}
			if (o.ExpiresAt == nil) != (c.expires == nil) || o.ExpiresAt != nil && !o.ExpiresAt.Equal(*c.expires) {
				t.Errorf("expires at %v, want %v", o.ExpiresAt, c.expires)
			}
		})
	}
}

func outOfStockWaiting(sku string) step {
	return func(o *domain.Order) error { o.OutOfStock(sku, 0, false, true, t0); return nil }
}

func TestExpiryReleasesTheStock(t *testing.T) {
	o := newOrder(t)
	for _, s := range []step{add("LAMP", 2), add("SOFA", 1), allocated("LAMP", "b1"), outOfStock("SOFA"), timeout(due, due.Add(time.Second))} {
		if err := s(o); err != nil {
			t.Fatal(err)
		}
	}
	evs := o.Events()
	got, ok := evs[len(evs)-1].(domain.ReservationExpired)
	want := domain.ReservationExpired{
		OrderID: "o1", Customer: "alice", ExpiredAt: due.Add(time.Second),
		Lines: []domain.Item{{SKU: "LAMP", Qty: 2}, {SKU: "SOFA", Qty: 1}},
	}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("last event %#v, want %#v", evs[len(evs)-1], want)
	}
	if o.ExpiredAt == nil || !o.ExpiredAt.Equal(due.Add(time.Second)) {
		t.Errorf("expired at %v, want %v", o.ExpiredAt, due.Add(time.Second))
	}
	if d := o.History[len(o.History)-1].Detail; d != "reservations expired after 30m0s: their stock was released" {
		t.Errorf("history says %q", d)
	}
	// Only the first item started the clock, with a timer due then.
	var timers []domain.ReservationTimeout
	for _, e := range evs {
		if tm, ok := e.(domain.ReservationTimeout); ok {
			timers = append(timers, tm)
		}
	}
	if len(timers) != 1 || timers[0].OrderID != "o1" || !timers[0].ExpiresAt.Equal(due) || !timers[0].Due().Equal(due) {
		t.Errorf("timers %+v, want one due at %v", timers, due)
	}
}

func TestPlacingAnExpiredCartIsAConflict(t *testing.T) {
	o := newOrder(t)
	for _, s := range []step{add("LAMP", 1), timeout(due, due)} {
		if err := s(o); err != nil {
			t.Fatal(err)
		}
	}
	err := o.Place(due.Add(time.Minute))
	if !errors.Is(err, domain.ErrExpired) || !errors.Is(err, fail.Conflict) {
		t.Fatalf("placing an expired cart: %v, want ErrExpired, a conflict", err)
	}
	if o.Placed() || o.Status() != domain.StatusExpired {
		t.Errorf("placed %v, status %s after the refusal", o.Placed(), o.Status())
	}
}

func TestAddingToAnExpiredCartReopensIt(t *testing.T) {
	reopened := due.Add(time.Hour)
	next := reopened.Add(ttl)
	for _, sku := range []string{"SOFA", "LAMP"} { // another sku, or the one that expired
		t.Run(sku, func(t *testing.T) {
			o := newOrder(t)
			for _, s := range []step{add("LAMP", 1), allocated("LAMP", "b1"), timeout(due, due)} {
				if err := s(o); err != nil {
					t.Fatal(err)
				}
			}
			before := len(o.Events())
			if err := o.AddItem(sku, 3, ttl, reopened); err != nil {
				t.Fatalf("adding to an expired cart: %v", err)
			}
			if o.Expired() || o.Status() != domain.StatusPending {
				t.Errorf("expired %v, status %s; want a cart again, pending", o.Expired(), o.Status())
			}
			if len(o.Lines) != 1 || o.Lines[0] != (domain.Line{SKU: sku, Qty: 3, State: domain.LineRequested}) {
				t.Errorf("lines %+v, want only the new item, requested", o.Lines)
			}
			if o.ExpiresAt == nil || !o.ExpiresAt.Equal(next) {
				t.Errorf("expires at %v, want a new clock, due %v", o.ExpiresAt, next)
			}
			if got := eventNames(o.Events()[before:]); !reflect.DeepEqual(got, []string{"CartItemAdded", "ReservationTimeout"}) {
				t.Errorf("reopening raised %v, want a new reservation and a new clock", got)
			}
			var history []string
			for _, e := range o.History[len(o.History)-2:] {
				history = append(history, e.Event)
			}
			if !reflect.DeepEqual(history, []string{"reopened", "item_added"}) {
				t.Errorf("history ends with %v, want reopened, item_added", history)
			}
			// The old clock's timer changes nothing; the new one expires it.
			before = len(o.Events())
			o.Expire(due, ttl, next)
			if o.Expired() || len(o.Events()) != before {
				t.Fatalf("the old clock's timer expired the reopened cart")
			}
			o.Expire(next, ttl, next)
			if !o.Expired() {
				t.Fatalf("the new clock's timer did not expire the cart")
			}
		})
	}
}

// The expiry of a cart reopened since, with the same sku, may reach the
// allocation service after the new line: the release it causes (of the
// new line's stock, or of its place on the waiting list) is late, and the
// cart asks again for the stock. A cart never reopened takes a release as
// it comes (an operator's POST /deallocate).
func TestLateReleaseOfAReopenedCart(t *testing.T) {
	reopened := due.Add(time.Hour)
	tests := []struct {
		name     string
		reopen   bool
		release  step
		want     string // the line's state after the release
		reserves bool   // asks again for the stock
	}{
		{"reopened, its line's stock released", true, func(o *domain.Order) error {
			o.LineDeallocated("LAMP", "b1", domain.ReasonRequested, 7, reopened)
			return nil
		}, domain.LineRequested, true},
		{"reopened, its waiting line taken off the list", true, func(o *domain.Order) error {
			o.BackorderCancelled("LAMP", 7, reopened)
			return nil
		}, domain.LineRequested, true},
		{"never expired, its line's stock released", false, func(o *domain.Order) error {
			o.LineDeallocated("LAMP", "b1", domain.ReasonRequested, 7, reopened)
			return nil
		}, domain.LineReleased, false},
		{"never expired, its waiting line taken off the list", false, func(o *domain.Order) error {
			o.BackorderCancelled("LAMP", 7, reopened)
			return nil
		}, domain.LineReleased, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrder(t)
			steps := []step{add("LAMP", 1), allocated("LAMP", "b1")}
			if tt.reopen {
				steps = append(steps, timeout(due, due), addAt("LAMP", 1, reopened))
			}
			waiting := strings.Contains(tt.name, "waiting")
			if waiting {
				steps = append(steps, func(o *domain.Order) error { o.OutOfStock("LAMP", 6, false, true, reopened); return nil })
			} else {
				steps = append(steps, func(o *domain.Order) error { o.LineAllocated("LAMP", "b1", 6, false, reopened); return nil })
			}
			for _, s := range steps {
				if err := s(o); err != nil {
					t.Fatal(err)
				}
			}
			if waiting && o.Lines[0].State != domain.LineWaiting {
				t.Fatalf("setup: line %s, want it waiting", o.Lines[0].State)
			}
			if err := tt.release(o); err != nil {
				t.Fatal(err)
			}
			if got := o.Lines[0].State; got != tt.want {
				t.Errorf("line %s, want %s (history %v)", got, tt.want, o.History)
			}
			asked := 0
			for _, e := range o.Events() {
				if _, ok := e.(domain.CartItemAdded); ok {
					asked++
				}
			}
			want := 1
			if tt.reopen {
				want = 2
			}
			if tt.reserves {
				want++
			}
			if asked != want {
				t.Errorf("cart_item_added raised %d times, want %d", asked, want)
			}
		})
	}
}
