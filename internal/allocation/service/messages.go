package service

import (
	"encoding/json"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Channels of the messages the allocation service exchanges, named as in
// the book where the book names them.
const (
	ChannelChangeBatchQuantity  = "change_batch_quantity" // in: a batch's new quantity
	ChannelAllocate             = "allocate"              // in: allocate an order line
	ChannelDeallocate           = "deallocate"            // in: free an order line's stock
	ChannelBatchCreated         = "batch_created"
	ChannelBatchQuantityChanged = "batch_quantity_changed"
	ChannelLineAllocated        = "line_allocated"
	ChannelLineDeallocated      = "line_deallocated"
	ChannelOutOfStock           = "out_of_stock"
)

// Inbound are the channels the allocation service consumes.
var Inbound = []string{ChannelChangeBatchQuantity, ChannelAllocate, ChannelDeallocate}

// Messages returns the registry of the allocation service's messages.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelChangeBatchQuantity, func(c domain.ChangeBatchQuantity) string { return c.Ref }, decodeChangeBatchQuantity)
	messaging.Register(r, ChannelAllocate, func(c domain.Allocate) string { return c.SKU }, decodeLine(func(l line) domain.Allocate { return domain.Allocate(l) }))
	messaging.Register(r, ChannelDeallocate, func(c domain.Deallocate) string { return c.SKU }, decodeLine(func(l line) domain.Deallocate { return domain.Deallocate(l) }))
	messaging.Register(r, ChannelBatchCreated, func(e domain.BatchCreated) string { return e.SKU }, nil)
	messaging.Register(r, ChannelBatchQuantityChanged, func(e domain.BatchQuantityChanged) string { return e.SKU }, nil)
	messaging.Register(r, ChannelLineAllocated, func(e domain.Allocated) string { return e.SKU }, nil)
	messaging.Register(r, ChannelLineDeallocated, func(e domain.Deallocated) string { return e.SKU }, nil)
	messaging.Register(r, ChannelOutOfStock, func(e domain.OutOfStock) string { return e.SKU }, nil)
	return r
}

// decodeChangeBatchQuantity reads the book's {"batchref": str, "qty": int}.
func decodeChangeBatchQuantity(b json.RawMessage) (domain.ChangeBatchQuantity, error) {
	var m struct {
		BatchRef string `json:"batchref"`
		Qty      int    `json:"qty"`
	}
	if err := decode.Object(b, &m, "batchref", "qty"); err != nil {
		return domain.ChangeBatchQuantity{}, err
	}
	return domain.ChangeBatchQuantity{Ref: m.BatchRef, Qty: m.Qty}, nil
}

// line is an order line as it travels: {"orderid": str, "sku": str, "qty": int}.
type line struct {
	OrderID string `json:"orderid"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

func decodeLine[C any](to func(line) C) func(json.RawMessage) (C, error) {
	return func(b json.RawMessage) (C, error) {
		var l line
		if err := decode.Object(b, &l, "orderid", "sku", "qty"); err != nil {
			var zero C
			return zero, err
		}
		return to(l), nil
	}
}
