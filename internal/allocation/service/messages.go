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
	ChannelBatchCreated         = "batch_created"
	ChannelBatchQuantityChanged = "batch_quantity_changed"
	ChannelLineAllocated        = "line_allocated"
	ChannelLineDeallocated      = "line_deallocated"
	ChannelOutOfStock           = "out_of_stock"
)

// Inbound are the channels the allocation service consumes.
var Inbound = []string{ChannelChangeBatchQuantity}

// Messages returns the registry of the allocation service's messages.
func Messages() *messaging.Registry {
	r := messaging.NewRegistry()
	messaging.Register(r, ChannelChangeBatchQuantity, func(c domain.ChangeBatchQuantity) string { return c.Ref }, decodeChangeBatchQuantity)
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
