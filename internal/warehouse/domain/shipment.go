// Package domain is the warehouse model: shipments, which leave once their
// order is placed and every line allocated, and batches as the warehouse
// counts them. Pure Go: no I/O.
package domain

import "time"

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
	Allocated map[string]string `json:"allocated"`
	// Versions maps each sku of the order to the newest news of its line
	// applied (line_allocated, line_deallocated: see newer), so that older
	// news arriving later is ignored.
	Versions     map[string]int `json:"versions,omitempty"`
	Placed       bool           `json:"placed"`
	Cancelled    bool           `json:"cancelled,omitempty"`
	DispatchedAt *time.Time     `json:"dispatched_at,omitempty"`

	events  []any
	changed bool
}

// Shipment statuses, as the warehouse's index and API name them.
const (
	ShipmentOpen       = "open"       // not placed yet: a cart
	ShipmentWaiting    = "waiting"    // placed, some line not allocated, or its goods not on the shelf
	ShipmentDispatched = "dispatched" // the goods left
	ShipmentCancelled  = "cancelled"
)

// NewShipment returns the shipment of an order the warehouse hears of for
// the first time.
func NewShipment(orderID string) *Shipment {
	return &Shipment{OrderID: orderID, Lines: []ShipLine{}, Allocated: map[string]string{}, Versions: map[string]int{}}
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

// Place records the placed order's lines. It is then ready to leave once
// every line is allocated (Ready).
func (s *Shipment) Place(customer string, lines []ShipLine) {
	if s.Placed {
		return
	}
	s.Placed, s.Customer, s.Lines, s.changed = true, customer, lines, true
}

// newer reports whether news of the line of sku at version is newer than
// what the shipment applied, and records it as applied if so: within one
// version, a line may be deallocated then allocated again (its batch
// shrank), so allocated is the newer. Version 0 (news of earlier
// versions, which carried none) is always applied.
func (s *Shipment) newer(sku string, version int, allocated bool) bool {
	if version == 0 {
		return true
	}
	n := 2*version + 1
	if allocated {
		n++
	}
	if s.Versions == nil {
		s.Versions = map[string]int{}
	}
	if n <= s.Versions[sku] {
		return false
	}
	s.Versions[sku], s.changed = n, true
	return true
}

// LineAllocated records the batch of the line of sku, as allocated at
// version.
func (s *Shipment) LineAllocated(sku, batchRef string, version int) {
	if s.DispatchedAt != nil || !s.newer(sku, version, true) || s.Allocated[sku] == batchRef {
		return
	}
	s.Allocated[sku], s.changed = batchRef, true
}

// LineDeallocated records that the line of sku left batchRef at version:
// newer news than any applied says the line is in no batch now.
func (s *Shipment) LineDeallocated(sku, batchRef string, version int) {
	if s.DispatchedAt != nil {
		return
	}
	if version == 0 && s.Allocated[sku] != batchRef {
		return // news older than the line's allocation, of an earlier version
	}
	if !s.newer(sku, version, false) {
		return
	}
	if _, ok := s.Allocated[sku]; ok {
		delete(s.Allocated, sku)
		s.changed = true
	}
}

// Cancel records the order's cancellation: it will not be dispatched.
func (s *Shipment) Cancel() {
	if s.Cancelled || s.DispatchedAt != nil {
		return
	}
	s.Cancelled, s.changed = true, true
}

// Ready returns the lines to ship, each with the batch its goods come
// from, when the order is placed, not cancelled nor dispatched, and every
// line allocated; else nil.
func (s *Shipment) Ready() []ShipLine {
	if !s.Placed || s.Cancelled || s.DispatchedAt != nil || len(s.Lines) == 0 {
		return nil
	}
	lines := make([]ShipLine, len(s.Lines))
	for i, l := range s.Lines {
		ref := s.Allocated[l.SKU]
		if ref == "" {
			return nil
		}
		lines[i] = ShipLine{SKU: l.SKU, Qty: l.Qty, BatchRef: ref}
	}
	return lines
}

// Dispatch ships a ready order from batches (by ref, each line's batch of
// Ready): the goods leave only if every batch holds its line's goods on
// the shelf, as the warehouse reckons them (the allocation service may
// have promised them on news the warehouse has not had yet, or moved the
// line away on news the warehouse has not had yet: it waits for that
// news). It then raises GoodsDispatched, each batch ships its line, and
// Dispatch returns nil; otherwise nothing leaves, each batch short of goods
// holds the order (Batch.Held) so that it is tried again when the batch
// gains stock, and Dispatch returns those batches.
func (s *Shipment) Dispatch(batches map[string]*Batch, at time.Time) (short []*Batch) {
	lines := s.Ready()
	if lines == nil {
		return nil
	}
	for _, l := range lines {
		if b := batches[l.BatchRef]; b.Qty < l.Qty || !b.OnShelf(at) {
			b.hold(s.OrderID)
			short = append(short, b)
		}
	}
	if len(short) > 0 {
		return short
	}
	for _, l := range lines {
		batches[l.BatchRef].ship(l.Qty)
	}
	s.Lines = lines
	s.DispatchedAt = &at
	s.changed = true
	s.events = append(s.events, GoodsDispatched{OrderID: s.OrderID, Customer: s.Customer, Lines: lines, DispatchedAt: at})
	return nil
}

// GoodsDispatched: the goods of an order left the warehouse, each line
// from the batch it names.
type GoodsDispatched struct {
	OrderID      string     `json:"orderid"`
	Customer     string     `json:"customer"`
	Lines        []ShipLine `json:"lines"`
	DispatchedAt time.Time  `json:"dispatched_at"`
}
