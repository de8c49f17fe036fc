package domain

import (
	"slices"
	"strconv"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/valid"
)

// StockReported is a worker's report on a batch, as the warehouse
// announces it to the allocation service: what changed (Qty units damaged)
// or what was counted (Qty units there, with the goods dispatched from the
// batch before the count), never a total drawn from the warehouse's view
// of the batch, which may lag behind the allocation service's. Seq numbers
// the reports on the batch.
type StockReported struct {
	BatchRef   string `json:"batchref"`
	SKU        string `json:"sku"`
	Kind       string `json:"kind"` // ReportCount or ReportDamage
	Qty        int    `json:"qty"`
	Seq        int    `json:"seq"`
	Dispatched int    `json:"dispatched"`
	Note       string `json:"note,omitempty"`
}

// Announcement is a batch as the allocation service announced it
// (batch_created, batch_quantity_changed): its quantity, which includes
// the goods dispatched from it up to Dispatched and the warehouse's
// reports up to ReportSeq, at the product's Version.
type Announcement struct {
	Qty        int `json:"qty"`
	Dispatched int `json:"dispatched"`
	ReportSeq  int `json:"report_seq"`
	Version    int `json:"version"`
}

// Batch is a batch as the warehouse knows it. The allocation service
// keeps the batch's quantity (it orders every change: the book's
// change_batch_quantity from outside, and the warehouse's reports); the
// warehouse knows first what it dispatched and reported itself. So its
// view is the latest announcement, less the goods dispatched and the
// reports made since: see Qty.
type Batch struct {
	Ref string `json:"batchref"`
	SKU string `json:"sku"`
	// Qty is the units on the shelf, as the warehouse reckons them.
	Qty     int      `json:"qty"`
	Reports []Report `json:"reports"`
	// Dispatched is the total of the goods dispatched from the batch.
	Dispatched int `json:"dispatched"`
	// Announced is the newest announcement of the allocation service.
	Announced Announcement `json:"announced"`
	// Held are the placed orders waiting for goods of this batch that are
	// not on the shelf yet (see Shipment.Dispatch).
	Held []string `json:"held,omitempty"`
	// Arrives is the day a batch on its way (a shipment with an ETA) comes
	// in; zero for warehouse stock. Its goods are not on the shelf before.
	Arrives time.Time `json:"arrives,omitzero"`

	events  []any
	changed bool
}

