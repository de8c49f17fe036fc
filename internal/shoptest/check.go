package shoptest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// What the checks read, as the services' APIs answer it.
type (
	allocBatch struct {
		Ref        string `json:"batchref"`
		SKU        string `json:"sku"`
		Qty        int    `json:"qty"`
		Allocated  int    `json:"allocated"`
		Dispatched int    `json:"dispatched"`
		Lines      []struct {
			OrderID string `json:"orderid"`
			Qty     int    `json:"qty"`
		} `json:"lines"`
	}
	warehouseBatch struct {
		Qty        int `json:"qty"`
		Dispatched int `json:"dispatched"`
		Announced  any `json:"announced"`
		Reports    []struct {
			At         time.Time `json:"at"`
			Seq        int       `json:"seq"`
			Kind       string    `json:"kind"`
			Qty        int       `json:"qty"`
			Dispatched int       `json:"dispatched"`
		} `json:"reports"`
	}
	shipment struct {
		Status string     `json:"status"`
		At     *time.Time `json:"dispatched_at"`
		Lines  []struct {
			SKU      string `json:"sku"`
			Qty      int    `json:"qty"`
			BatchRef string `json:"batchref"`
		} `json:"lines"`
	}
	order struct {
		Status   string     `json:"status"`
		PlacedAt *time.Time `json:"placed_at"`
		Lines    []struct {
			SKU      string `json:"sku"`
			Qty      int    `json:"qty"`
			State    string `json:"state"`
			BatchRef string `json:"batchref"`
		} `json:"lines"`
		History []struct {
			Event string `json:"event"`
		} `json:"history"`
	}
	customer struct {
		Orders []struct {
			OrderID string `json:"orderid"`
			Status  string `json:"status"`
		} `json:"orders"`
	}
	allocation struct {
		SKU      string `json:"sku"`
		BatchRef string `json:"batchref"`
	}
	product struct {
		Policy  string `json:"backorder_policy"`
		Batches []struct {
			Ref       string `json:"batchref"`
			Available int    `json:"available"`
		} `json:"batches"`
		Waiting []struct {
			OrderID string `json:"orderid"`
			Qty     int    `json:"qty"`
		} `json:"waiting"`
	}
)

// held is where the allocation service holds a line: order id and sku.
type held struct{ order, sku string }

