package service

import (
	"log/slog"

	"github.com/stockflow/stockflow/internal/messaging"
)

// NewBus wires the allocation handlers to a message bus (the book's
// bootstrap): one handler per command, the event handlers that keep the
// read model, and those of the shop's events. Lines a shrinking batch can
// no longer hold are allocated again in the change itself; the
// reallocating handler is left for the events of earlier versions.
func NewBus(h *Handlers, log *slog.Logger, dispatched messaging.DispatchLog) *messaging.Bus {
	b := messaging.NewBus(log, dispatched)
	messaging.HandleCommand(b, h.CreateBatch)
	messaging.HandleCommand(b, h.Allocate)
	messaging.HandleCommand(b, h.ChangeBatchQuantity)
	messaging.HandleCommand(b, h.Deallocate)
	// The read model's changes apply only while true (see ReadModel): doing
	// them twice is harmless, and they keep no inbox entries.
	messaging.HandleIdempotentEvent(b, "allocation.read_model.add", h.AddAllocationToReadModel)
	messaging.HandleIdempotentEvent(b, "allocation.read_model.remove", h.RemoveAllocationFromReadModel)
	messaging.HandleEvent(b, "allocation.reallocate", h.Reallocate)
	// The shop's events.
	messaging.HandleEvent(b, "allocation.reserve_cart_item", h.ReserveCartItem)
	messaging.HandleEvent(b, "allocation.release_cancelled_order", h.ReleaseCancelledOrder)
	messaging.HandleEvent(b, "allocation.dispatch_order", h.DispatchOrder)
	messaging.HandleEvent(b, "allocation.report_stock", h.ReportStock)
	messaging.HandleEvent(b, "allocation.release_expired_cart", h.ReleaseExpiredCart)
	messaging.HandleEvent(b, "allocation.promote_vip", h.PromoteVIP)
	return b
}
