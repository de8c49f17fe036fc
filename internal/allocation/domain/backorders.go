package domain

import (
	"cmp"
	"slices"

	"github.com/stockflow/stockflow/internal/fail"
)

// Backorders: a shop line (one with a Customer) that no batch can take
// waits for stock on the product's waiting list, and is allocated when
// stock comes: a new batch, a quantity that rises, a line deallocated, a
// line taken off the list. The list is served VIP customers' lines first,
// then the oldest first. Lines of the book's API (no Customer) never wait:
// they are out of stock, as the book answers.

// Policy says how the waiting list is served when the stock that comes is
// too little for the first in line.
type Policy int

const (
	// Strict serves the first in line first: stock too little for it stays
	// for it, and a line that is not first in line waits, even if the
	// stock would fit it.
	Strict Policy = iota
	// Fill gives stock too little for the first in line to smaller lines
	// behind it.
	Fill
)

// Policies are the policies by name, as flags name them.
var Policies = map[string]Policy{"strict": Strict, "fill": Fill}

// ParsePolicy returns the policy named s.
func ParsePolicy(s string) (Policy, error) {
	if p, ok := Policies[s]; ok {
		return p, nil
	}
	return Strict, fail.Errorf(fail.Invalid, "backorder policy must be strict or fill, got %q", s)
}

func (p Policy) String() string {
	if p == Fill {
		return "fill"
	}
	return "strict"
}

// Backorder is a line on the waiting list.
type Backorder struct {
	OrderLine
	// Seq orders the list by age: a line that joined later has a higher
	// Seq. The repository numbers the lines it loads; lines that join in
	// this session are numbered after them.
	Seq int64 `json:"seq"`
}

// compareBackorders orders the waiting list: VIPs first, then by age.
func compareBackorders(a, b Backorder) int {
	if a.VIP != b.VIP {
		if a.VIP {
			return -1
		}
		return 1
	}
	return cmp.Compare(a.Seq, b.Seq)
}

// Rank orders a waiting list as it is served, for a repository that
// loads one.
func Rank(ws []Backorder) []Backorder {
	slices.SortStableFunc(ws, compareBackorders)
	return ws
}

// waiting returns the index of the waiting line of orderID, or -1.
func (p *Product) waiting(orderID string) int {
	return slices.IndexFunc(p.Waiting, func(w Backorder) bool { return w.OrderID == orderID })
}

// first reports whether line, were it to join the waiting list, would be
// first in line. A line of the book's API would join behind everyone.
func (p *Product) first(line OrderLine) bool {
	return len(p.Waiting) == 0 || line.Customer != "" && line.VIP && !p.Waiting[0].VIP
}

// wait puts the shop line on the waiting list, in its place, and says so
// (OutOfStock, with Waiting). It is a change: the list is the product's.
func (p *Product) wait(line OrderLine) {
	seq := int64(1)
	for _, w := range p.Waiting {
		seq = max(seq, w.Seq+1)
	}
	w := Backorder{OrderLine: line, Seq: seq}
	i, _ := slices.BinarySearchFunc(p.Waiting, w, compareBackorders)
	p.Waiting = slices.Insert(p.Waiting, i, w)
	p.raise(OutOfStock{SKU: line.SKU, OrderID: line.OrderID, Qty: line.Qty, Customer: line.Customer,
		Waiting: true, Version: p.next(), UnknownSKU: len(p.Batches) == 0})
}

// unwait takes the waiting line of orderID off the list (its order was
// cancelled, its cart expired) and says so.
func (p *Product) unwait(i int) {
	w := p.Waiting[i]
	p.Waiting = slices.Delete(p.Waiting, i, i+1)
	p.raise(BackorderCancelled{OrderID: w.OrderID, SKU: w.SKU, Qty: w.Qty, Version: p.next()})
}

// serve allocates waiting lines, in order, while stock allows: under
// Strict it stops at the first line no batch can take, under Fill it
// passes over it. It stops as soon as no batch has a unit left, so that
// stock for a few lines of a long list costs a few lines' work.
func (p *Product) serve() {
	if len(p.Waiting) == 0 {
		return
	}
	kept := make([]Backorder, 0, len(p.Waiting))
	for i, w := range p.Waiting {
		b := p.batchFor(w.OrderLine)
		if b == nil && (p.Policy == Strict || !p.anyAvailable()) {
			kept = append(kept, p.Waiting[i:]...)
			break
		}
		if b == nil {
			kept = append(kept, w)
			continue
		}
		p.allocateTo(b, w.OrderLine, true)
	}
	p.Waiting = kept
}

// anyAvailable reports whether some batch has a unit left.
func (p *Product) anyAvailable() bool {
	return slices.ContainsFunc(p.Batches, func(b *Batch) bool { return b.Available() > 0 })
}

// PromoteVIP records that customer became a VIP: their lines, loaded or
// waiting, rank with the VIPs', and the waiting list is served again (their
// line may be first in line now).
func (p *Product) PromoteVIP(customer string) {
	for _, b := range p.Batches {
		for i := range b.Lines {
			if b.Lines[i].Customer == customer {
				b.Lines[i].VIP = true
			}
		}
	}
	promoted := false
	for i := range p.Waiting {
		if p.Waiting[i].Customer == customer && !p.Waiting[i].VIP {
			p.Waiting[i].VIP, promoted = true, true
		}
	}
	if !promoted {
		return
	}
	slices.SortStableFunc(p.Waiting, compareBackorders)
	p.serve()
}

// WaitingFor returns the waiting line of orderID, if it waits.
func (p *Product) WaitingFor(orderID string) (Backorder, bool) {
	if i := p.waiting(orderID); i >= 0 {
		return p.Waiting[i], true
	}
	return Backorder{}, false
}
