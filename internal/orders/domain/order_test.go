package domain_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/orders/domain"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// ttl is how long the carts of the tests hold their reservations.
const ttl = 30 * time.Minute

func newOrder(t *testing.T) *domain.Order {
	t.Helper()
	o, err := domain.NewOrder("o1", "alice", "alice@example.com", t0)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func eventNames(evs []any) []string {
	var out []string
	for _, e := range evs {
		out = append(out, reflect.TypeOf(e).Name())
	}
	return out
}

func TestNewOrderValidates(t *testing.T) {
	for _, c := range []struct{ id, customer, email string }{
		{"", "alice", "a@example.com"},
		{"o1", "", "a@example.com"},
		{"o1", "alice", "not-an-email"},
		{"o1", "alice", "a@"},
		{"o1", "alice", "a b@example.com"},
		{"o1", "al\x00ice", "a@example.com"},
	} {
		if _, err := domain.NewOrder(c.id, c.customer, c.email, t0); !errors.Is(err, fail.Invalid) {
			t.Errorf("NewOrder(%q, %q, %q) = %v, want ErrInvalid", c.id, c.customer, c.email, err)
		}
	}
}

// step is something that happens to an order.
type step func(o *domain.Order) error

func add(sku string, qty int) step {
	return func(o *domain.Order) error { return o.AddItem(sku, qty, ttl, t0) }
}
func place(o *domain.Order) error  { return o.Place(t0) }
func cancel(o *domain.Order) error { return o.Cancel(t0) }
func allocated(sku, ref string) step {
	return func(o *domain.Order) error { o.LineAllocated(sku, ref, 0, false, t0); return nil }
}
func deallocated(sku, ref, reason string) step {
	return func(o *domain.Order) error { o.LineDeallocated(sku, ref, reason, 0, t0); return nil }
}
func outOfStock(sku string) step {
	return func(o *domain.Order) error { o.OutOfStock(sku, 0, false, false, t0); return nil }
}
func dispatched(o *domain.Order) error { o.GoodsDispatched(nil, t0); return nil }

func TestStatusFollowsEvents(t *testing.T) {
	for _, c := range []struct {
		name   string
		steps  []step
		status string
		states []string
	}{
		{"empty cart", nil, domain.StatusCart, nil},
		{"item added", []step{add("LAMP", 1)}, domain.StatusPending, []string{domain.LineRequested}},
		{"reserved", []step{add("LAMP", 1), allocated("LAMP", "b1")}, domain.StatusReserved, []string{domain.LineReserved}},
		{"one of two reserved", []step{add("LAMP", 1), add("SOFA", 1), allocated("LAMP", "b1")}, domain.StatusPending, []string{domain.LineReserved, domain.LineRequested}},
		{"out of stock", []step{add("LAMP", 1), outOfStock("LAMP")}, domain.StatusWaiting, []string{domain.LineWaiting}},
		{"batch shrank", []step{add("LAMP", 1), allocated("LAMP", "b1"), deallocated("LAMP", "b1", domain.ReasonBatchShrank)}, domain.StatusPending, []string{domain.LineMoving}},
		{"reallocated", []step{add("LAMP", 1), allocated("LAMP", "b1"), deallocated("LAMP", "b1", domain.ReasonBatchShrank), allocated("LAMP", "b2")}, domain.StatusReallocated, []string{domain.LineReserved}},
		{"moved then out of stock", []step{add("LAMP", 1), allocated("LAMP", "b1"), deallocated("LAMP", "b1", domain.ReasonBatchShrank), outOfStock("LAMP")}, domain.StatusWaiting, []string{domain.LineWaiting}},
		{"stale deallocation ignored", []step{add("LAMP", 1), allocated("LAMP", "b2"), deallocated("LAMP", "b1", domain.ReasonBatchShrank)}, domain.StatusReserved, []string{domain.LineReserved}},
		{"dispatched", []step{add("LAMP", 1), allocated("LAMP", "b1"), place, dispatched}, domain.StatusDispatched, []string{domain.LineDispatched}},
		{"dispatch deallocation ignored", []step{add("LAMP", 1), allocated("LAMP", "b1"), place, dispatched, deallocated("LAMP", "b1", "dispatched")}, domain.StatusDispatched, []string{domain.LineDispatched}},
		{"cancelled", []step{add("LAMP", 1), allocated("LAMP", "b1"), cancel, deallocated("LAMP", "b1", domain.ReasonRequested)}, domain.StatusCancelled, []string{domain.LineReleased}},
		{"unknown sku ignored", []step{add("LAMP", 1), allocated("SOFA", "b1")}, domain.StatusPending, []string{domain.LineRequested}},
		{"dispatched after a late cancellation", []step{add("LAMP", 1), allocated("LAMP", "b1"), place, cancel, dispatched}, domain.StatusDispatched, []string{domain.LineDispatched}},
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
		})
	}
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []step
		last  step
		want  error
	}{
		{"place an empty cart", nil, place, domain.ErrEmpty},
		{"add after placing", []step{add("LAMP", 1), place}, add("SOFA", 1), domain.ErrPlaced},
		{"add the same sku twice", []step{add("LAMP", 1)}, add("LAMP", 2), domain.ErrItemInCart},
		{"add to a cancelled cart", []step{add("LAMP", 1), cancel}, add("SOFA", 1), domain.ErrCancelled},
		{"place a cancelled order", []step{add("LAMP", 1), cancel}, place, domain.ErrCancelled},
		{"cancel a dispatched order", []step{add("LAMP", 1), allocated("LAMP", "b1"), place, dispatched}, cancel, domain.ErrDispatched},
		{"zero quantity", nil, add("LAMP", 0), fail.Invalid},
		{"empty sku", nil, add(" ", 1), fail.Invalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrder(t)
			for _, s := range c.steps {
				if err := s(o); err != nil {
					t.Fatal(err)
				}
			}
			err := c.last(o)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if errors.Is(c.want, fail.Conflict) && !errors.Is(err, fail.Conflict) {
				t.Errorf("%v does not match fail.Conflict (409)", err)
			}
		})
	}
}

