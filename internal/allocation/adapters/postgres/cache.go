package postgres

import (
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

// The product cache. Allocating is the service's hot path, and what it
// reads (a product's batches, and the order's lines of that sku, which for
// a new line are none) is what the service itself last committed, unless
// another instance changed the product since. So the store remembers each
// product as it committed it, and a transaction may read a product from
// memory instead of the database, on trust, and verify the trust when it
// writes, in the same round trip:
//
//   - the product must be saved: its version check fails the transaction
//     when another transaction changed it since (migration 002);
//   - read for an order, it is trusted to hold none of the order's lines,
//     and the transaction must insert that line: the unique key on
//     (orderid, sku) fails it when the line was there.
//
// A transaction that cannot be verified so (it failed, changed nothing, or
// deallocated rather than allocated) runs again, reading the database, as
// does one whose verification failed: the caller never sees the cache. A
// transaction that reads nothing from the database takes no round trip
// before its writes, and a group of them commits in one.
//
// The cache trusts that a product's version names one state. A database
// restored from a backup, or failed over to a replica that lost commits,
// under a running instance can break that: restart the instances after
// either.

// cacheSize bounds the products remembered; past it, one is forgotten at
// random for each added.
const cacheSize = 10_000

// productState is a product as committed: its batches, without lines.
type productState struct {
	version int
	batches []domain.Batch
}

type productCache struct {
	mu sync.Mutex
	m  map[string]productState
}

func newProductCache() *productCache {
	return &productCache{m: make(map[string]productState)}
}

// get returns a fresh product built from the cached state of sku.
func (c *productCache) get(sku string) (*domain.Product, bool) {
	c.mu.Lock()
	st, ok := c.m[sku]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	batches := make([]*domain.Batch, len(st.batches))
	for i := range st.batches {
		b := st.batches[i]
		batches[i] = &b
	}
	return domain.NewProduct(sku, st.version, batches...), true
}

// put remembers p as committed at version, unless a later version is
// remembered already (committers finish in any order).
func (c *productCache) put(p *domain.Product, version int) {
	st := productState{version: version, batches: make([]domain.Batch, len(p.Batches))}
	for i, b := range p.Batches {
		st.batches[i] = *b
		st.batches[i].Lines = nil
		if !b.ETA.IsZero() { // as the database keeps it: a date
			y, m, d := b.ETA.Date()
			st.batches[i].ETA = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[p.SKU]; ok && old.version > version {
		return
	}
	if _, ok := c.m[p.SKU]; !ok && len(c.m) >= cacheSize {
		for sku := range c.m {
			delete(c.m, sku)
			break
		}
	}
	c.m[p.SKU] = st
}

// forget drops skus: what the database holds of them is unknown.
func (c *productCache) forget(skus ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sku := range skus {
		delete(c.m, sku)
	}
}

// cachedRead is a product a transaction read from the cache, for orderID
// when not empty.
type cachedRead struct {
	p       *domain.Product
	orderID string
}

// verifiable reports whether the writes of a transaction that read reads
// from the cache verify what it trusted (see above).
func verifiable(reads []cachedRead) bool {
	for _, r := range reads {
		if !r.p.Changed() {
			return false
		}
		if r.orderID != "" && !allocates(r.p, r.orderID) {
			return false
		}
	}
	return true
}

// allocates reports whether p raised Allocated for a line of orderID.
func allocates(p *domain.Product, orderID string) bool {
	for _, ev := range p.Events() {
		if a, ok := ev.(domain.Allocated); ok && a.OrderID == orderID {
			return true
		}
	}
	return false
}
