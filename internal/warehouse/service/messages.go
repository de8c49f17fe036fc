// Package service is the warehouse service layer: the handlers of the
// workers' reports and of the events it follows, and the messages it
// exchanges.
package service

import (
	"time"

	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
)

// Channels of the messages the warehouse exchanges.
const (
	ChannelGoodsDispatched = "goods_dispatched"
	ChannelStockReported   = "stock_reported" // counts and damage, to the allocation service
	// The warehouse's own timer: a batch on its way comes in today.
	ChannelBatchArrivalDue = "batch_arrival_due"

	// Followed: what the orders and allocation services announce.
	ChannelOrderPlaced          = "order_placed"
	ChannelOrderCancelled       = "order_cancelled"
	ChannelLineAllocated        = "line_allocated"
	ChannelLineDeallocated      = "line_deallocated"
	ChannelBatchCreated         = "batch_created"
	ChannelBatchQuantityChanged = "batch_quantity_changed"
)

// Inbound are the channels the warehouse consumes.
var Inbound = []string{
	ChannelOrderPlaced, ChannelOrderCancelled, ChannelLineAllocated, ChannelLineDeallocated,
	ChannelBatchCreated, ChannelBatchQuantityChanged, ChannelBatchArrivalDue,
}

// Item is a line of an order, as the orders service announces it.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// OrderPlaced is the orders service's order_placed, as the warehouse
// reads it.
type OrderPlaced struct {
	OrderID  string    `json:"orderid"`
	Customer string    `json:"customer"`
	Lines    []Item    `json:"lines"`
	PlacedAt time.Time `json:"placed_at"`
}

// OrderCancelled is the orders service's order_cancelled.
type OrderCancelled struct {
	OrderID string `json:"orderid"`
}

// LineAllocated is the allocation service's line_allocated.
type LineAllocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	BatchRef string `json:"batchref"`
	Version  int    `json:"version"`
}

// LineDeallocated is the allocation service's line_deallocated.
type LineDeallocated struct {
	OrderID  string `json:"orderid"`
	SKU      string `json:"sku"`
	BatchRef string `json:"batchref"`
	Version  int    `json:"version"`
}

// BatchCreated is the allocation service's batch_created. ETA, a day
// (YYYY-MM-DD), is set for a batch on its way; null for warehouse stock.
type BatchCreated struct {
	Ref     string `json:"ref"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	ETA     string `json:"eta"`
	Version int    `json:"version"`
}

// Arrives is the day the batch comes in; zero for warehouse stock.
func (e BatchCreated) Arrives() (time.Time, error) {
	if e.ETA == "" {
		return time.Time{}, nil
	}
	d, err := time.Parse(time.DateOnly, e.ETA)
	if err != nil {
		return time.Time{}, fail.Errorf(fail.Invalid, "eta must be a day (YYYY-MM-DD) or null, got %q", e.ETA)
	}
	return d, nil
}

func (e BatchCreated) Validate() error {
	_, err := e.Arrives()
	return err
}

// BatchQuantityChanged is the allocation service's batch_quantity_changed.
type BatchQuantityChanged struct {
	BatchRef   string `json:"batchref"`
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	Dispatched int    `json:"dispatched"`
	ReportSeq  int    `json:"report_seq"`
	Version    int    `json:"version"`
}

// Messages returns the registry of the messages the warehouse exchanges.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelGoodsDispatched, func(e domain.GoodsDispatched) string { return e.OrderID }, nil)
	messaging.Register(r, ChannelStockReported, func(e domain.StockReported) string { return e.SKU }, nil)
	messaging.Register(r, ChannelBatchArrivalDue, func(e domain.BatchArrivalDue) string { return e.SKU }, decode.Strict[domain.BatchArrivalDue]("batchref", "sku", "arrives"))
	messaging.Register(r, ChannelOrderPlaced, func(e OrderPlaced) string { return e.OrderID }, decode.Strict[OrderPlaced]("orderid", "customer", "lines"))
	messaging.Register(r, ChannelOrderCancelled, func(e OrderCancelled) string { return e.OrderID }, decode.Strict[OrderCancelled]("orderid"))
	messaging.Register(r, ChannelLineAllocated, func(e LineAllocated) string { return e.SKU }, decode.Strict[LineAllocated]("orderid", "sku", "batchref"))
	messaging.Register(r, ChannelLineDeallocated, func(e LineDeallocated) string { return e.SKU }, decode.Strict[LineDeallocated]("orderid", "sku", "batchref"))
	messaging.Register(r, ChannelBatchCreated, func(e BatchCreated) string { return e.SKU }, decode.Strict[BatchCreated]("ref", "sku", "qty"))
	messaging.Register(r, ChannelBatchQuantityChanged, func(e BatchQuantityChanged) string { return e.SKU }, decode.Strict[BatchQuantityChanged]("batchref", "sku", "qty"))
	return r
}