func TestEventsRaised(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []step
		want  []string
	}{
		{"adding an item asks for its stock", []step{add("LAMP", 1)}, []string{"CartItemAdded", "ReservationTimeout"}},
		{"cart changes are not announced as status changes", []step{add("LAMP", 1), allocated("LAMP", "b1")}, []string{"CartItemAdded", "ReservationTimeout"}},
		{"placing", []step{add("LAMP", 1), place}, []string{"CartItemAdded", "ReservationTimeout", "OrderPlaced", "OrderStatusChanged"}},
		{"placing twice raises nothing more", []step{add("LAMP", 1), place, place}, []string{"CartItemAdded", "ReservationTimeout", "OrderPlaced", "OrderStatusChanged"}},
		{"changes after placing are announced", []step{add("LAMP", 1), place, allocated("LAMP", "b1"), dispatched}, []string{"CartItemAdded", "ReservationTimeout", "OrderPlaced", "OrderStatusChanged", "OrderStatusChanged", "OrderStatusChanged"}},
		{"a duplicate allocation raises nothing", []step{add("LAMP", 1), place, allocated("LAMP", "b1"), allocated("LAMP", "b1")}, []string{"CartItemAdded", "ReservationTimeout", "OrderPlaced", "OrderStatusChanged", "OrderStatusChanged"}},
		{"cancelling a cart", []step{add("LAMP", 1), cancel, cancel}, []string{"CartItemAdded", "ReservationTimeout", "OrderCancelled"}},
		{"allocated after cancelling: released again", []step{add("LAMP", 1), cancel, allocated("LAMP", "b1"), allocated("LAMP", "b1")}, []string{"CartItemAdded", "ReservationTimeout", "OrderCancelled", "OrderCancelled"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrder(t)
			for _, s := range c.steps {
				if err := s(o); err != nil {
					t.Fatal(err)
				}
			}
			if got := eventNames(o.Events()); !reflect.DeepEqual(got, c.want) {
				t.Errorf("events %v, want %v", got, c.want)
			}
		})
	}
}

func TestStatusChangesCarryTheHistory(t *testing.T) {
	o := newOrder(t)
	for _, s := range []step{add("LAMP", 2), allocated("LAMP", "b1"), place, deallocated("LAMP", "b1", domain.ReasonBatchShrank), allocated("LAMP", "b2")} {
		if err := s(o); err != nil {
			t.Fatal(err)
		}
	}
	var got []domain.OrderStatusChanged
	for _, e := range o.Events() {
		if c, ok := e.(domain.OrderStatusChanged); ok {
			got = append(got, c)
		}
	}
	want := []struct {
		seq           int
		status, event string
	}{{4, domain.StatusReserved, "placed"}, {5, domain.StatusPending, "moving"}, {6, domain.StatusReallocated, "reallocated"}}
	if len(got) != len(want) {
		t.Fatalf("got %d status changes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Seq != w.seq || got[i].Status != w.status || got[i].Event != w.event || got[i].OrderID != "o1" || got[i].Customer != "alice" {
			t.Errorf("change %d = %+v, want seq %d, status %s, event %s", i, got[i], w.seq, w.status, w.event)
		}
	}
	if last := o.History[len(o.History)-1]; last.Seq != len(o.History) {
		t.Errorf("history seq %d at position %d", last.Seq, len(o.History))
	}
}
