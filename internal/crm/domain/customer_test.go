package domain_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/crm/domain"
	"github.com/stockflow/stockflow/internal/fail"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }

func newCustomer(t *testing.T) *domain.Customer {
	t.Helper()
	c, err := domain.NewCustomer("alice")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func placement(id string, at time.Time) domain.Placement {
	return domain.Placement{OrderID: id, Email: "alice@example.com", Lines: []domain.Line{{SKU: "LAMP", Qty: 1}}, PlacedAt: at}
}

func place(t *testing.T, c *domain.Customer, p domain.Placement) []any {
	t.Helper()
	before := len(c.Events())
	if err := c.OrderPlaced(p); err != nil {
		t.Fatalf("OrderPlaced(%s): %v", p.OrderID, err)
	}
	return c.Events()[before:]
}

func TestThirdPlacedOrderMakesAVIPOnce(t *testing.T) {
	c := newCustomer(t)
	for i, id := range []string{"o1", "o2"} {
		if ev := place(t, c, placement(id, day(i))); len(ev) != 0 || c.VIP {
			t.Fatalf("after order %d: VIP %v, events %v", i+1, c.VIP, ev)
		}
	}
	ev := place(t, c, placement("o3", day(2)))
	want := domain.CustomerBecameVIP{Customer: "alice", Email: "alice@example.com", Orders: 3, At: day(2)}
	if !reflect.DeepEqual(ev, []any{want}) {
		t.Fatalf("events of the third order %v, want %v", ev, want)
	}
	if !c.VIP || c.VIPSince == nil || !c.VIPSince.Equal(day(2)) {
		t.Fatalf("VIP %v since %v, want since %v", c.VIP, c.VIPSince, day(2))
	}
	// The third again, then a fourth: no second announcement.
	if ev := place(t, c, placement("o3", day(2))); len(ev) != 0 {
		t.Fatalf("redelivered third order raised %v", ev)
	}
	if ev := place(t, c, placement("o4", day(3))); len(ev) != 0 {
		t.Fatalf("fourth order raised %v", ev)
	}
	if n := c.PlacedOrders(); n != 4 {
		t.Fatalf("PlacedOrders = %d, want 4", n)
	}
}

func TestRedeliveredOrderPlacedCountsOnce(t *testing.T) {
	c := newCustomer(t)
	for range 3 {
		place(t, c, placement("o1", day(0)))
	}
	place(t, c, placement("o2", day(1)))
	if n := c.PlacedOrders(); n != 2 || c.VIP || len(c.Events()) != 0 {
		t.Fatalf("PlacedOrders = %d, VIP %v, events %v; want 2, not VIP, none", n, c.VIP, c.Events())
	}
}

func TestVIPSinceTheLatestOfTheThreeOrders(t *testing.T) {
	// The orders' news arrive in another order than they were placed.
	c := newCustomer(t)
	place(t, c, placement("o3", day(5)))
	place(t, c, placement("o1", day(1)))
	ev := place(t, c, placement("o2", day(3)))
	if len(ev) != 1 || !c.VIPSince.Equal(day(5)) {
		t.Fatalf("events %v, VIP since %v; want one event, since %v", ev, c.VIPSince, day(5))
	}
	if ids := orderIDs(c); !slices.Equal(ids, []string{"o1", "o2", "o3"}) {
		t.Fatalf("orders %v, want sorted by placing", ids)
	}
}

func TestEmailOfTheLatestPlacedOrder(t *testing.T) {
	c := newCustomer(t)
	p := placement("o2", day(2))
	p.Email = "new@example.com"
	place(t, c, p)
	old := placement("o1", day(1)) // placed before, told after
	old.Email = "old@example.com"
	place(t, c, old)
	if c.Email != "new@example.com" {
		t.Fatalf("email %q, want that of the latest order", c.Email)
	}
}

func entry(seq int, status string) domain.Entry {
	return domain.Entry{Seq: seq, At: day(0).Add(time.Duration(seq) * time.Minute), Event: status, Detail: "d", Status: status}
}

func TestStatusChangesInAnyOrderAndTwice(t *testing.T) {
	c := newCustomer(t)
	// Status changes come before the order's OrderPlaced, out of order,
	// one of them twice.
	for _, e := range []domain.Entry{entry(3, "reserved"), entry(1, "placed"), entry(3, "reserved"), entry(2, "pending")} {
		if err := c.StatusChanged("o1", e); err != nil {
			t.Fatal(err)
		}
	}
	o := c.Order("o1")
	if o == nil || o.Placed() || o.Status != "reserved" || c.Email != "" {
		t.Fatalf("order %+v, email %q; want an unplaced reserved order, no email yet", o, c.Email)
	}
	var seqs []int
	for _, e := range o.History {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []int{1, 2, 3}) {
		t.Fatalf("history seqs %v, want 1 2 3", seqs)
	}
	if c.PlacedOrders() != 0 {
		t.Fatal("an order known from its status changes only counts as placed")
	}

	place(t, c, placement("o1", day(0)))
	o = c.Order("o1")
	if !o.Placed() || len(o.History) != 3 || o.Status != "reserved" || c.Email != "alice@example.com" {
		t.Fatalf("after OrderPlaced: %+v, email %q", o, c.Email)
	}
	// An older entry arriving late does not change the status.
	if err := c.StatusChanged("o1", entry(4, "dispatched")); err != nil {
		t.Fatal(err)
	}
	if err := c.StatusChanged("o1", entry(3, "reserved")); err != nil {
		t.Fatal(err)
	}
	if o := c.Order("o1"); o.Status != "dispatched" {
		t.Fatalf("status %q, want that of the highest seq", o.Status)
	}
}

func TestDuplicatesChangeNothing(t *testing.T) {
	c := newCustomer(t)
	place(t, c, placement("o1", day(0)))
	if err := c.StatusChanged("o1", entry(1, "pending")); err != nil {
		t.Fatal(err)
	}
	if !c.Changed() {
		t.Fatal("a new customer's news left it unchanged")
	}
	// The customer as the store would give it back.
	reloaded := &domain.Customer{ID: c.ID, Email: c.Email, Orders: c.Orders}
	place(t, reloaded, placement("o1", day(0)))
	if err := reloaded.StatusChanged("o1", entry(1, "pending")); err != nil {
		t.Fatal(err)
	}
	if reloaded.Changed() {
		t.Fatal("news told twice changed the customer")
	}
}

func TestInvalidNews(t *testing.T) {
	ok := placement("o1", day(0))
	tests := []struct {
		name string
		do   func(c *domain.Customer) error
	}{
		{"empty orderid", func(c *domain.Customer) error { p := ok; p.OrderID = ""; return c.OrderPlaced(p) }},
		{"bad email", func(c *domain.Customer) error { p := ok; p.Email = "nobody"; return c.OrderPlaced(p) }},
		{"no placed_at", func(c *domain.Customer) error { p := ok; p.PlacedAt = time.Time{}; return c.OrderPlaced(p) }},
		{"zero qty", func(c *domain.Customer) error {
			p := ok
			p.Lines = []domain.Line{{SKU: "LAMP", Qty: 0}}
			return c.OrderPlaced(p)
		}},
		{"empty sku", func(c *domain.Customer) error {
			p := ok
			p.Lines = []domain.Line{{SKU: " ", Qty: 1}}
			return c.OrderPlaced(p)
		}},
		{"seq 0", func(c *domain.Customer) error { return c.StatusChanged("o1", entry(0, "pending")) }},
		{"empty status", func(c *domain.Customer) error { return c.StatusChanged("o1", entry(1, "")) }},
		{"no at", func(c *domain.Customer) error {
			e := entry(1, "pending")
			e.At = time.Time{}
			return c.StatusChanged("o1", e)
		}},
		{"status of no order", func(c *domain.Customer) error { return c.StatusChanged("", entry(1, "pending")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCustomer(t)
			if err := tt.do(c); !errors.Is(err, fail.Invalid) {
				t.Fatalf("error %v, want one matching fail.Invalid", err)
			}
			if c.Changed() || len(c.Orders) != 0 {
				t.Fatalf("invalid news changed the customer: %+v", c)
			}
		})
	}
	if _, err := domain.NewCustomer(""); !errors.Is(err, fail.Invalid) {
		t.Fatalf("NewCustomer(\"\"): %v", err)
	}
}

func orderIDs(c *domain.Customer) []string {
	var ids []string
	for _, o := range c.Orders {
		ids = append(ids, o.ID)
	}
	return ids
}
