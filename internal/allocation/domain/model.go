package domain

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// Errors returned by the aggregate. They describe the caller's mistake or an
// outcome the caller must learn of; their kind (package fail) says how each
// adapter answers them. Their text is the HTTP API's message, as the book
// words it ("Out of stock for sku RED-CHAIR").
var (
	// ErrOutOfStock is an outcome: the OutOfStock event says so to whoever
	// sent the command.
	ErrOutOfStock     = fail.Outcome(fail.Conflict, "Out of stock")
	ErrUnknownBatch   = fail.New(fail.NotFound, "Unknown batch")
	ErrDuplicateBatch = fail.New(fail.Conflict, "Duplicate batch")
	ErrNotAllocated   = fail.New(fail.NotFound, "Order line is not allocated")
	ErrLineConflict   = fail.New(fail.Conflict, "Order line already allocated with another quantity")
)

// OrderLine is a value: a quantity of one sku wanted by one order.
type OrderLine struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	// Customer is the shop's customer who wants the line (an item in a
	// cart): such a line waits for stock when no batch can take it (see
	// Backorder). Empty for a line of the book's API, which never waits.
	Customer string `json:"customer,omitempty"`
	// VIP: the customer is a VIP, as this service last heard; their lines
	// are served first from the waiting list.
	VIP bool `json:"vip,omitempty"`
}

// same reports whether l and o are one line: one order's quantity of one
// sku, whoever's.
func (l OrderLine) same(o OrderLine) bool {
	return l.OrderID == o.OrderID && l.SKU == o.SKU && l.Qty == o.Qty
}

// Batch is stock of one sku: in the warehouse when ETA is zero, or on its
// way, arriving on ETA.
type Batch struct {
	Ref       string
	SKU       string
	Purchased int
	ETA       time.Time // zero: warehouse stock

	// Allocated is the total quantity of every line allocated from the
	// batch, loaded or not.
	Allocated int
	// Dispatched is the total of the goods that left the batch, as the
	// warehouse reported them (goods_dispatched): a stock count says how
	// much of it it saw leave, so that the dispatches it includes are not
	// taken out again when they arrive after it.
	Dispatched int
	// ReportSeq is the number of the last warehouse report (a count or
	// damage, numbered per batch by the warehouse) applied to the batch.
	ReportSeq int
	// Lines are the allocated lines the repository loaded, oldest first: all
	// of them when the batch was loaded by its ref, those of one order when
	// the product was loaded for an order, and none otherwise. Lines
	// allocated in this session are appended.
	Lines []OrderLine
}

// Available is the quantity that can still be allocated; it is negative
// when the batch shrank below what was allocated from it.
func (b *Batch) Available() int { return b.Purchased - b.Allocated }

// CanAllocate reports whether the line fits in the batch.
func (b *Batch) CanAllocate(l OrderLine) bool {
	return b.SKU == l.SKU && b.Available() >= l.Qty
}

// InWarehouse reports whether the batch is warehouse stock.
func (b *Batch) InWarehouse() bool { return b.ETA.IsZero() }

func (b *Batch) allocate(l OrderLine) {
	b.Lines = append(b.Lines, l)
	b.Allocated += l.Qty
}

func (b *Batch) deallocate(l OrderLine) bool {
	i := slices.IndexFunc(b.Lines, l.same)
	if i < 0 {
		return false
	}
	b.Lines = slices.Delete(b.Lines, i, i+1)
	b.Allocated -= l.Qty
	return true
}

func (b *Batch) line(orderID string) (OrderLine, bool) {
	for _, l := range b.Lines {
		if l.OrderID == orderID {
			return l, true
		}
	}
	return OrderLine{}, false
}

// compareBatches orders batches by preference: warehouse stock first, then
// the earliest ETA, ties broken by ref.
func compareBatches(a, b *Batch) int {
	switch {
	case a.InWarehouse() != b.InWarehouse():
		if a.InWarehouse() {
			return -1
		}
		return 1
	case !a.ETA.Equal(b.ETA):
		return a.ETA.Compare(b.ETA)
	}
	return cmp.Compare(a.Ref, b.Ref)
}

