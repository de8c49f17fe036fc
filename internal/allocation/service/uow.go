// Package service is the allocation service layer: the handlers of its
// commands and events (the book's handlers.py), the ports they need (unit
// of work, repository, read model), the messages it exchanges, and the
// wiring of its message bus (the book's bootstrap.py).
package service

import (
	"context"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/messaging"
)

// ProductRepository loads and adds Product aggregates, each with its
// batches and its waiting list. A product it loaded is saved when the unit
// of work commits.
type ProductRepository interface {
	// Add adds a new product.
	Add(p *domain.Product)
	// Get loads the product of sku with its batches and no order lines.
	Get(ctx context.Context, sku string) (*domain.Product, error)
	// GetForOrder loads the product of sku with the order lines of orderID.
	GetForOrder(ctx context.Context, sku, orderID string) (*domain.Product, error)
	// GetByBatchRef loads the product that has the batch ref, with the
	// order lines allocated from that batch and, when orderID is not empty,
	// the lines of orderID wherever they are.
	GetByBatchRef(ctx context.Context, ref, orderID string) (*domain.Product, error)
}

// ReadModel is the write side of the allocations view (the book's chapter
// 12): one row per allocated order line. Events may reach it late (a
// handler that failed and is retried, or a flow that moved the line
// between a commit and its dispatch), so each change applies only while it
// is still true.
type ReadModel interface {
	// SetAllocation shows the line of orderID and sku in batchRef, if it is
	// allocated there now.
	SetAllocation(ctx context.Context, orderID, sku, batchRef string) error
	// RemoveAllocation removes the line of orderID and sku, if the view
	// shows it in batchRef.
	RemoveAllocation(ctx context.Context, orderID, sku, batchRef string) error
}

// CustomerRepository keeps what the service knows of the shop's
// customers: who is a VIP, as the CRM announces it (customer_became_vip).
type CustomerRepository interface {
	// IsVIP reports whether customer is a VIP.
	IsVIP(ctx context.Context, customer string) (bool, error)
	// AddVIP records that customer is a VIP (again: no change), and
	// returns the skus the customer's lines wait for.
	AddVIP(ctx context.Context, customer string) (skus []string, err error)
}

// UnitOfWork is one transaction's view of the store.
type UnitOfWork interface {
	Products() ProductRepository
	ReadModel() ReadModel
	Customers() CustomerRepository
}

// AllocationView is a row of the allocations view.
type AllocationView struct {
	SKU      string `json:"sku"`
	BatchRef string `json:"batchref"`
}

// Store is what the allocation service keeps: the unit of work that
// changes it, and the read model's query side.
type Store interface {
	// Transact runs fn in one transaction, the unit of work
	// (messaging.UnitOfWork). When fn returns nil it saves the products fn
	// loaded or added, stores the events they raised in the outbox, and
	// commits; it returns those events. It runs fn again when the
	// transaction lost a race (another changed a product first), up to
	// messaging.MaxTransactAttempts times. When the context names a
	// consumer and a message (messaging.Meta), Transact records the message
	// as handled, in the same transaction, and returns
	// messaging.ErrAlreadyHandled, changing nothing, if it already was (fn
	// may or may not have been called). Products that do not exist are
	// errors of kind fail.NotFound.
	Transact(ctx context.Context, fn func(context.Context, UnitOfWork) error) ([]messaging.Raised, error)
	// Allocations returns the allocations view of an order.
	Allocations(ctx context.Context, orderID string) ([]AllocationView, error)
}

// transact runs fn in a transaction, and treats a message already handled
// as done. The products fn loads serve their waiting lists by the
// handlers' policy.
func (h *Handlers) transact(ctx context.Context, fn func(context.Context, UnitOfWork) error) ([]messaging.Raised, error) {
	return messaging.IgnoreHandled(h.store.Transact(ctx, func(ctx context.Context, uow UnitOfWork) error {
		return fn(ctx, withPolicy{uow, h.Policy})
	}))
}

// withPolicy is a unit of work whose products serve their waiting lists by
// policy: the policy is the service's, not the data's.
type withPolicy struct {
	UnitOfWork
	policy domain.Policy
}

func (u withPolicy) Products() ProductRepository {
	return policyRepository{u.UnitOfWork.Products(), u.policy}
}

type policyRepository struct {
	ProductRepository
	policy domain.Policy
}

func (r policyRepository) set(p *domain.Product, err error) (*domain.Product, error) {
	if p != nil {
		p.Policy = r.policy
	}
	return p, err
}

func (r policyRepository) Add(p *domain.Product) {
	p.Policy = r.policy
	r.ProductRepository.Add(p)
}

func (r policyRepository) Get(ctx context.Context, sku string) (*domain.Product, error) {
	return r.set(r.ProductRepository.Get(ctx, sku))
}

func (r policyRepository) GetForOrder(ctx context.Context, sku, orderID string) (*domain.Product, error) {
	return r.set(r.ProductRepository.GetForOrder(ctx, sku, orderID))
}

func (r policyRepository) GetByBatchRef(ctx context.Context, ref, orderID string) (*domain.Product, error) {
	return r.set(r.ProductRepository.GetByBatchRef(ctx, ref, orderID))
}
