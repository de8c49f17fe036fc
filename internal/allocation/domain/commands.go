package domain

import (
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/valid"
)

// Command is a request to change the system. The message bus hands each to
// exactly one handler, whose error reaches the sender.
type Command interface {
	// Validate reports what is wrong with the command, or nil.
	Validate() error
}

func invalid(format string, args ...any) error { return fail.Errorf(fail.Invalid, format, args...) }

// MaxRefLen bounds every identifier (order id, sku, batch ref).
const MaxRefLen = valid.MaxRefLen

// CreateBatch adds a batch of Qty units of SKU, arriving on ETA (zero: in
// the warehouse).
type CreateBatch struct {
	Ref string
	SKU string
	Qty int
	ETA time.Time
}

// Allocate allocates an order line.
type Allocate struct {
	OrderID string
	SKU     string
	Qty     int
}

// ChangeBatchQuantity sets a batch's purchased quantity (a stock count, or
// damage). Zero is allowed: the whole batch is lost.
type ChangeBatchQuantity struct {
	Ref string
	Qty int
}

// Deallocate frees the stock held by an order line.
type Deallocate struct {
	OrderID string
	SKU     string
	Qty     int
}

// Line returns the order line to allocate.
func (c Allocate) Line() OrderLine { return OrderLine{OrderID: c.OrderID, SKU: c.SKU, Qty: c.Qty} }

// Line returns the order line to deallocate.
func (c Deallocate) Line() OrderLine { return OrderLine{OrderID: c.OrderID, SKU: c.SKU, Qty: c.Qty} }

func (c CreateBatch) Validate() error {
	return validate(ref("ref", c.Ref), ref("sku", c.SKU), positive("qty", c.Qty))
}

func (c Allocate) Validate() error {
	return validate(ref("orderid", c.OrderID), ref("sku", c.SKU), positive("qty", c.Qty))
}

func (c ChangeBatchQuantity) Validate() error {
	var err error
	if c.Qty < 0 {
		err = invalid("qty must not be negative, got %d", c.Qty)
	}
	return validate(ref("batchref", c.Ref), err)
}

func (c Deallocate) Validate() error {
	return validate(ref("orderid", c.OrderID), ref("sku", c.SKU), positive("qty", c.Qty))
}

// ValidateRef reports what is wrong with an identifier (an order id, a
// sku, a batch ref) given as field, or nil.
func ValidateRef(field, v string) error { return ref(field, v) }

var (
	positive = valid.Positive
	validate = valid.First
	ref      = valid.Ref
)