// Product is the aggregate: every batch of one sku, changed only through its
// methods, with a version for optimistic concurrency.
type Product struct {
	SKU     string
	Batches []*Batch
	// Version is the version the product was loaded at; every change raises
	// it by one (see Changed).
	Version int
	// Waiting is the waiting list (see Backorder), in the order it is
	// served; the repository loads all of it with the product.
	Waiting []Backorder
	// Policy says how the waiting list is served; the service sets it.
	Policy Policy

	changed bool
	events  []Event
	// pushed are the lines deallocated because their batch shrank, that
	// settle has yet to allocate again.
	pushed []OrderLine
}

// NewProduct returns a product for sku with the given batches, as loaded at
// version.
func NewProduct(sku string, version int, batches ...*Batch) *Product {
	p := &Product{SKU: sku, Version: version, Batches: batches}
	slices.SortStableFunc(p.Batches, compareBatches)
	return p
}

// Changed reports whether the product changed since it was loaded, in which
// case it must be stored at Version+1.
func (p *Product) Changed() bool { return p.changed }

// Events returns the events raised since the product was loaded, in order.
func (p *Product) Events() []Event { return p.events }

// next is the version a change made now commits: every event that records
// a change carries it, so that a consumer can tell the newer of two facts
// about one line or batch whatever order they reach it in.
func (p *Product) next() int { return p.Version + 1 }

// read is the version an outcome that changes nothing (OutOfStock) was
// read at: the product's, with the changes made before it in the same
// transaction.
func (p *Product) read() int {
	if p.changed {
		return p.next()
	}
	return p.Version
}

func (p *Product) raise(e Event) {
	p.events = append(p.events, e)
	if o, ok := e.(OutOfStock); !ok || o.Waiting {
		p.changed = true
	}
}

// Batch returns the product's batch with ref, or nil.
func (p *Product) Batch(ref string) *Batch {
	for _, b := range p.Batches {
		if b.Ref == ref {
			return b
		}
	}
	return nil
}

// AddBatch adds a batch of qty units, arriving on eta (zero: in the
// warehouse).
func (p *Product) AddBatch(ref string, qty int, eta time.Time) error {
	if p.Batch(ref) != nil {
		return fmt.Errorf("%w %s", ErrDuplicateBatch, ref)
	}
	b := &Batch{Ref: ref, SKU: p.SKU, Purchased: qty, ETA: eta}
	i, _ := slices.BinarySearchFunc(p.Batches, b, compareBatches)
	p.Batches = slices.Insert(p.Batches, i, b)
	p.raise(BatchCreated{Ref: ref, SKU: p.SKU, Qty: qty, ETA: Date{eta}, Version: p.next()})
	p.serve()
	return nil
}

// Allocate allocates the line to the preferred batch that can take it and
// returns that batch's ref. A line that is already allocated keeps its
// batch, and nothing changes. When no batch can take it, Allocate returns
// ErrOutOfStock, and OutOfStock says so: a shop line (one with a
// Customer) joins the waiting list (see Backorder), one of the book's API
// does not. Under Strict, a line that would not be first in line waits
// (or is out of stock) even if a batch could take it: that stock stays
// for the first in line.
//
// The product must have been loaded with the lines of line.OrderID.
func (p *Product) Allocate(line OrderLine) (string, error) {
	for _, b := range p.Batches {
		if l, ok := b.line(line.OrderID); ok {
			if l.Qty != line.Qty {
				return "", fmt.Errorf("%w: order %s has %d of %s in batch %s", ErrLineConflict, l.OrderID, l.Qty, l.SKU, b.Ref)
			}
			return b.Ref, nil
		}
	}
	outOfStock := fmt.Errorf("%w for sku %s", ErrOutOfStock, line.SKU)
	if w, ok := p.WaitingFor(line.OrderID); ok {
		if w.Qty != line.Qty {
			return "", fmt.Errorf("%w: order %s waits for %d of %s", ErrLineConflict, w.OrderID, w.Qty, w.SKU)
		}
		return "", outOfStock // it waits already
	}
	if p.Policy == Fill || p.first(line) {
		if b := p.batchFor(line); b != nil {
			p.allocateTo(b, line, false)
			return b.Ref, nil
		}
	}
	if line.Customer != "" {
		p.wait(line)
		return "", outOfStock
	}
	p.raise(OutOfStock{SKU: line.SKU, OrderID: line.OrderID, Qty: line.Qty, Version: p.read(), UnknownSKU: len(p.Batches) == 0})
	return "", outOfStock
}

