package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
)

// waitingList is the waiting list of p as (order, qty, customer, vip).
type waitingEntry struct {
	OrderID  string
	Qty      int
	Customer string
	VIP      bool
}

func waitingOf(p *domain.Product) []waitingEntry {
	var out []waitingEntry
	for _, w := range p.Waiting {
		out = append(out, waitingEntry{w.OrderID, w.Qty, w.Customer, w.VIP})
	}
	return out
}

// reserve allocates a shop line, which waits when no batch can take it,
// as the service does: the customer's VIP mark is read first.
func reserve(t *testing.T, s service.Store, line domain.OrderLine) string {
	t.Helper()
	var ref string
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		vip, err := uow.Customers().IsVIP(ctx, line.Customer)
		if err != nil {
			return err
		}
		line.VIP = vip
		p, err := uow.Products().GetForOrder(ctx, line.SKU, line.OrderID)
		if errors.Is(err, fail.NotFound) {
			p = domain.NewProduct(line.SKU, 0)
			uow.Products().Add(p)
		} else if err != nil {
			return err
		}
		ref, err = p.Allocate(line)
		if errors.Is(err, domain.ErrOutOfStock) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatalf("reserving %v: %v", line, err)
	}
	return ref
}

func addVIP(t *testing.T, s service.Store, customer string) []string {
	t.Helper()
	var skus []string
	_, err := s.Transact(ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		var err error
		skus, err = uow.Customers().AddVIP(ctx, customer)
		return err
	})
	if err != nil {
		t.Fatalf("adding VIP %s: %v", customer, err)
	}
	return skus
}

// testBackorders: the waiting list persists, in the order it is served,
// with each customer's VIP mark as the store knows it; what the list
// serves, and what leaves it, leaves the store too.
func testBackorders(t *testing.T, s service.Store) {
	// A sku nobody stocks yet: the product is made by its first waiting line.
	line := func(order string, qty int, customer string) domain.OrderLine {
		return domain.OrderLine{OrderID: order, SKU: "LAMP", Qty: qty, Customer: customer}
	}
	for _, l := range []domain.OrderLine{line("o1", 2, "ann"), line("o2", 1, "bob"), line("o3", 3, "cid")} {
		if ref := reserve(t, s, l); ref != "" {
			t.Fatalf("%s allocated to %s with no stock", l.OrderID, ref)
		}
	}
	if skus := addVIP(t, s, "cid"); !slices.Equal(skus, []string{"LAMP"}) {
		t.Errorf("cid waits for %v, want [LAMP]", skus)
	}
	if skus := addVIP(t, s, "cid"); !slices.Equal(skus, []string{"LAMP"}) {
		t.Errorf("cid, again, waits for %v, want [LAMP]", skus)
	}
	if skus := addVIP(t, s, "dan"); len(skus) != 0 {
		t.Errorf("dan waits for %v, want nothing", skus)
	}
	p := load(t, s, get("LAMP"))
	want := []waitingEntry{{"o3", 3, "cid", true}, {"o1", 2, "ann", false}, {"o2", 1, "bob", false}}
	if diff := cmp.Diff(want, waitingOf(p)); diff != "" {
		t.Errorf("waiting list (-want +got):\n%s", diff)
	}
	if p.Version != 3 {
		t.Errorf("version %d, want 3: each line that joins changes the product", p.Version)
	}

	// Stock for cid's and ann's lines comes: they are served, in order,
	// and leave the list; bob's waits (strict: the first in line is
	// served first, and the stock left is too little for nobody here).
	addBatches(t, s, "LAMP", domain.Batch{Ref: "l1", Purchased: 5})
	p = load(t, s, byBatch("l1", ""))
	wantLines := []domain.OrderLine{{OrderID: "o3", SKU: "LAMP", Qty: 3, Customer: "cid", VIP: true}, {OrderID: "o1", SKU: "LAMP", Qty: 2, Customer: "ann"}}
	if diff := cmp.Diff(wantLines, p.Batches[0].Lines); diff != "" {
		t.Errorf("l1's lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]waitingEntry{{"o2", 1, "bob", false}}, waitingOf(p)); diff != "" {
		t.Errorf("waiting list after the batch came (-want +got):\n%s", diff)
	}

	// bob's line leaves the list (his order is cancelled).
	change(t, s, "l1", "o2", func(p *domain.Product) error {
		_, err := p.Deallocate(domain.OrderLine{OrderID: "o2", SKU: "LAMP", Qty: 1})
		return err
	})
	if w := load(t, s, get("LAMP")).Waiting; len(w) != 0 {
		t.Errorf("waiting list %v after the cancellation, want empty", w)
	}

	// The batch shrinks: ann's line, the latest, is pushed out, and waits
	// in her name, since no other batch can take it.
	change(t, s, "l1", "", func(p *domain.Product) error { return p.ChangeBatchQuantity("l1", 3) })
	p = load(t, s, get("LAMP"))
	if diff := cmp.Diff([]waitingEntry{{"o1", 2, "ann", false}}, waitingOf(p)); diff != "" {
		t.Errorf("waiting list after the shrink (-want +got):\n%s", diff)
	}
	// A count brings it back.
	change(t, s, "l1", "", func(p *domain.Product) error { return p.ChangeBatchQuantity("l1", 5) })
	p = load(t, s, byBatch("l1", ""))
	if len(p.Waiting) != 0 || len(p.Batches[0].Lines) != 2 || p.Batches[0].Allocated != 5 {
		t.Errorf("after the count: waiting %v, l1 lines %v (allocated %d), want none waiting and both lines", p.Waiting, p.Batches[0].Lines, p.Batches[0].Allocated)
	}
}
