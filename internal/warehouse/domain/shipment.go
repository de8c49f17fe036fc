// Package domain is the warehouse model: shipments, which leave once their
// order is placed and every line allocated, and batches as the warehouse
// counts them. Pure Go: no I/O.
package domain

import (
	"time"

	"github.com/stockflow/stockflow/internal/valid"
)

// ShipLine is a line of a shipment, and the batch its goods come from.
type ShipLine struct {
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref,omitempty"`
}

// Shipment is an order as the warehouse sees it: what it holds, where
// each line is allocated, and whether it left.
type Shipment struct {
	OrderID  string `json:"orderid"`
	Customer string `json:"customer,omitempty"`
	// Lines are the order's lines once it is placed.
	Lines []ShipLine `json:"lines"`
	// Allocated maps each allocated sku of the order to its batch; the
	// allocation service may announce it before the order is placed.
	Allocated    map[string]string `json:"allocated"`
	Placed       bool              `json:"placed"`
	Cancelled    bool              `json:"cancelled,omitempty"`
	DispatchedAt *time.Time        `json:"dispatched_at,omitempty"`

	events  []any
	changed bool
}

// Shipment statuses, as the warehouse's index and API name them.
const (
	ShipmentOpen       = "open"       // not placed yet: a cart
	ShipmentWaiting    = "waiting"    // placed, some line not allocated
	ShipmentDispatched = "dispatched" // the goods left
	ShipmentCancelled  = "cancelled"
)

// NewShipment returns the shipment of an order the warehouse hears of for
// the first time.
func NewShipment(orderID string) *Shipment {
	return &Shipment{OrderID: orderID, Lines: []ShipLine{}, Allocated: map[string]string{}}
}

// Events returns the events raised since the shipment was loaded.
func (s *Shipment) Events() []any { return s.events }

// Changed reports whether the shipment changed since it was loaded.
func (s *Shipment) Changed() bool { return s.changed }

// Status is the shipment's status.
func (s *Shipment) Status() string {
	switch {
	case s.DispatchedAt != nil:
		return ShipmentDispatched
	case s.Cancelled:
		return ShipmentCancelled
	case s.Placed:
		return ShipmentWaiting
	}
	return ShipmentOpen
}

// Place records the placed order's lines, and dispatches it if every line
// is allocated.
func (s *Shipment) Place(customer string, lines []ShipLine, at time.Time) {
	if s.Placed {
		return
	}
	s.Placed, s.Customer, s.Lines, s.changed = true, customer, lines, true
	s.dispatchIfReady(at)
}

// LineAllocated records the batch of the line of sku.
func (s *Shipment) LineAllocated(sku, batchRef string, at time.Time) {
	if s.DispatchedAt != nil || s.Allocated[sku] == batchRef {
		return
	}
	s.Allocated[sku], s.changed = batchRef, true
	s.dispatchIfReady(at)
}

// LineDeallocated records that the line of sku left batchRef.
func (s *Shipment) LineDeallocated(sku, batchRef string) {
	if s.DispatchedAt != nil || s.Allocated[sku] != batchRef {
		return // gone already, or news older than the line's allocation
	}
	delete(s.Allocated, sku)
	s.changed = true
}

// Cancel records the order's cancellation: it will not be dispatched.
func (s *Shipment) Cancel() {
	if s.Cancelled || s.DispatchedAt != nil {
		return
	}
	s.Cancelled, s.changed = true, true
}

// dispatchIfReady dispatches a placed order once every line is allocated,
// raising GoodsDispatched.
func (s *Shipment) dispatchIfReady(at time.Time) {
	if !s.Placed || s.Cancelled || s.DispatchedAt != nil || len(s.Lines) == 0 {
		return
	}
	for _, l := range s.Lines {
		if s.Allocated[l.SKU] == "" {
			return
		}
	}
	lines := make([]ShipLine, len(s.Lines))
	for i, l := range s.Lines {
		lines[i] = ShipLine{SKU: l.SKU, Qty: l.Qty, BatchRef: s.Allocated[l.SKU]}
	}
	s.Lines = lines
	s.DispatchedAt = &at
	s.changed = true
	s.events = append(s.events, GoodsDispatched{OrderID: s.OrderID, Customer: s.Customer, Lines: lines, DispatchedAt: at})
}

// GoodsDispatched: the goods of an order left the warehouse.
type GoodsDispatched struct {
	OrderID      string     `json:"orderid"`
	Customer     string     `json:"customer"`
	Lines        []ShipLine `json:"lines"`
	DispatchedAt time.Time  `json:"dispatched_at"`
}

// ChangeBatchQuantity is the book's change_batch_quantity message: a
// batch's quantity, as counted in the warehouse.
type ChangeBatchQuantity struct {
	BatchRef string `json:"batchref"`
	Qty      int    `json:"qty"`
}

// Batch is a batch as the warehouse knows it: its quantity, following the
// allocation service's announcements and the workers' reports.
type Batch struct {
	Ref     string   `json:"batchref"`
	SKU     string   `json:"sku"`
	Qty     int      `json:"qty"`
	Reports []Report `json:"reports"`

	events  []any
	changed bool
}

// Report is a worker's report on a batch.
type Report struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // "count" or "damage"
	Qty    int       `json:"qty"`  // units counted, or damaged
	Result int       `json:"result"`
	Note   string    `json:"note,omitempty"`
}

// Report kinds.
const (
	ReportCount  = "count"
	ReportDamage = "damage"
)

// NewBatch returns a batch the warehouse hears of.
func NewBatch(ref, sku string) *Batch { return &Batch{Ref: ref, SKU: sku, Reports: []Report{}} }

// Events returns the events raised since the batch was loaded.
func (b *Batch) Events() []any { return b.events }

// Changed reports whether the batch changed since it was loaded.
func (b *Batch) Changed() bool { return b.changed }

// Announced records the quantity the allocation service announced.
func (b *Batch) Announced(qty int) {
	if b.Qty != qty {
		b.Qty, b.changed = qty, true
	}
}

// Count records a stock count of qty units, announced as the batch's
// quantity.
func (b *Batch) Count(qty int, note string, at time.Time) error {
	if qty < 0 {
		return valid.Invalid("qty must not be negative, got %d", qty)
	}
	return b.report(Report{At: at, Kind: ReportCount, Qty: qty, Result: qty, Note: note})
}

// Damage records qty units found damaged: the batch's quantity falls by
// qty.
func (b *Batch) Damage(qty int, note string, at time.Time) error {
	if err := valid.Positive("qty", qty); err != nil {
		return err
	}
	if qty > b.Qty {
		return valid.Conflict("batch %s holds %d units: %d cannot be damaged", b.Ref, b.Qty, qty)
	}
	return b.report(Report{At: at, Kind: ReportDamage, Qty: qty, Result: b.Qty - qty, Note: note})
}

func (b *Batch) report(r Report) error {
	if len(r.Note) > 1000 {
		return valid.Invalid("note is longer than 1000 bytes")
	}
	b.Qty = r.Result
	b.Reports = append(b.Reports, r)
	b.changed = true
	b.events = append(b.events, ChangeBatchQuantity{BatchRef: b.Ref, Qty: r.Result})
	return nil
}