// batchFor returns the preferred batch that can take the line, or nil.
func (p *Product) batchFor(line OrderLine) *Batch {
	for _, b := range p.Batches {
		if b.CanAllocate(line) {
			return b
		}
	}
	return nil
}

// allocateTo allocates the line to b; backorder: it was on the waiting
// list.
func (p *Product) allocateTo(b *Batch, line OrderLine, backorder bool) {
	b.allocate(line)
	p.raise(Allocated{OrderID: line.OrderID, SKU: line.SKU, Qty: line.Qty, BatchRef: b.Ref, Customer: line.Customer,
		Backorder: backorder, Version: p.next()})
}

// ChangeBatchQuantity sets the batch's quantity to qty: the book's
// change_batch_quantity, which says how many units the batch holds now.
// When the batch no longer holds what was allocated from it, the most
// recently allocated lines are deallocated until it does, each raising
// Deallocated with ReasonBatchShrank, and allocated again elsewhere in the
// same change (see settle); when it rises, waiting lines take the stock.
//
// The product must have been loaded with the lines of the batch.
func (p *Product) ChangeBatchQuantity(ref string, qty int) error {
	b := p.Batch(ref)
	if b == nil {
		return fmt.Errorf("%w %s", ErrUnknownBatch, ref)
	}
	if b.Purchased == qty {
		return nil
	}
	p.setQuantity(b, qty)
	p.shrink(b)
	p.settle()
	return nil
}

// Kinds of StockReport.
const (
	ReportCount  = "count"
	ReportDamage = "damage"
)

// StockReport is a warehouse worker's report on a batch, as the warehouse
// announces it: what changed, never a total drawn from the warehouse's
// view of the batch, which may lag behind.
type StockReport struct {
	// Seq numbers the warehouse's reports on the batch, from 1.
	Seq  int
	Kind string // ReportCount or ReportDamage
	// Qty is the units counted, or the units found damaged.
	Qty int
	// Dispatched, for a count, is the total of the goods the warehouse had
	// dispatched from the batch when it counted: the count includes them.
	Dispatched int
}

// ReportStock applies a warehouse report to the batch ref. Damage takes
// Qty units out of the batch. A count is the truth at the moment it was
// taken: the batch holds Qty units, less the goods dispatched since (those
// of this batch's Dispatched that the count did not include), and plus the
// ones it included that this service has not heard of yet (they are taken
// out when goods_dispatched arrives). A report older than one applied
// already (its Seq is not above ReportSeq) changes nothing: a later count
// includes it. As when the batch shrinks, lines it can no longer hold are
// deallocated, the latest first.
//
// The product must have been loaded with the lines of the batch.
func (p *Product) ReportStock(ref string, r StockReport) error {
	b := p.Batch(ref)
	if b == nil {
		return fmt.Errorf("%w %s", ErrUnknownBatch, ref)
	}
	if r.Seq <= b.ReportSeq {
		return nil
	}
	qty := b.Purchased - r.Qty
	if r.Kind == ReportCount {
		qty = r.Qty + r.Dispatched - b.Dispatched
	}
	b.ReportSeq = r.Seq
	p.setQuantity(b, qty)
	p.shrink(b)
	p.settle()
	return nil
}

// setQuantity sets b's quantity, never below zero, and announces it
// (BatchQuantityChanged, with what the warehouse needs to follow it: the
// dispatches and reports it includes).
func (p *Product) setQuantity(b *Batch, qty int) {
	b.Purchased = max(qty, 0)
	p.raise(BatchQuantityChanged{Ref: b.Ref, SKU: p.SKU, Qty: b.Purchased, Dispatched: b.Dispatched, ReportSeq: b.ReportSeq, Version: p.next()})
}

// shrink deallocates the lines b can no longer hold, the most recently
// allocated first, each raising Deallocated with ReasonBatchShrank; settle
// allocates them again.
func (p *Product) shrink(b *Batch) {
	for b.Available() < 0 && len(b.Lines) > 0 {
		l := b.Lines[len(b.Lines)-1]
		b.deallocate(l)
		p.pushed = append(p.pushed, l)
		p.raise(Deallocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: b.Ref, Reason: ReasonBatchShrank, Version: p.next()})
	}
}

