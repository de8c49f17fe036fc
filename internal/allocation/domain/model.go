package domain

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors returned by the aggregate. They describe the caller's mistake or an
// outcome the caller must learn of; adapters map them to answers.
var (
	ErrOutOfStock       = errors.New("out of stock")
	ErrUnknownBatch     = errors.New("unknown batch")
	ErrDuplicateBatch   = errors.New("duplicate batch")
	ErrNotAllocated     = errors.New("order line is not allocated")
	ErrLineConflict     = errors.New("order line already allocated with another quantity")
	ErrConcurrentUpdate = errors.New("product was changed concurrently")
)

// OrderLine is a value: a quantity of one sku wanted by one order.
type OrderLine struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
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
	i := slices.Index(b.Lines, l)
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

	changed bool
	events  []Event
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

func (p *Product) raise(e Event) {
	p.events = append(p.events, e)
	if _, ok := e.(OutOfStock); !ok {
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
	p.raise(BatchCreated{Ref: ref, SKU: p.SKU, Qty: qty, ETA: Date{eta}})
	return nil
}

// Allocate allocates the line to the preferred batch that can take it and
// returns that batch's ref. A line that is already allocated keeps its
// batch, and nothing changes. When no batch can take it, Allocate raises
// OutOfStock and returns ErrOutOfStock.
//
// The product must have been loaded with the lines of line.OrderID.
func (p *Product) Allocate(line OrderLine) (string, error) {
	for _, b := range p.Batches {
		if l, ok := b.line(line.OrderID); ok {
			if l != line {
				return "", fmt.Errorf("%w: order %s has %d of %s in batch %s", ErrLineConflict, l.OrderID, l.Qty, l.SKU, b.Ref)
			}
			return b.Ref, nil
		}
	}
	for _, b := range p.Batches {
		if b.CanAllocate(line) {
			b.allocate(line)
			p.raise(Allocated{OrderID: line.OrderID, SKU: line.SKU, Qty: line.Qty, BatchRef: b.Ref})
			return b.Ref, nil
		}
	}
	p.raise(OutOfStock{SKU: line.SKU, OrderID: line.OrderID, Qty: line.Qty})
	return "", fmt.Errorf("%w for sku %s", ErrOutOfStock, line.SKU)
}

// ChangeBatchQuantity sets the batch's purchased quantity to qty. When the
// batch no longer holds what was allocated from it, the most recently
// allocated lines are deallocated until it does, each raising Deallocated
// with ReasonBatchShrank so that it is allocated again elsewhere.
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
	b.Purchased = qty
	p.raise(BatchQuantityChanged{Ref: ref, SKU: p.SKU, Qty: qty})
	for b.Available() < 0 && len(b.Lines) > 0 {
		l := b.Lines[len(b.Lines)-1]
		b.deallocate(l)
		p.raise(Deallocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: ref, Reason: ReasonBatchShrank})
	}
	return nil
}

// Deallocate frees the stock held by the line and returns the batch it
// held it in.
//
// The product must have been loaded with the lines of line.OrderID.
func (p *Product) Deallocate(line OrderLine) (string, error) {
	for _, b := range p.Batches {
		if b.deallocate(line) {
			p.raise(Deallocated{OrderID: line.OrderID, SKU: line.SKU, Qty: line.Qty, BatchRef: b.Ref, Reason: ReasonRequested})
			return b.Ref, nil
		}
	}
	return "", fmt.Errorf("%w: order %s, sku %s, qty %d", ErrNotAllocated, line.OrderID, line.SKU, line.Qty)
}

// Dispatch records that the goods of the order's line left the warehouse:
// the line leaves its batch, and the batch's quantity falls by the line's,
// so that batches hold only what is still there. It raises
// BatchQuantityChanged, then Deallocated with ReasonDispatched, and returns
// the batch's ref.
//
// The product must have been loaded with the lines of orderID.
func (p *Product) Dispatch(orderID string) (string, error) {
	for _, b := range p.Batches {
		if l, ok := b.line(orderID); ok {
			b.deallocate(l)
			b.Purchased -= l.Qty
			p.raise(BatchQuantityChanged{Ref: b.Ref, SKU: p.SKU, Qty: b.Purchased})
			p.raise(Deallocated{OrderID: l.OrderID, SKU: l.SKU, Qty: l.Qty, BatchRef: b.Ref, Reason: ReasonDispatched})
			return b.Ref, nil
		}
	}
	return "", fmt.Errorf("%w: order %s, sku %s", ErrNotAllocated, orderID, p.SKU)
}
