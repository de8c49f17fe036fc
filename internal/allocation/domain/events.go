package domain

// Event is something that happened to a Product. Events are values; the
// message bus dispatches them to any number of handlers.
//
// Every event carries Version: the product's version the change it records
// committed (OutOfStock, which changes nothing: the version it was read
// at). Facts about one line or one batch travel on different channels and
// may reach a consumer in any order; the newer is the one with the higher
// version. One change may deallocate a line and allocate it again (a
// batch shrank), or find it out of stock: at equal versions, Deallocated
// comes before Allocated, and both before OutOfStock (read after the
// change).
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

	Version int `json:"version"`
}

// BatchQuantityChanged: a batch's quantity was set to Qty, by a count,
// damage, a dispatch or the book's change_batch_quantity. Dispatched and
// ReportSeq say what it includes: the goods dispatched from the batch, and
// the warehouse's reports on it, up to that number.
type BatchQuantityChanged struct {
	Ref        string `json:"batchref"`
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	Dispatched int    `json:"dispatched"`
	ReportSeq  int    `json:"report_seq"`
	Version    int    `json:"version"`
}

// Allocated: an order line was allocated to a batch.
type Allocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref"`
	// Customer is the shop's customer of the line; empty for a line of the
	// book's API.
	Customer string `json:"customer,omitempty"`
	// Backorder: the line waited for stock, and the waiting list served it.
	Backorder bool `json:"backorder,omitempty"`
	Version   int  `json:"version"`
}

// Deallocated: an order line lost its batch, for Reason.
type Deallocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	BatchRef string `json:"batchref"`
	Reason   string `json:"reason"`
	Version  int    `json:"version"`
}

// Line returns the order line that was deallocated.
func (e Deallocated) Line() OrderLine { return OrderLine{OrderID: e.OrderID, SKU: e.SKU, Qty: e.Qty} }

// OutOfStock: no batch could take an order line of SKU.
type OutOfStock struct {
	SKU     string `json:"sku"`
	OrderID string `json:"orderid,omitempty"`
	Qty     int    `json:"qty,omitempty"`
	Version int    `json:"version"`
	// UnknownSKU: no batch of the sku exists at all; nobody stocks it (yet).
	UnknownSKU bool `json:"unknown_sku,omitempty"`
	// Waiting: the line, Customer's, joined the waiting list: it is
	// allocated when stock comes (a change of the product, at the version
	// it committed).
	Waiting  bool   `json:"waiting,omitempty"`
	Customer string `json:"customer,omitempty"`
}

// BackorderCancelled: a waiting line left the waiting list without stock
// (its order was cancelled, its cart expired).
type BackorderCancelled struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	Version int    `json:"version"`
}

func (BatchCreated) isEvent()         {}
func (BatchQuantityChanged) isEvent() {}
func (Allocated) isEvent()            {}
func (Deallocated) isEvent()          {}
func (OutOfStock) isEvent()           {}
func (BackorderCancelled) isEvent()   {}
