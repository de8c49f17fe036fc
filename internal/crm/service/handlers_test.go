package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/crm/domain"
	"github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

type fixture struct {
	h     *service.Handlers
	store docstore.Store
}

func setup(t *testing.T) fixture {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crm.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return fixture{service.NewHandlers(store, service.Messages()), store}
}

// delivered returns a context handling the message id, as the bus hands
// it to the handler named consumer.
func delivered(id, consumer string) context.Context {
	return messaging.WithMeta(context.Background(), messaging.Meta{MessageID: id, CorrelationID: id, Consumer: consumer})
}

func placed(order string, n int) service.OrderPlaced {
	return service.OrderPlaced{
		OrderID: order, Customer: "alice", Email: "alice@example.com",
		Lines: []service.Item{{SKU: "LAMP", Qty: 1}}, PlacedAt: t0.Add(time.Duration(n) * time.Hour),
	}
}

func statusChanged(order string, seq int, status string) service.OrderStatusChanged {
	return service.OrderStatusChanged{
		OrderID: order, Customer: "alice", Seq: seq, Status: status,
		Event: status, Detail: "now " + status, At: t0.Add(time.Duration(seq) * time.Minute),
	}
}

// place handles e as the message id.
func (f fixture) place(t *testing.T, id string, e service.OrderPlaced) []messaging.Raised {
	t.Helper()
	raised, err := f.h.OrderPlaced(delivered(id, "crm.order_placed"), e)
	if err != nil {
		t.Fatalf("OrderPlaced(%s): %v", e.OrderID, err)
	}
	return raised
}