// settle ends every change that moves stock. First the lines a shrinking
// batch pushed out are allocated again, oldest first, in the same change, to another
// batch: a line never waits between batches, so nothing can happen to it
// meanwhile (a dispatch, a release) that a later reallocation would undo.
// A shop line no batch can take joins the waiting list; a line of the
// book's API is out of stock. Then the waiting list takes the stock left.
func (p *Product) settle() {
	// Oldest first: shrink pushed the latest out first, and the line that
	// waited longest is placed first.
	for _, l := range slices.Backward(p.pushed) {
		if b := p.batchFor(l); b != nil {
			p.allocateTo(b, l, false)
		} else if l.Customer != "" {
			p.wait(l)
		} else {
			p.raise(OutOfStock{SKU: l.SKU, OrderID: l.OrderID, Qty: l.Qty, Version: p.read(), UnknownSKU: len(p.Batches) == 0})
		}
	}
	p.pushed = nil
	p.serve()
}

// Deallocate frees the stock held by the line and returns the batch it
// held it in; the waiting list takes the stock freed. A line that waits
// for stock is taken off the waiting list (BackorderCancelled), and the
// ref is empty.
//
// The product must have been loaded with the lines of line.OrderID.
func (p *Product) Deallocate(line OrderLine) (string, error) {
	for _, b := range p.Batches {
		if b.deallocate(line) {
			p.raise(Deallocated{OrderID: line.OrderID, SKU: line.SKU, Qty: line.Qty, BatchRef: b.Ref, Reason: ReasonRequested, Version: p.next()})
			p.settle()
			return b.Ref, nil
		}
	}
	if i := p.waiting(line.OrderID); i >= 0 && p.Waiting[i].same(line) {
		p.unwait(i)
		p.settle() // under Strict, the next in line may fit
		return "", nil
	}
	return "", fmt.Errorf("%w: order %s, sku %s, qty %d", ErrNotAllocated, line.OrderID, line.SKU, line.Qty)
}

// Dispatch records that qty units of the order's line left the warehouse
// from the batch ref. The warehouse knows what physically left, so the
// goods are taken out of that batch whatever became of the line here
// meanwhile: the line leaves the batch that holds it (ReasonDispatched),
// if any (it may have moved to another batch, or been released by a
// cancellation that reached the warehouse too late); ref's quantity falls
// by qty and its Dispatched rises by it; and if ref then holds less than
// is allocated from it, its latest lines are deallocated as when it
// shrinks. A dispatch that names no batch (goods_dispatched of earlier
// versions) takes the goods from the batch that holds the line. A line
// that waits here for stock (the warehouse shipped it before hearing that
// it was pushed out) leaves the waiting list: it is served.
//
// The product must have been loaded with the lines of orderID and those of
// the batch ref.
func (p *Product) Dispatch(orderID, ref string, qty int) error {
	var held *Batch
	var line OrderLine
	for _, b := range p.Batches {
		if l, ok := b.line(orderID); ok {
			held, line = b, l
			break
		}
	}
	from := p.Batch(ref)
	waiting := -1
	if held == nil {
		// The line may wait here for stock (pushed out by news the
		// warehouse had not had when it shipped): its goods left, so it
		// waits no more.
		waiting = p.waiting(orderID)
	}
	switch {
	case from == nil && ref != "":
		return fmt.Errorf("%w %s", ErrUnknownBatch, ref)
	case from == nil && held == nil && waiting >= 0:
		p.unwait(waiting)
		p.settle()
		return nil
	case from == nil && held == nil:
		return fmt.Errorf("%w: order %s, sku %s", ErrNotAllocated, orderID, p.SKU)
	case from == nil:
		from, qty = held, line.Qty
	}
	from.Dispatched += qty
	p.setQuantity(from, from.Purchased-qty)
	if held != nil {
		held.deallocate(line)
		p.raise(Deallocated{OrderID: line.OrderID, SKU: line.SKU, Qty: line.Qty, BatchRef: held.Ref, Reason: ReasonDispatched, Version: p.next()})
	}
	if waiting >= 0 {
		p.unwait(waiting)
	}
	p.shrink(from)
	p.settle()
	return nil
}
