package service

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// ErrInvalidSKU: a line of a sku that has no batches.
var ErrInvalidSKU = fail.New(fail.Invalid, "Invalid sku")

// Handlers handles the allocation service's commands and events.
type Handlers struct {
	store Store
	locks skuLocks
	// Policy says how waiting lines are served (domain.Strict unless set).
	Policy domain.Policy
}

// NewHandlers returns the handlers over store.
func NewHandlers(store Store) *Handlers { return &Handlers{store: store} }

// CreateBatch adds a batch, and the product when it is the sku's first.
func (h *Handlers) CreateBatch(ctx context.Context, cmd domain.CreateBatch) (any, []messaging.Raised, error) {
	if err := cmd.Validate(); err != nil {
		return nil, nil, err
	}
	defer h.locks.lock(cmd.SKU)()
	raised, err := h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		if _, err := uow.Products().GetByBatchRef(ctx, cmd.Ref, ""); err == nil {
			return fmt.Errorf("%w %s", domain.ErrDuplicateBatch, cmd.Ref)
		} else if !errors.Is(err, fail.NotFound) {
			return err
		}
		p, err := uow.Products().Get(ctx, cmd.SKU)
		if errors.Is(err, fail.NotFound) {
			p = domain.NewProduct(cmd.SKU, 0)
			uow.Products().Add(p)
		} else if err != nil {
			return err
		}
		return p.AddBatch(cmd.Ref, cmd.Qty, cmd.ETA)
	})
	return nil, raised, err
}

// Allocate allocates an order line and returns its batch's ref. When no
// batch can take it, the OutOfStock event is committed and the error wraps
// domain.ErrOutOfStock.
func (h *Handlers) Allocate(ctx context.Context, cmd domain.Allocate) (any, []messaging.Raised, error) {
	if err := cmd.Validate(); err != nil {
		return nil, nil, err
	}
	ref, raised, err := h.allocate(ctx, cmd.Line(), false)
	return ref, raised, err
}

// allocate allocates line; a sku without batches fails with ErrInvalidSKU,
// or, when unknownOutOfStock, is out of stock. A shop line (with a
// Customer) that no batch can take waits for stock.
func (h *Handlers) allocate(ctx context.Context, line domain.OrderLine, unknownOutOfStock bool) (string, []messaging.Raised, error) {
	defer h.locks.lock(line.SKU)()
	var ref string
	var outOfStock error
	raised, err := h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		if line.Customer != "" {
			vip, err := uow.Customers().IsVIP(ctx, line.Customer)
			if err != nil {
				return err
			}
			line.VIP = vip
		}
		p, err := uow.Products().GetForOrder(ctx, line.SKU, line.OrderID)
		if errors.Is(err, fail.NotFound) && unknownOutOfStock {
			// A product without batches: it raises OutOfStock, and is
			// stored only if the line waits for it.
			p, err = domain.NewProduct(line.SKU, 0), nil
			uow.Products().Add(p)
		}
		if errors.Is(err, fail.NotFound) || err == nil && len(p.Batches) == 0 && !unknownOutOfStock {
			// No batch of it (a product of waiting lines alone has none).
			return fmt.Errorf("%w %s", ErrInvalidSKU, line.SKU)
		} else if err != nil {
			return err
		}
		ref, outOfStock = p.Allocate(line)
		if errors.Is(outOfStock, domain.ErrOutOfStock) {
			return nil // commit the OutOfStock event
		}
		return outOfStock
	})
	if err != nil {
		return "", nil, err
	}
	return ref, raised, outOfStock
}

// ChangeBatchQuantity sets a batch's quantity; the lines it can no longer
// hold are allocated again elsewhere, in the same transaction, and waiting
// lines take stock that rose.
func (h *Handlers) ChangeBatchQuantity(ctx context.Context, cmd domain.ChangeBatchQuantity) (any, []messaging.Raised, error) {
	if err := cmd.Validate(); err != nil {
		return nil, nil, err
	}
	raised, err := h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, cmd.Ref, "")
		if errors.Is(err, fail.NotFound) {
			return fmt.Errorf("%w %s", domain.ErrUnknownBatch, cmd.Ref)
		} else if err != nil {
			return err
		}
		return p.ChangeBatchQuantity(cmd.Ref, cmd.Qty)
	})
	return nil, raised, err
}