// doc returns the stored customer's document.
func (f fixture) doc(t *testing.T, id string) docstore.Doc {
	t.Helper()
	d, err := f.store.Get(context.Background(), "customer", id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestThirdOrderMakesAVIPOnce(t *testing.T) {
	f := setup(t)
	for i, order := range []string{"o1", "o2"} {
		if raised := f.place(t, "m"+order, placed(order, i)); len(raised) != 0 {
			t.Fatalf("order %d raised %v", i+1, raised)
		}
	}
	raised := f.place(t, "mo3", placed("o3", 2))
	if len(raised) != 1 {
		t.Fatalf("the third order raised %d events, want 1", len(raised))
	}
	env := raised[0].Envelope
	if env.Channel != service.ChannelCustomerBecameVIP || env.Key != "alice" || env.CausationID != "mo3" {
		t.Fatalf("envelope %+v: want channel %s, key alice, caused by mo3", env, service.ChannelCustomerBecameVIP)
	}
	var payload map[string]any
	if err := json.Unmarshal(env.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"customer": "alice", "email": "alice@example.com", "orders": 3.0, "at": t0.Add(2 * time.Hour).Format(time.RFC3339)}
	if fmt.Sprint(payload) != fmt.Sprint(want) {
		t.Fatalf("payload %v, want %v", payload, want)
	}
	version := f.doc(t, "alice").Version

	// The same message again: the inbox skips it.
	if raised := f.place(t, "mo3", placed("o3", 2)); len(raised) != 0 {
		t.Fatalf("redelivered third order raised %v", raised)
	}
	// The same order in another message: the customer knows it.
	if raised := f.place(t, "mo3-again", placed("o3", 2)); len(raised) != 0 {
		t.Fatalf("third order told twice raised %v", raised)
	}
	if d := f.doc(t, "alice"); d.Version != version || d.Index != service.SegmentVIP {
		t.Fatalf("version %d, index %q; want %d, vip", d.Version, d.Index, version)
	}
	if raised := f.place(t, "mo4", placed("o4", 3)); len(raised) != 0 {
		t.Fatalf("the fourth order raised %v", raised)
	}
	c, err := f.h.Customer(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !c.VIP || c.PlacedOrders() != 4 || !c.VIPSince.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("customer %+v: want a VIP since the third order, with 4 orders", c)
	}
}

func TestRedeliveryChangesNothing(t *testing.T) {
	tests := []struct {
		name   string
		handle func(f fixture, ctx context.Context) ([]messaging.Raised, error)
	}{
		{"order_placed", func(f fixture, ctx context.Context) ([]messaging.Raised, error) {
			return f.h.OrderPlaced(ctx, placed("o1", 0))
		}},
		{"order_status_changed", func(f fixture, ctx context.Context) ([]messaging.Raised, error) {
			return f.h.OrderStatusChanged(ctx, statusChanged("o1", 1, "pending"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			ctx := delivered("m1", "crm."+tt.name)
			if _, err := tt.handle(f, ctx); err != nil {
				t.Fatal(err)
			}
			first := f.doc(t, "alice")
			for range 2 {
				if raised, err := tt.handle(f, ctx); err != nil || len(raised) != 0 {
					t.Fatalf("redelivery: raised %v, error %v", raised, err)
				}
			}
			// Told again in a new message, past the inbox: the customer
			// has it already.
			if _, err := tt.handle(f, delivered("m2", "crm."+tt.name)); err != nil {
				t.Fatal(err)
			}
			if d := f.doc(t, "alice"); d.Version != first.Version || string(d.Body) != string(first.Body) {
				t.Fatalf("redeliveries changed the customer:\n%s\n%s", first.Body, d.Body)
			}
		})
	}
}

func TestStatusChangesOutOfOrder(t *testing.T) {
	f := setup(t)
	status := func(id string, e service.OrderStatusChanged) {
		t.Helper()
		if _, err := f.h.OrderStatusChanged(delivered(id, "crm.order_status_changed"), e); err != nil {
			t.Fatal(err)
		}
	}
	// Before the order's order_placed, highest seq first.
	status("s3", statusChanged("o1", 3, "reserved"))
	status("s1", statusChanged("o1", 1, "pending"))
	c, err := f.h.Customer(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	o := c.Order("o1")
	if c.Email != "" || o == nil || o.Placed() || o.Status != "reserved" || len(o.History) != 2 || o.History[0].Seq != 1 {
		t.Fatalf("customer %+v: want o1 reserved, 2 entries, not placed, no email", c)
	}
	if d := f.doc(t, "alice"); d.Index != service.SegmentRegular {
		t.Fatalf("index %q, want regular", d.Index)
	}

	f.place(t, "p1", placed("o1", 0))
	status("s2", statusChanged("o1", 2, "pending"))
	c, err = f.h.Customer(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	o = c.Order("o1")
	want := []domain.Entry{
		{Seq: 1, At: t0.Add(time.Minute), Event: "pending", Detail: "now pending", Status: "pending"},
		{Seq: 2, At: t0.Add(2 * time.Minute), Event: "pending", Detail: "now pending", Status: "pending"},
		{Seq: 3, At: t0.Add(3 * time.Minute), Event: "reserved", Detail: "now reserved", Status: "reserved"},
	}
	if c.Email != "alice@example.com" || !o.Placed() || o.Status != "reserved" || fmt.Sprint(o.History) != fmt.Sprint(want) {
		t.Fatalf("customer %+v, history %v: want placed, reserved, history %v", c, o.History, want)
	}
}

// TestConcurrentOrders: three orders handled at once make one VIP.
func TestConcurrentOrders(t *testing.T) {
	f := setup(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var raised []messaging.Raised
	for i := range 3 {
		wg.Go(func() {
			order := fmt.Sprintf("o%d", i+1)
			r, err := f.h.OrderPlaced(delivered("m"+order, "crm.order_placed"), placed(order, i))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			raised = append(raised, r...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(raised) != 1 {
		t.Fatalf("%d events raised, want 1", len(raised))
	}
}

func TestInvalidMessagesArePermanent(t *testing.T) {
	f := setup(t)
	badEmail := placed("o1", 0)
	badEmail.Email = "not an address"
	noCustomer := placed("o1", 0)
	noCustomer.Customer = ""
	tests := []struct {
		name   string
		handle func(ctx context.Context) ([]messaging.Raised, error)
	}{
		{"bad email", func(ctx context.Context) ([]messaging.Raised, error) { return f.h.OrderPlaced(ctx, badEmail) }},
		{"no customer", func(ctx context.Context) ([]messaging.Raised, error) { return f.h.OrderPlaced(ctx, noCustomer) }},
		{"seq 0", func(ctx context.Context) ([]messaging.Raised, error) {
			return f.h.OrderStatusChanged(ctx, statusChanged("o1", 0, "pending"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.handle(delivered("bad-"+tt.name, "crm.test"))
			if !messaging.IsPermanent(err) {
				t.Fatalf("error %v: want a permanent one", err)
			}
		})
	}
	if list, err := f.h.Customers(context.Background(), service.SegmentAll, 10); err != nil || len(list) != 0 {
		t.Fatalf("customers %v, %v: invalid messages stored some", list, err)
	}
	if _, err := f.h.Customer(context.Background(), "alice"); !errors.Is(err, fail.NotFound) {
		t.Fatalf("Customer(alice) = %v", err)
	}
}

func TestCustomersBySegment(t *testing.T) {
	f := setup(t)
	for _, who := range []string{"carol", "bob", "alice"} {
		n := 1
		if who != "bob" {
			n = 3
		}
		for i := range n {
			e := placed(fmt.Sprintf("%s-%d", who, i), i)
			e.Customer, e.Email = who, who+"@example.com"
			f.place(t, e.OrderID, e)
		}
	}
	tests := []struct {
		segment string
		limit   int
		want    []string
	}{
		{service.SegmentAll, 10, []string{"alice", "bob", "carol"}},
		{service.SegmentAll, 2, []string{"alice", "bob"}},
		{service.SegmentVIP, 10, []string{"alice", "carol"}},
		{service.SegmentRegular, 10, []string{"bob"}},
	}
	for _, tt := range tests {
		list, err := f.h.Customers(context.Background(), tt.segment, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range list {
			got = append(got, c.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Customers(%q, %d) = %v, want %v", tt.segment, tt.limit, got, tt.want)
		}
	}
	for _, bad := range []struct {
		segment string
		limit   int
	}{{service.SegmentAll, 0}, {service.SegmentAll, service.MaxLimit + 1}, {"gold", 10}} {
		if _, err := f.h.Customers(context.Background(), bad.segment, bad.limit); !errors.Is(err, fail.Invalid) {
			t.Errorf("Customers(%q, %d): %v, want invalid", bad.segment, bad.limit, err)
		}
	}
}