// Check reads every batch and order the workload made and returns what
// does not hold (nothing when the services agree).
func Check(ctx context.Context, s Shop, h *History) ([]string, error) {
	h.mu.Lock()
	batches := make([]Batch, 0, len(h.Batches))
	for _, b := range h.Batches {
		batches = append(batches, b)
	}
	orders := make([]*Order, 0, len(h.Orders))
	for _, o := range h.Orders {
		orders = append(orders, o)
	}
	direct := make(map[string]string, len(h.Direct))
	for id, sku := range h.Direct {
		direct[id] = sku
	}
	h.mu.Unlock()
	slices.SortFunc(batches, func(a, b Batch) int { return strings.Compare(a.Ref, b.Ref) })
	slices.SortFunc(orders, func(a, b *Order) int { return strings.Compare(a.ID, b.ID) })

	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// The goods that left each batch, as the warehouse's shipments say.
	shipped := map[string]int{}
	shipments := map[string]shipment{}
	for _, o := range orders {
		var sh shipment
		found, err := get(ctx, s, "warehouse", "/warehouse/shipments/"+o.ID, &sh)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		shipments[o.ID] = sh
		if sh.Status == "dispatched" {
			for _, l := range sh.Lines {
				shipped[l.BatchRef] += l.Qty
			}
		}
	}

	// Batches: the books balance, and no batch is oversold.
	holds := map[held]string{} // -> batch ref
	for _, b := range batches {
		var a allocBatch
		var w warehouseBatch
		if _, err := get(ctx, s, "allocation", "/batches/"+b.Ref, &a); err != nil {
			return nil, err
		}
		if _, err := get(ctx, s, "warehouse", "/warehouse/batches/"+b.Ref, &w); err != nil {
			return nil, err
		}
		// The truth: the purchase, then the warehouse's reports in turn,
		// each with the goods that had left before it, then the goods that
		// left since the last.
		want, gone := b.Qty, 0
		for _, r := range w.Reports {
			want -= r.Dispatched - gone
			gone = r.Dispatched
			if r.Kind == "count" {
				want = r.Qty
			} else {
				want -= r.Qty
			}
			if want < 0 {
				fail("batch %s: more left or was damaged than a count found: %d units after report %d", b.Ref, want, r.Seq)
			}
		}
		want -= shipped[b.Ref] - gone
		if want < 0 {
			var sl []string
			for id, sh := range shipments {
				for _, l := range sh.Lines {
					if l.BatchRef == b.Ref && sh.Status == "dispatched" {
						sl = append(sl, fmt.Sprintf("%s %d at %s", id, l.Qty, sh.At.Format("15:04:05.000000")))
					}
				}
			}
			fail("batch %s: %d units dispatched since its last count, more than it held (purchased %d, reports %+v, announced %+v, shipments %v)", b.Ref, shipped[b.Ref]-gone, b.Qty, w.Reports, w.Announced, sl)
			want = 0
		}
		if a.Qty != want || w.Qty != want {
			fail("batch %s: the books do not balance: allocation says %d units, the warehouse %d, its reports and shipments %d", b.Ref, a.Qty, w.Qty, want)
		}
		if a.Dispatched != shipped[b.Ref] || w.Dispatched != shipped[b.Ref] {
			fail("batch %s: %d units shipped from it, allocation counts %d, the warehouse %d", b.Ref, shipped[b.Ref], a.Dispatched, w.Dispatched)
		}
		sum := 0
		for _, l := range a.Lines {
			sum += l.Qty
			k := held{l.OrderID, b.SKU}
			if other, dup := holds[k]; dup {
				fail("order %s: its line of %s is held by %s and %s", l.OrderID, b.SKU, other, b.Ref)
			}
			holds[k] = b.Ref
		}
		if sum != a.Allocated {
			fail("batch %s: allocated %d, its lines hold %d", b.Ref, a.Allocated, sum)
		}
		if a.Allocated > a.Qty {
			fail("batch %s oversold: %d units allocated, %d held", b.Ref, a.Allocated, a.Qty)
		}
	}

	// Orders: every service's view agrees with where the lines are held.
	waits := map[held]bool{} // lines waiting for stock, as their orders say
	for _, o := range orders {
		var ord order
		if _, err := get(ctx, s, "orders", "/orders/"+o.ID, &ord); err != nil {
			return nil, err
		}
		hist := func() string {
			var evs []string
			for _, e := range ord.History {
				evs = append(evs, e.Event)
			}
			return strings.Join(evs, ",")
		}
		if ord.Status == "pending" {
			fail("order %s stuck pending (history %s)", o.ID, hist())
		}
		sh, shipped := shipments[o.ID]
		dispatched := ord.Status == "dispatched"
		if dispatched != (shipped && sh.Status == "dispatched") {
			fail("order %s: status %s, shipment %s", o.ID, ord.Status, sh.Status)
		}
		var view []allocation
		if _, err := get(ctx, s, "allocation", "/allocations/"+o.ID, &view); err != nil {
			return nil, err
		}
		inView := map[string]string{}
		for _, v := range view {
			inView[v.SKU] = v.BatchRef
		}
		allReserved := len(ord.Lines) > 0
		atSea := false // some line's goods are on a ship: the warehouse waits for them
		for _, l := range ord.Lines {
			where := holds[held{o.ID, l.SKU}]
			for _, b := range batches {
				if b.Ref == where && b.atSea(time.Now()) {
					atSea = true
				}
			}
			switch {
			case dispatched:
				if l.State != "dispatched" {
					fail("order %s dispatched, line %s %s", o.ID, l.SKU, l.State)
				}
				if where != "" {
					fail("order %s dispatched, its line %s still held by %s", o.ID, l.SKU, where)
				}
			case ord.Status == "cancelled" || ord.Status == "expired":
				if where != "" {
					fail("order %s %s, its line %s still held by %s (history %s)", o.ID, ord.Status, l.SKU, where, hist())
				}
			case l.State == "reserved":
				if where != l.BatchRef {
					fail("order %s: line %s reserved in %q, held by %q (history %s)", o.ID, l.SKU, l.BatchRef, where, hist())
				}
			default:
				allReserved = false
				if l.State == "waiting_for_stock" {
					waits[held{o.ID, l.SKU}] = true
				}
				if where != "" {
					fail("order %s: line %s %s, but held by %s (history %s)", o.ID, l.SKU, l.State, where, hist())
				}
			}
			if inView[l.SKU] != where {
				fail("order %s: the read model shows %s in %q, held by %q", o.ID, l.SKU, inView[l.SKU], where)
			}
			delete(holds, held{o.ID, l.SKU})
		}
		if ord.PlacedAt != nil && ord.Status != "cancelled" && !dispatched && allReserved && !atSea {
			fail("order %s placed and every line reserved, but not dispatched (status %s, shipment %s)", o.ID, ord.Status, sh.Status)
		}
		if ord.PlacedAt != nil {
			var c customer
			if _, err := get(ctx, s, "crm", "/customers/"+o.Customer, &c); err != nil {
				return nil, err
			}
			status := "(none)"
			for _, co := range c.Orders {
				if co.OrderID == o.ID {
					status = co.Status
				}
			}
			if status != ord.Status {
				fail("order %s: the CRM says %s, orders %s", o.ID, status, ord.Status)
			}
		}
	}
	// Waiting lists: a line waits on its product's list when its order says
	// it waits, and only then; and no list is left that the stock there is
	// could serve (under strict the first in line, under fill any line).
	skus := map[string]bool{}
	for _, b := range batches {
		skus[b.SKU] = true
	}
	for _, o := range orders {
		for sku := range o.Items {
			skus[sku] = true
		}
	}
	for _, sku := range slices.Sorted(maps.Keys(skus)) {
		var p product
		found, err := get(ctx, s, "allocation", "/products/"+sku, &p)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		for i, w := range p.Waiting {
			k := held{w.OrderID, sku}
			if !waits[k] {
				fail("product %s: order %s waits on its list, but the order says its line does not wait", sku, w.OrderID)
			}
			delete(waits, k)
			if i > 0 && p.Policy != "fill" {
				continue
			}
			for _, b := range p.Batches {
				if b.Available >= w.Qty {
					fail("product %s: order %s waits for %d, but batch %s has %d available (%s)", sku, w.OrderID, w.Qty, b.Ref, b.Available, p.Policy)
				}
			}
		}
	}
	for k := range waits {
		fail("order %s: its line of %s waits for stock, but is on no waiting list", k.order, k.sku)
	}

	// Whatever else is held is a direct line, shown in the read model.
	for k, ref := range holds {
		if _, ok := direct[k.order]; !ok {
			fail("batch %s holds a line of %s for %s, which no order has", ref, k.sku, k.order)
			continue
		}
		var view []allocation
		if _, err := get(ctx, s, "allocation", "/allocations/"+k.order, &view); err != nil {
			return nil, err
		}
		if len(view) != 1 || view[0].BatchRef != ref {
			fail("direct line %s: held by %s, the read model shows %+v", k.order, ref, view)
		}
	}
	slices.Sort(problems)
	return problems, nil
}

// Agree waits for the shop to drain: it checks every interval until the
// checks pass, or returns the problems of the last check once timeout
// has run out.
func Agree(ctx context.Context, s Shop, h *History, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		problems, err := Check(ctx, s, h)
		if err != nil || len(problems) == 0 || time.Now().After(deadline) {
			return problems, err
		}
		select {
		case <-ctx.Done():
			return problems, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