// Deallocate frees an order line's stock and returns the ref of the batch
// that held it (empty when the line was waiting for stock: it leaves the
// waiting list).
func (h *Handlers) Deallocate(ctx context.Context, cmd domain.Deallocate) (any, []messaging.Raised, error) {
	if err := cmd.Validate(); err != nil {
		return nil, nil, err
	}
	defer h.locks.lock(cmd.SKU)()
	var ref string
	raised, err := h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, cmd.SKU, cmd.OrderID)
		if errors.Is(err, fail.NotFound) {
			return fmt.Errorf("%w: no product %s", domain.ErrNotAllocated, cmd.SKU)
		} else if err != nil {
			return err
		}
		ref, err = p.Deallocate(cmd.Line())
		return err
	})
	return ref, raised, err
}

// Reallocate allocates again a line that lost its batch when the batch
// shrank, as earlier versions did, after the change: a Deallocated of
// theirs (version 0) may wait in the outbox. Lines deallocated since are
// allocated again in the change itself.
// Running out of stock is an outcome, not a failure: the OutOfStock event
// tells whoever needs to know.
func (h *Handlers) Reallocate(ctx context.Context, ev domain.Deallocated) ([]messaging.Raised, error) {
	if ev.Reason != domain.ReasonBatchShrank || ev.Version != 0 {
		return nil, nil
	}
	_, raised, err := h.allocate(ctx, ev.Line(), false)
	if errors.Is(err, domain.ErrOutOfStock) {
		err = nil
	}
	return raised, err
}

// ReserveCartItem allocates the line of an item put in a cart. A line no
// batch can take, even of a sku the shop has no batch of yet, waits for
// stock: OutOfStock tells the cart so.
func (h *Handlers) ReserveCartItem(ctx context.Context, ev CartItemAdded) ([]messaging.Raised, error) {
	_, raised, err := h.allocate(ctx, domain.OrderLine{OrderID: ev.OrderID, SKU: ev.SKU, Qty: ev.Qty, Customer: ev.Customer}, true)
	if errors.Is(err, domain.ErrOutOfStock) {
		err = nil
	}
	return raised, err
}

// ReleaseCancelledOrder frees the stock of a cancelled order's lines (the
// compensation of their reservations), and takes its waiting lines off the
// waiting list. A line that holds no stock (never allocated, or released
// already) is skipped.
func (h *Handlers) ReleaseCancelledOrder(ctx context.Context, ev OrderCancelled) ([]messaging.Raised, error) {
	return h.release(ctx, ev.OrderID, ev.Lines)
}

// ReleaseExpiredCart frees the stock of a cart whose reservations expired,
// as a cancellation does: the next waiting line takes it.
func (h *Handlers) ReleaseExpiredCart(ctx context.Context, ev ReservationExpired) ([]messaging.Raised, error) {
	return h.release(ctx, ev.OrderID, ev.Lines)
}

func (h *Handlers) release(ctx context.Context, orderID string, lines []Item) ([]messaging.Raised, error) {
	return h.eachLine(ctx, orderID, lines, func(ctx context.Context, uow UnitOfWork, l Item) (*domain.Product, error) {
		return uow.Products().GetForOrder(ctx, l.SKU, orderID)
	}, func(p *domain.Product, l Item) error {
		_, err := p.Deallocate(domain.OrderLine{OrderID: orderID, SKU: l.SKU, Qty: l.Qty})
		return err
	})
}

// PromoteVIP records that a customer became a VIP: their waiting lines go
// ahead of the others', and are served if stock allows. Recording the VIP
// is idempotent by itself; each product the customer waits for changes in
// a transaction of its own, with its own inbox entry, as eachLine does.
func (h *Handlers) PromoteVIP(ctx context.Context, ev CustomerBecameVIP) ([]messaging.Raised, error) {
	m := messaging.MetaFrom(ctx)
	var skus []string
	pm := m
	pm.Consumer = "" // no inbox entry
	plain := messaging.WithMeta(ctx, pm)
	if _, err := h.transact(plain, func(ctx context.Context, uow UnitOfWork) error {
		var err error
		skus, err = uow.Customers().AddVIP(ctx, ev.Customer)
		return err
	}); err != nil {
		return nil, err
	}
	var all []messaging.Raised
	for _, sku := range skus {
		sctx := ctx
		if m.Consumer != "" {
			sm := m
			sm.Consumer += "#" + sku
			sctx = messaging.WithMeta(ctx, sm)
		}
		raised, err := func() ([]messaging.Raised, error) {
			defer h.locks.lock(sku)()
			return h.transact(sctx, func(ctx context.Context, uow UnitOfWork) error {
				p, err := uow.Products().Get(ctx, sku)
				if errors.Is(err, fail.NotFound) {
					return nil
				} else if err != nil {
					return err
				}
				p.PromoteVIP(ev.Customer)
				return nil
			})
		}()
		if err != nil {
			return all, err
		}
		all = append(all, raised...)
	}
	return all, nil
}

