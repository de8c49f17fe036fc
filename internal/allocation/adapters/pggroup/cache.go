package pggroup

import (
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

// The product cache. The store remembers each product as a group committed
// it, with the version it committed. A job may take a product from the
// cache instead of reading it (postgres.Guess), on trust, and its writes
// prove the trust in the same round trip:
//
//   - the product must be saved: the UPDATE of its version names the
//     version it was taken at, and fails the transaction when the database
//     holds another (migration 002), so the product was as remembered;
//   - taken for an order, it is trusted to hold none of the order's lines,
//     and the job must have allocated the order a line of it: the line's
//     INSERT fails on the unique key (orderid, sku) when the order had one.
//
// A job whose writes cannot prove its guesses so (it failed, changed
// nothing, or holds no line of the order after its work) runs again,
// reading the database, as does one whose proof failed: the caller never
// sees the cache. A job that reads nothing from the database takes no
// round trip before its writes, and a group of them commits in one.
//
// The cache trusts that a product's version names one state. A database
// restored from a backup, or failed over to a replica that lost commits,
// under a running instance can break that: restart the instances after
// either.

// cacheSize bounds the products remembered; past it, one is forgotten at
// random for each added.
const cacheSize = 10_000

// productState is a product as committed: its batches, without lines. A
// product with a waiting list is not remembered: taken from the cache, a
// product has none.
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
	if len(p.Waiting) > 0 {
		c.forget(p)
		return
	}
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

// remember puts the products a committed job saw in the cache, as they
// now are in the database.
func (c *productCache) remember(seen []*domain.Product) {
	for _, p := range seen {
		switch {
		case p.Changed():
			c.put(p, p.Version+1)
		case p.Version > 0:
			c.put(p, p.Version)
		}
	}
}

// forget drops the products: what the database holds of them is unknown.
func (c *productCache) forget(products ...*domain.Product) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range products {
		delete(c.m, p.SKU)
	}
}

// cachedRead is a product a job took from the cache, for orderID when not
// empty.
type cachedRead struct {
	p       *domain.Product
	orderID string
}

// proven reports whether the writes of a job that took reads from the
// cache prove them (see above). Taken from the cache, a product holds no
// line: one it holds after the job's work, the job allocated, and
// inserts.
func proven(reads []cachedRead) bool {
	for _, r := range reads {
		if !r.p.Changed() {
			return false
		}
		if r.orderID != "" && !holdsLine(r.p, r.orderID) {
			return false
		}
	}
	return true
}

// holdsLine reports whether a batch of p holds a line of orderID.
func holdsLine(p *domain.Product, orderID string) bool {
	for _, b := range p.Batches {
		for _, l := range b.Lines {
			if l.OrderID == orderID {
				return true
			}
		}
	}
	return false
}
