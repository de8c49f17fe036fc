package domain_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

// Shared fixtures. ETAs are calendar days in UTC; the zero time means the
// batch is warehouse stock.
var (
	today    = time.Date(2024, time.March, 1, 0, 0, 0, 0, time.UTC)
	tomorrow = today.AddDate(0, 0, 1)
	later    = today.AddDate(0, 0, 10)
	noETA    time.Time // warehouse stock
)

func newBatch(ref, sku string, qty int, eta time.Time) *domain.Batch {
	return &domain.Batch{Ref: ref, SKU: sku, Purchased: qty, ETA: eta}
}

func line(orderID, sku string, qty int) domain.OrderLine {
	return domain.OrderLine{OrderID: orderID, SKU: sku, Qty: qty}
}

// batchRefs returns the refs of the product's batches in preference order.
func batchRefs(p *domain.Product) []string {
	refs := make([]string, 0, len(p.Batches))
	for _, b := range p.Batches {
		refs = append(refs, b.Ref)
	}
	return refs
}

// mustBatch returns the product's batch with ref or fails the test.
func mustBatch(t *testing.T, p *domain.Product, ref string) *domain.Batch {
	t.Helper()
	b := p.Batch(ref)
	if b == nil {
		t.Fatalf("product %s has no batch %q (batches %v)", p.SKU, ref, batchRefs(p))
	}
	return b
}

// mustAllocate allocates the line or fails the test, returning the batch ref.
func mustAllocate(t *testing.T, p *domain.Product, l domain.OrderLine) string {
	t.Helper()
	ref, err := p.Allocate(l)
	if err != nil {
		t.Fatalf("Allocate(%+v): unexpected error: %v", l, err)
	}
	return ref
}

// eventsSince returns the events the product raised after the first n.
func eventsSince(p *domain.Product, n int) []domain.Event {
	evs := p.Events()
	if len(evs) <= n {
		return nil
	}
	return evs[n:]
}

func assertEvents(t *testing.T, got, want []domain.Event) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if diff := cmp.Diff(want, got, ignoreVersions); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

func assertLines(t *testing.T, b *domain.Batch, want []domain.OrderLine) {
	t.Helper()
	if len(b.Lines) == 0 && len(want) == 0 {
		return
	}
	if diff := cmp.Diff(want, b.Lines); diff != "" {
		t.Errorf("batch %s lines mismatch (-want +got):\n%s", b.Ref, diff)
	}
}

// ignoreVersions leaves the events' versions out of a comparison: the
// tests of versions check them (versions_test.go).
var ignoreVersions = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Version" }, cmp.Ignore())

// reload returns the product as a repository would load it after the
// session that changed p committed: at the next version when p changed,
// with copies of its batches and of the lines it holds (as loaded by batch
// ref, every line), and of its waiting list, under the same policy.
func reload(p *domain.Product) *domain.Product {
	v := p.Version
	if p.Changed() {
		v++
	}
	batches := make([]*domain.Batch, len(p.Batches))
	for i, b := range p.Batches {
		c := *b
		c.Lines = slices.Clone(b.Lines)
		batches[i] = &c
	}
	r := domain.NewProduct(p.SKU, v, batches...)
	r.Waiting, r.Policy = slices.Clone(p.Waiting), p.Policy
	return r
}

// batchWith returns a loaded batch of qty units holding lines (all of
// them: Allocated is their total).
func batchWith(ref, sku string, qty int, eta time.Time, lines ...domain.OrderLine) *domain.Batch {
	b := newBatch(ref, sku, qty, eta)
	b.Lines = lines
	for _, l := range lines {
		b.Allocated += l.Qty
	}
	return b
}

// shopLine returns a line of the shop's customer: one that waits for stock
// when no batch can take it.
func shopLine(orderID, sku string, qty int, customer string) domain.OrderLine {
	return domain.OrderLine{OrderID: orderID, SKU: sku, Qty: qty, Customer: customer}
}

// vipLine returns a line of a VIP customer of the shop.
func vipLine(orderID, sku string, qty int, customer string) domain.OrderLine {
	l := shopLine(orderID, sku, qty, customer)
	l.VIP = true
	return l
}

// total returns the lines' total quantity.
func total(lines []domain.OrderLine) int {
	n := 0
	for _, l := range lines {
		n += l.Qty
	}
	return n
}

// assertWaiting compares the product's waiting list, in order, with want.
func assertWaiting(t *testing.T, p *domain.Product, want []domain.Backorder) {
	t.Helper()
	if len(p.Waiting) == 0 && len(want) == 0 {
		return
	}
	if diff := cmp.Diff(want, p.Waiting); diff != "" {
		t.Errorf("waiting list mismatch (-want +got):\n%s", diff)
	}
}