// DispatchOrder records that an order's goods left the warehouse: each
// line's goods are taken out of the batch they left from, and the line
// leaves whichever batch holds it here (see domain.Product.Dispatch).
func (h *Handlers) DispatchOrder(ctx context.Context, ev GoodsDispatched) ([]messaging.Raised, error) {
	return h.eachLine(ctx, ev.OrderID, ev.Lines, func(ctx context.Context, uow UnitOfWork, l Item) (*domain.Product, error) {
		if l.BatchRef == "" {
			return uow.Products().GetForOrder(ctx, l.SKU, ev.OrderID)
		}
		p, err := uow.Products().GetByBatchRef(ctx, l.BatchRef, ev.OrderID)
		if errors.Is(err, fail.NotFound) {
			return nil, fmt.Errorf("%w %s", domain.ErrUnknownBatch, l.BatchRef)
		}
		return p, err
	}, func(p *domain.Product, l Item) error {
		return p.Dispatch(ev.OrderID, l.BatchRef, l.Qty)
	})
}

// ReportStock applies a warehouse worker's report on a batch (a count, or
// damage): see domain.Product.ReportStock.
func (h *Handlers) ReportStock(ctx context.Context, ev StockReported) ([]messaging.Raised, error) {
	return h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, ev.BatchRef, "")
		if errors.Is(err, fail.NotFound) {
			return fmt.Errorf("%w %s", domain.ErrUnknownBatch, ev.BatchRef)
		} else if err != nil {
			return err
		}
		return p.ReportStock(ev.BatchRef, domain.StockReport{Seq: ev.Seq, Kind: ev.Kind, Qty: ev.Qty, Dispatched: ev.Dispatched})
	})
}

// eachLine changes the product of each line of an order, as load loads
// it, with fn, one transaction a line. Each transaction keeps its own inbox
// entry, so that a redelivered message skips the lines done and finishes
// the others. A line of a product with no such sku, or not allocated, is
// skipped.
func (h *Handlers) eachLine(ctx context.Context, orderID string, lines []Item,
	load func(context.Context, UnitOfWork, Item) (*domain.Product, error), fn func(*domain.Product, Item) error) ([]messaging.Raised, error) {
	var all []messaging.Raised
	for _, l := range lines {
		lctx := ctx
		if m := messaging.MetaFrom(ctx); m.Consumer != "" {
			m.Consumer += "#" + l.SKU
			lctx = messaging.WithMeta(ctx, m)
		}
		raised, err := func() ([]messaging.Raised, error) {
			defer h.locks.lock(l.SKU)()
			return h.transact(lctx, func(ctx context.Context, uow UnitOfWork) error {
				p, err := load(ctx, uow, l)
				if errors.Is(err, fail.NotFound) {
					return nil
				} else if err != nil {
					return err
				}
				if err := fn(p, l); err != nil && !errors.Is(err, domain.ErrNotAllocated) {
					return err
				}
				return nil
			})
		}()
		if err != nil {
			return all, err
		}
		all = append(all, raised...)
	}
	return all, nil
}

// AddAllocationToReadModel keeps the allocations view.
func (h *Handlers) AddAllocationToReadModel(ctx context.Context, ev domain.Allocated) ([]messaging.Raised, error) {
	return h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		return uow.ReadModel().SetAllocation(ctx, ev.OrderID, ev.SKU, ev.BatchRef)
	})
}

// RemoveAllocationFromReadModel keeps the allocations view.
func (h *Handlers) RemoveAllocationFromReadModel(ctx context.Context, ev domain.Deallocated) ([]messaging.Raised, error) {
	return h.transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		return uow.ReadModel().RemoveAllocation(ctx, ev.OrderID, ev.SKU, ev.BatchRef)
	})
}

