package domain

// Event is something that happened to a Product. Events are values; the
// message bus dispatches them to any number of handlers.
type Event interface{ isEvent() }

// Why a line was deallocated.
const (
	// ReasonBatchShrank: the batch's quantity fell below what was allocated
	// from it; the line must be allocated again.
	ReasonBatchShrank = "batch_quantity_changed"
	// ReasonRequested: the line was deallocated on request (an order was
	// cancelled); its stock is free again.
	ReasonRequested = "requested"
	// ReasonDispatched: the line's goods left the warehouse, and its stock
	// with them.
	ReasonDispatched = "dispatched"
)

// BatchCreated: a batch was added to the product.
type BatchCreated struct {
	Ref string `json:"ref"`
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
	ETA Date   `json:"eta"`
}

// BatchQuantityChanged: a batch's purchased quantity was set to Qty.
type BatchQuantityChanged struct {
	Ref string `json:"batchref"`
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// Allocated: an order line was allocated to a batch.
type Allocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref"`
}

// Deallocated: an order line lost its batch, for Reason.
type Deallocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref"`
	Reason   string `json:"reason"`
}

// Line returns the order line that was deallocated.
func (e Deallocated) Line() OrderLine { return OrderLine{e.OrderID, e.SKU, e.Qty} }

// OutOfStock: no batch could take an order line of SKU.
type OutOfStock struct {
	SKU     string `json:"sku"`
	OrderID string `json:"orderid,omitempty"`
	Qty     int    `json:"qty,omitempty"`
}

func (BatchCreated) isEvent()         {}
func (BatchQuantityChanged) isEvent() {}
func (Allocated) isEvent()            {}
func (Deallocated) isEvent()          {}
func (OutOfStock) isEvent()           {}
