package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/messaging"
	mpostgres "github.com/stockflow/stockflow/internal/messaging/postgres"
)

// writeSet gathers the writes of every job of a group, so that the group
// sends one statement per kind of write, each over arrays, whatever the
// number of jobs: the work of a statement (parsing, planning, a round of
// the protocol) is paid once a group rather than once a job.
type writeSet struct {
	inbox struct{ consumers, ids []string }

	versions struct {
		skus     []string
		versions []int32
	}
	newProducts []string

	newBatches struct {
		refs, skus []string
		qtys       []int64
		etas       []*time.Time
	}
	quantities struct {
		refs []string
		qtys []int64
	}
	deallocations struct{ orderIDs, skus []string }
	allocations   struct {
		orderIDs, skus, refs []string
		qtys                 []int64
	}
	allocated map[string]int64 // change of each batch's allocated quantity

	outbox []messaging.Envelope

	viewSets    map[viewKey]string // the batch each line is shown in
	viewRemoves struct{ orderIDs, skus, refs []string }
}

type viewKey struct{ orderID, sku string }

func newWriteSet() *writeSet {
	return &writeSet{allocated: map[string]int64{}, viewSets: map[viewKey]string{}}
}

// recordHandled records that consumer handled message id.
func (w *writeSet) recordHandled(consumer, id string) {
	w.inbox.consumers = append(w.inbox.consumers, consumer)
	w.inbox.ids = append(w.inbox.ids, id)
}

// save records what changed in p: its version, checked against the one it
// was loaded at, and the changes its events record.
func (w *writeSet) save(p *domain.Product) {
	if !p.Changed() {
		return
	}
	if p.Version == 0 {
		w.newProducts = append(w.newProducts, p.SKU)
	} else {
		w.versions.skus = append(w.versions.skus, p.SKU)
		w.versions.versions = append(w.versions.versions, int32(p.Version))
	}
	for _, ev := range p.Events() {
		switch e := ev.(type) {
		case domain.BatchCreated:
			var eta *time.Time
			if !e.ETA.IsZero() {
				eta = &e.ETA.Time
			}
			w.newBatches.refs = append(w.newBatches.refs, e.Ref)
			w.newBatches.skus = append(w.newBatches.skus, e.SKU)
			w.newBatches.qtys = append(w.newBatches.qtys, int64(e.Qty))
			w.newBatches.etas = append(w.newBatches.etas, eta)
		case domain.BatchQuantityChanged:
			w.quantities.refs = append(w.quantities.refs, e.Ref)
			w.quantities.qtys = append(w.quantities.qtys, int64(e.Qty))
		case domain.Allocated:
			w.allocations.orderIDs = append(w.allocations.orderIDs, e.OrderID)
			w.allocations.skus = append(w.allocations.skus, e.SKU)
			w.allocations.qtys = append(w.allocations.qtys, int64(e.Qty))
			w.allocations.refs = append(w.allocations.refs, e.BatchRef)
			w.allocated[e.BatchRef] += int64(e.Qty)
		case domain.Deallocated:
			w.deallocations.orderIDs = append(w.deallocations.orderIDs, e.OrderID)
			w.deallocations.skus = append(w.deallocations.skus, e.SKU)
			w.allocated[e.BatchRef] -= int64(e.Qty)
		}
	}
}

// publish records messages for the outbox, in the order given.
func (w *writeSet) publish(envs ...messaging.Envelope) { w.outbox = append(w.outbox, envs...) }

func (w *writeSet) setView(orderID, sku, batchRef string) {
	w.viewSets[viewKey{orderID, sku}] = batchRef
}

func (w *writeSet) removeView(orderID, sku, batchRef string) {
	w.viewRemoves.orderIDs = append(w.viewRemoves.orderIDs, orderID)
	w.viewRemoves.skus = append(w.viewRemoves.skus, sku)
	w.viewRemoves.refs = append(w.viewRemoves.refs, batchRef)
}

func (w *writeSet) publishes() bool { return len(w.outbox) > 0 }