// Report is a worker's report on a batch.
type Report struct {
	Seq    int       `json:"seq"`
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // "count" or "damage"
	Qty    int       `json:"qty"`  // units counted, or damaged
	Result int       `json:"result"`
	Note   string    `json:"note,omitempty"`
	// Dispatched is the batch's Dispatched when the report was made.
	Dispatched int `json:"dispatched"`
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

// Loaded completes a batch kept by an earlier version, which kept its
// quantity alone and numbered no report: it is taken as announced.
func (b *Batch) Loaded() {
	if b.Announced != (Announcement{}) || b.Dispatched != 0 {
		return
	}
	for _, r := range b.Reports {
		if r.Seq != 0 {
			return // this version's
		}
	}
	b.Announced.Qty = b.Qty
}

// Announce records an announcement of the allocation service, unless a
// newer one was recorded. One of an earlier version, which carried no
// version, is always recorded, as including everything the warehouse did
// so far (as those versions meant it). It reports whether the units on
// the shelf rose, so that orders held for them are tried again.
func (b *Batch) Announce(a Announcement) (rose bool) {
	if a.Version != 0 && a.Version <= b.Announced.Version {
		return false
	}
	if a.Version == 0 {
		a.Dispatched = b.Dispatched
		if n := len(b.Reports); n > 0 {
			a.ReportSeq = b.Reports[n-1].Seq
		}
		a.Version = b.Announced.Version
	}
	before := b.Qty
	b.Announced, b.changed = a, true
	b.reckon()
	return b.Qty > before
}

// reckon sets Qty: the latest announcement less the goods dispatched
// since it, then each report it does not include, in turn: damage takes
// units out, a count is the truth less the goods dispatched since it.
// Dispatches and damage commute (both take units out), so the order in
// which the allocation service applied them does not matter; never below
// zero, as the allocation service keeps it.
func (b *Batch) reckon() {
	qty := max(b.Announced.Qty-(b.Dispatched-b.Announced.Dispatched), 0)
	for _, r := range b.Reports {
		if r.Seq <= b.Announced.ReportSeq {
			continue
		}
		if r.Kind == ReportCount {
			qty = max(r.Qty-(b.Dispatched-r.Dispatched), 0)
		} else {
			qty = max(qty-r.Qty, 0)
		}
	}
	b.Qty = qty
}

// Count records a stock count of qty units.
func (b *Batch) Count(qty int, note string, at time.Time) error {
	if qty < 0 {
		return fail.Errorf(fail.Invalid, "qty must not be negative, got %d", qty)
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
		return fail.Errorf(fail.Conflict, "batch %s holds %s: %s cannot be damaged", b.Ref, units(b.Qty), units(qty))
	}
	return b.report(Report{At: at, Kind: ReportDamage, Qty: qty, Result: b.Qty - qty, Note: note})
}

func units(n int) string {
	if n == 1 {
		return "1 unit"
	}
	return strconv.Itoa(n) + " units"
}

func (b *Batch) report(r Report) error {
	if len(r.Note) > 1000 {
		return fail.Errorf(fail.Invalid, "note is longer than 1000 bytes")
	}
	r.Seq, r.Dispatched = 1, b.Dispatched
	if n := len(b.Reports); n > 0 {
		r.Seq = b.Reports[n-1].Seq + 1
	}
	b.Reports = append(b.Reports, r)
	b.changed = true
	b.reckon()
	b.events = append(b.events, StockReported{BatchRef: b.Ref, SKU: b.SKU, Kind: r.Kind, Qty: r.Qty, Seq: r.Seq, Dispatched: r.Dispatched, Note: r.Note})
	return nil
}

// Expect records that the batch is on its way and comes in on eta (a
// day, UTC): until then its goods are not on the shelf. When that is
// later than now, it raises BatchArrivalDue, a timer that tries the orders
// held for the batch's goods again on the day it comes in.
func (b *Batch) Expect(eta, now time.Time) {
	if eta.IsZero() || b.Arrives.Equal(eta) {
		return
	}
	b.Arrives, b.changed = eta, true
	if eta.After(now) {
		b.events = append(b.events, BatchArrivalDue{BatchRef: b.Ref, SKU: b.SKU, Arrives: eta})
	}
}

// OnShelf reports whether the batch's goods are in the warehouse at at.
func (b *Batch) OnShelf(at time.Time) bool { return b.Arrives.IsZero() || !at.Before(b.Arrives) }

// BatchArrivalDue is the warehouse's timer for a batch on its way: due on
// the day the batch comes in.
type BatchArrivalDue struct {
	BatchRef string    `json:"batchref"`
	SKU      string    `json:"sku"`
	Arrives  time.Time `json:"arrives"`
}

// Due implements messaging.Timer.
func (e BatchArrivalDue) Due() time.Time { return e.Arrives }

// ship takes qty units off the shelf: they left with an order.
func (b *Batch) ship(qty int) {
	b.Dispatched += qty
	b.changed = true
	b.reckon()
}

// hold records that the order waits for goods of the batch.
func (b *Batch) hold(orderID string) {
	if !slices.Contains(b.Held, orderID) {
		b.Held = append(b.Held, orderID)
		b.changed = true
	}
}

// TakeHeld returns the orders held by the batch and forgets them: the
// caller tries each again, and Shipment.Dispatch holds again those still
// short.
func (b *Batch) TakeHeld() []string {
	held := b.Held
	if len(held) > 0 {
		b.Held, b.changed = nil, true
	}
	return held
}
