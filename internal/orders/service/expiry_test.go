package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/orders/domain"
	"github.com/stockflow/stockflow/internal/orders/service"
)

// ttl is how long the carts of the tests hold their reservations.
const ttl = 10 * time.Minute

// clock fixes the handlers' time at now, which the test moves; it starts
// at the real time, so that timers set from it are in the future for the
// store and the bus, which tell the real time.
func (f *fixture) clock() *time.Time {
	now := time.Now().UTC().Truncate(time.Second)
	f.h.Now = func() time.Time { return now }
	return &now
}

// outbox returns the messages of channel waiting in the outbox.
func (f *fixture) outbox(t *testing.T, channel string) []messaging.Envelope {
	t.Helper()
	envs, err := f.store.Messaging().Unpublished(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []messaging.Envelope
	for _, e := range envs {
		if e.Channel == channel {
			out = append(out, e)
		}
	}
	return out
}

// fire moves the timers due at at into the outbox, as the relay does, and
// returns those of the cart's clock, to deliver.
func (f *fixture) fire(t *testing.T, at time.Time) []messaging.Envelope {
	t.Helper()
	sched := f.store.Messaging().(messaging.Scheduler)
	if _, err := sched.PromoteDue(context.Background(), at, 100); err != nil {
		t.Fatal(err)
	}
	return f.outbox(t, service.ChannelReservationTimeout)
}

// redeliver hands the consumer env (a message of the service's own, as
// the broker hands it back).
func (f *fixture) redeliver(t *testing.T, env messaging.Envelope) {
	t.Helper()
	env.DeliverAt = time.Time{} // it does not travel
	if err := f.consumer.Handle(context.Background(), messaging.Delivery{Envelope: env, Attempt: 1}); err != nil {
		t.Fatalf("delivering %s: %v", env.Channel, err)
	}
}

func TestAddingTheFirstItemSchedulesTheTimer(t *testing.T) {
	f := setup(t)
	now := f.clock()
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	_, raised, err := f.h.AddItem(context.Background(), domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	if err != nil {
		t.Fatal(err)
	}
	due := now.Add(ttl)
	var timers []messaging.Envelope
	for _, r := range raised {
		if r.Envelope.Channel == service.ChannelReservationTimeout {
			timers = append(timers, r.Envelope)
		} else if !r.Envelope.DeliverAt.IsZero() {
			t.Errorf("%s is scheduled for %v; only the timer waits", r.Envelope.Channel, r.Envelope.DeliverAt)
		}
	}
	if len(timers) != 1 || !timers[0].DeliverAt.Equal(due) || timers[0].Key != o.ID {
		t.Fatalf("timers raised %+v, want one keyed by the order, to deliver at %v", timers, due)
	}
	var p struct {
		OrderID   string `json:"orderid"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal(timers[0].Payload, &p); err != nil {
		t.Fatal(err)
	}
	if at, err := time.Parse(time.RFC3339, p.ExpiresAt); err != nil || p.OrderID != o.ID || !at.Equal(due) {
		t.Errorf("timer payload %s, want the order and expires_at %s (RFC 3339): %v", timers[0].Payload, due.Format(time.RFC3339), err)
	}
	// The timer waits apart, not in the outbox; a second item sets none.
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "SOFA", Qty: 1})
	if got := f.outbox(t, service.ChannelReservationTimeout); len(got) != 0 {
		t.Errorf("timers in the outbox before they are due: %+v", got)
	}
	if n, err := f.store.Messaging().(messaging.Scheduler).Scheduled(context.Background()); err != nil || n != 1 {
		t.Errorf("%d timers scheduled (%v), want 1", n, err)
	}
	if v := f.order(t, o.ID); v.ExpiresAt == nil || !v.ExpiresAt.Equal(due) {
		t.Errorf("order expires at %v, want %v", v.ExpiresAt, due)
	}
}

func TestTimeoutExpiresTheCart(t *testing.T) {
	f := setup(t)
	now := f.clock()
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	f.deliver(t, "m1", service.ChannelLineAllocated, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b1"})
	due := now.Add(ttl)
	if got := f.fire(t, due.Add(-time.Second)); len(got) != 0 {
		t.Fatalf("a timer fired early: %+v", got)
	}
	timers := f.fire(t, due)
	if len(timers) != 1 {
		t.Fatalf("%d timers due, want 1", len(timers))
	}
	*now = due
	f.redeliver(t, timers[0])

	v := f.order(t, o.ID)
	if v.Status != domain.StatusExpired || v.Lines[0].State != domain.LineReleased || v.ExpiresAt != nil {
		t.Fatalf("status %s, lines %+v, expires at %v; want expired, released, no clock", v.Status, v.Lines, v.ExpiresAt)
	}
	last := v.History[len(v.History)-1]
	if last.Event != "expired" || last.Detail != "reservations expired after 10m0s: their stock was released" {
		t.Errorf("history ends with %+v", last)
	}
	expired := f.outbox(t, service.ChannelReservationExpired)
	if len(expired) != 1 || expired[0].Key != o.ID {
		t.Fatalf("reservation_expired in the outbox: %+v, want one keyed by the order", expired)
	}
	var p struct {
		OrderID   string        `json:"orderid"`
		Customer  string        `json:"customer"`
		Lines     []domain.Item `json:"lines"`
		ExpiredAt time.Time     `json:"expired_at"`
	}
	json.Unmarshal(expired[0].Payload, &p)
	if p.OrderID != o.ID || p.Customer != "alice" || len(p.Lines) != 1 || p.Lines[0] != (domain.Item{SKU: "LAMP", Qty: 2}) || !p.ExpiredAt.Equal(due) {
		t.Errorf("reservation_expired payload %s", expired[0].Payload)
	}

	// Redelivered, or a copy under another id: nothing more.
	f.redeliver(t, timers[0])
	dup := timers[0]
	dup.ID = messaging.NewID()
	f.redeliver(t, dup)
	if after := f.order(t, o.ID); len(after.History) != len(v.History) {
		t.Errorf("the timer handled again changed the order: %+v", after.History[len(v.History):])
	}
	if n := len(f.outbox(t, service.ChannelReservationExpired)); n != 1 {
		t.Errorf("%d reservation_expired, want 1", n)
	}

	// Placing it is a conflict; adding an item reopens it, with a new clock.
	if _, err := f.bus.Handle(context.Background(), domain.PlaceOrder{OrderID: o.ID}); !errors.Is(err, domain.ErrExpired) {
		t.Fatalf("placing the expired cart: %v, want ErrExpired", err)
	}
	*now = due.Add(time.Minute)
	_, raised, err := f.h.AddItem(context.Background(), domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 1})
	if err != nil {
		t.Fatalf("adding to the expired cart: %v", err)
	}
	var next time.Time
	for _, r := range raised {
		if r.Envelope.Channel == service.ChannelReservationTimeout {
			next = r.Envelope.DeliverAt
		}
	}
	if want := now.Add(ttl); !next.Equal(want) {
		t.Errorf("reopened cart's timer is due %v, want %v", next, want)
	}
	if v := f.order(t, o.ID); v.Status != domain.StatusPending || len(v.Lines) != 1 || v.ExpiresAt == nil {
		t.Errorf("reopened cart: status %s, lines %+v, expires at %v", v.Status, v.Lines, v.ExpiresAt)
	}
}

func TestTimeoutLeavesAPlacedOrder(t *testing.T) {
	f := setup(t)
	now := f.clock()
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	f.deliver(t, "m1", service.ChannelOutOfStock, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "waiting": true, "customer": "alice"})
	f.handle(t, domain.PlaceOrder{OrderID: o.ID})
	before := f.order(t, o.ID)
	if before.ExpiresAt != nil {
		t.Errorf("a placed order expires at %v: placing stops the clock", before.ExpiresAt)
	}
	*now = now.Add(ttl + time.Hour)
	for _, env := range f.fire(t, *now) {
		f.redeliver(t, env)
	}
	after := f.order(t, o.ID)
	if after.Status != domain.StatusWaiting || len(after.History) != len(before.History) {
		t.Errorf("status %s, history %d → %d; a placed order waiting for stock never expires", after.Status, len(before.History), len(after.History))
	}
	if n := len(f.outbox(t, service.ChannelReservationExpired)); n != 0 {
		t.Errorf("%d reservation_expired for a placed order", n)
	}
}

func TestTimeoutIsDecodedStrictly(t *testing.T) {
	f := setup(t)
	for _, payload := range []string{`{"orderid": "o1"}`, `{"orderid": "o1", "expires_at": "soon"}`} {
		d := messaging.Delivery{Envelope: messaging.Envelope{ID: messaging.NewID(), Channel: service.ChannelReservationTimeout, Payload: json.RawMessage(payload)}, Attempt: 1}
		if err := f.consumer.Handle(context.Background(), d); err != nil {
			t.Fatalf("%s: %v (a poison message must be acknowledged)", payload, err)
		}
	}
	if dls, err := f.store.Messaging().DeadLetters(context.Background(), 10); err != nil || len(dls) != 2 {
		t.Fatalf("%d dead letters (%v), want 2", len(dls), err)
	}
}

func TestBackorderFilled(t *testing.T) {
	f := setup(t)
	o := f.handle(t, domain.CreateOrder{Customer: "alice", Email: "alice@example.com"})
	f.handle(t, domain.AddItem{OrderID: o.ID, SKU: "LAMP", Qty: 2})
	f.deliver(t, "m1", service.ChannelOutOfStock, map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "waiting": true, "customer": "alice", "version": 1})
	f.handle(t, domain.PlaceOrder{OrderID: o.ID})
	allocated := map[string]any{"orderid": o.ID, "sku": "LAMP", "qty": 2, "batchref": "b3", "version": 2, "backorder": true}
	f.deliver(t, "m2", service.ChannelLineAllocated, allocated)
	f.deliver(t, "m2", service.ChannelLineAllocated, allocated)
	f.deliver(t, "m3", service.ChannelLineAllocated, allocated)

	v := f.order(t, o.ID)
	if v.Status != domain.StatusReserved || v.Lines[0].BatchRef != "b3" {
		t.Fatalf("status %s, line %+v; want reserved in b3", v.Status, v.Lines[0])
	}
	if last := v.History[len(v.History)-1]; last.Event != "stock_arrived" || last.Detail != "LAMP arrived: reserved in batch b3" {
		t.Errorf("history ends with %+v", last)
	}
	filled := f.outbox(t, service.ChannelBackorderFilled)
	if len(filled) != 1 || filled[0].Key != o.ID {
		t.Fatalf("backorder_filled in the outbox: %+v, want one keyed by the order", filled)
	}
	var got map[string]any
	json.Unmarshal(filled[0].Payload, &got)
	want := map[string]any{"orderid": o.ID, "customer": "alice", "email": "alice@example.com", "sku": "LAMP", "qty": 2.0, "batchref": "b3", "placed": true}
	if len(got) != len(want) {
		t.Errorf("backorder_filled payload %s", filled[0].Payload)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("backorder_filled %s = %v, want %v (%s)", k, got[k], w, filled[0].Payload)
		}
	}
}