// queue queues the statements of the set on b, in an order that keeps
// every statement's view of the others right: the inbox first (a message
// already handled fails the rest), the versions (a product changed
// meanwhile fails the rest), then the changes, the outbox and the read
// model, which shows only the allocations that are there once the
// changes are made.
func (w *writeSet) queue(b *pgx.Batch) {
	mpostgres.QueueHandled(b, w.inbox.consumers, w.inbox.ids)
	if len(w.versions.skus) > 0 {
		b.Queue(`SELECT bump_versions($1, $2)`, w.versions.skus, w.versions.versions)
	}
	if len(w.newProducts) > 0 { // fails if one was created meanwhile
		b.Queue(`INSERT INTO products (sku, version) SELECT sku, 1 FROM unnest($1::text[]) AS sku`, w.newProducts)
	}
	if len(w.newBatches.refs) > 0 {
		b.Queue(`INSERT INTO batches (ref, sku, purchased, eta)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::date[])`,
			w.newBatches.refs, w.newBatches.skus, w.newBatches.qtys, w.newBatches.etas)
	}
	if len(w.quantities.refs) > 0 {
		b.Queue(`UPDATE batches AS b SET purchased = q.qty
			FROM unnest($1::text[], $2::bigint[]) AS q(ref, qty) WHERE b.ref = q.ref`,
			w.quantities.refs, w.quantities.qtys)
	}
	if len(w.deallocations.orderIDs) > 0 {
		b.Queue(`DELETE FROM allocations AS a USING unnest($1::text[], $2::text[]) AS d(orderid, sku)
			WHERE a.orderid = d.orderid AND a.sku = d.sku`,
			w.deallocations.orderIDs, w.deallocations.skus)
	}
	if len(w.allocations.orderIDs) > 0 { // in order: the ids order the lines
		b.Queue(`INSERT INTO allocations (orderid, sku, qty, batchref)
			SELECT orderid, sku, qty, batchref
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS l(orderid, sku, qty, batchref, n)
			ORDER BY n`,
			w.allocations.orderIDs, w.allocations.skus, w.allocations.qtys, w.allocations.refs)
	}
	if len(w.allocated) > 0 {
		refs := make([]string, 0, len(w.allocated))
		deltas := make([]int64, 0, len(w.allocated))
		for ref, d := range w.allocated {
			if d != 0 {
				refs, deltas = append(refs, ref), append(deltas, d)
			}
		}
		if len(refs) > 0 {
			b.Queue(`UPDATE batches AS b SET allocated = b.allocated + d.delta
				FROM unnest($1::text[], $2::bigint[]) AS d(ref, delta) WHERE b.ref = d.ref`, refs, deltas)
		}
	}
	mpostgres.QueueOutbox(b, w.outbox) // in order: seq orders the relay
	if r := &w.viewRemoves; len(r.orderIDs) > 0 {
		b.Queue(`DELETE FROM allocations_view AS v USING unnest($1::text[], $2::text[], $3::text[]) AS r(orderid, sku, batchref)
			WHERE v.orderid = r.orderid AND v.sku = r.sku AND v.batchref = r.batchref`,
			r.orderIDs, r.skus, r.refs)
	}
	if len(w.viewSets) > 0 {
		var orderIDs, skus, refs []string
		for k, ref := range w.viewSets {
			orderIDs, skus, refs = append(orderIDs, k.orderID), append(skus, k.sku), append(refs, ref)
		}
		b.Queue(`INSERT INTO allocations_view (orderid, sku, batchref)
			SELECT a.orderid, a.sku, a.batchref
			FROM unnest($1::text[], $2::text[], $3::text[]) AS s(orderid, sku, batchref)
			JOIN allocations AS a ON a.orderid = s.orderid AND a.sku = s.sku AND a.batchref = s.batchref
			ON CONFLICT (orderid, sku) DO UPDATE SET batchref = excluded.batchref`,
			orderIDs, skus, refs)
	}
}

// mergeViews takes the read model's changes of another set.
func (w *writeSet) mergeViews(o *writeSet) {
	for k, ref := range o.viewSets {
		w.viewSets[k] = ref
	}
	r := &o.viewRemoves
	for i := range r.orderIDs {
		w.removeView(r.orderIDs[i], r.skus[i], r.refs[i])
	}
}