// BatchView is a batch as the allocation service holds it: its quantity,
// what is promised from it, and what its quantity includes.
type BatchView struct {
	Ref        string             `json:"batchref"`
	SKU        string             `json:"sku"`
	Qty        int                `json:"qty"`
	ETA        domain.Date        `json:"eta"`
	Allocated  int                `json:"allocated"`
	Available  int                `json:"available"`
	Dispatched int                `json:"dispatched"`
	ReportSeq  int                `json:"report_seq"`
	Version    int                `json:"version"`
	Lines      []domain.OrderLine `json:"lines"`
}

// Batch answers a batch, with its lines, from the write model.
func (h *Handlers) Batch(ctx context.Context, ref string) (BatchView, error) {
	var v BatchView
	_, err := h.store.Transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, ref, "")
		if errors.Is(err, fail.NotFound) {
			return fmt.Errorf("%w %s", domain.ErrUnknownBatch, ref)
		} else if err != nil {
			return err
		}
		b := p.Batch(ref)
		v = batchView(p, b)
		if b.Lines != nil {
			v.Lines = b.Lines
		}
		return nil
	})
	return v, err
}

func batchView(p *domain.Product, b *domain.Batch) BatchView {
	return BatchView{Ref: b.Ref, SKU: b.SKU, Qty: b.Purchased, ETA: domain.Date{Time: b.ETA}, Allocated: b.Allocated,
		Available: b.Available(), Dispatched: b.Dispatched, ReportSeq: b.ReportSeq, Version: p.Version, Lines: []domain.OrderLine{}}
}

// ProductView is a product as the allocation service holds it: its
// batches and its waiting list, in the order it is served.
type ProductView struct {
	SKU      string             `json:"sku"`
	Version  int                `json:"version"`
	Batches  []BatchStock       `json:"batches"`
	Waiting  []domain.Backorder `json:"waiting"`
	Policy   string             `json:"backorder_policy"`
	Free     int                `json:"available"`
	Awaiting int                `json:"waiting_qty"`
}

// BatchStock is a batch's stock, as a product's view shows it.
type BatchStock struct {
	Ref       string      `json:"batchref"`
	Qty       int         `json:"qty"`
	ETA       domain.Date `json:"eta"`
	Allocated int         `json:"allocated"`
	Available int         `json:"available"`
}

// Product answers a product, with its batches (without their lines) and
// its waiting list, from the write model.
func (h *Handlers) Product(ctx context.Context, sku string) (ProductView, error) {
	var v ProductView
	_, err := h.store.Transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		p, err := uow.Products().Get(ctx, sku)
		if errors.Is(err, fail.NotFound) {
			return fail.Errorf(fail.NotFound, "No product %s: no batch of it was ever added, and no line waits for it", sku)
		} else if err != nil {
			return err
		}
		v = ProductView{SKU: p.SKU, Version: p.Version, Batches: []BatchStock{}, Waiting: p.Waiting, Policy: h.Policy.String()}
		if v.Waiting == nil {
			v.Waiting = []domain.Backorder{}
		}
		for _, b := range p.Batches {
			v.Batches = append(v.Batches, BatchStock{Ref: b.Ref, Qty: b.Purchased, ETA: domain.Date{Time: b.ETA}, Allocated: b.Allocated, Available: b.Available()})
			v.Free += max(b.Available(), 0)
		}
		for _, w := range p.Waiting {
			v.Awaiting += w.Qty
		}
		return nil
	})
	return v, err
}

// Allocations answers the allocations of an order from the read model.
func (h *Handlers) Allocations(ctx context.Context, orderID string) ([]AllocationView, error) {
	return h.store.Allocations(ctx, orderID)
}

// skuLocks serializes the work on each sku inside the process, so that
// requests for one sku queue instead of racing to a version conflict.
type skuLocks struct {
	seed    maphash.Seed
	once    sync.Once
	stripes [256]sync.Mutex
}

func (l *skuLocks) lock(sku string) (unlock func()) {
	l.once.Do(func() { l.seed = maphash.MakeSeed() })
	m := &l.stripes[maphash.String(l.seed, sku)%uint64(len(l.stripes))]
	m.Lock()
	return m.Unlock
}
