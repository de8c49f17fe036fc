// Package shoptest drives a running shop (the five services, in one
// process or several, on any transport) with a random workload through
// its HTTP API, and checks that the services agree about stock once the
// messages have drained: no batch oversold, the books of every batch
// balanced in the allocation service and the warehouse alike, goods that
// left taken out of the batch they left from, and every order's status,
// lines, shipment, read model and CRM entry in agreement with where the
// allocation service holds its lines.
//
// The workload is random but seeded: a failing run prints its seed, and
// Workload.Seed replays its choices (the interleaving of messages, which
// the transport and the scheduler decide, varies).
package shoptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Shop is a running shop, as the workload and the checks reach it.
type Shop struct {
	// URL returns the base URL that answers the routes of a service
	// (allocation, orders, warehouse, crm): it may change when a service
	// restarts.
	URL    func(service string) string
	Client *http.Client
}

// Workload is what Run does.
type Workload struct {
	Seed uint64
	// Ops is how many operations each worker makes; Workers run at once.
	Ops, Workers int
	// SKUs is how many products the shop sells (default 3): few, so that
	// orders compete for the same batches.
	SKUs int
	// Disrupt, when set, is called at random points (about one operation in
	// DisruptEvery, default 40) to kill or restart a service; it gets a
	// random source of the workload's.
	Disrupt      func(ctx context.Context, rng *rand.Rand) error
	DisruptEvery int
}

// History is what the workload did and the shop accepted: what the checks
// hold the shop to.
type History struct {
	mu      sync.Mutex
	Batches map[string]Batch // by ref
	Orders  map[string]*Order
	// Direct are the order ids of lines allocated with POST /allocate.
	Direct map[string]string // order id -> sku
	Ops    map[string]int    // operation -> times it was answered with success
}

// Batch is a batch the workload added; ETA is empty for warehouse stock,
// else the day (YYYY-MM-DD) a batch on its way comes in.
type Batch struct {
	Ref, SKU string
	Qty      int
	ETA      string
}

// atSea reports whether the batch's goods are not in the warehouse yet.
func (b Batch) atSea(now time.Time) bool {
	return b.ETA != "" && b.ETA > now.UTC().Format(time.DateOnly)
}

// Order is a cart the workload opened.
type Order struct {
	ID, Customer string
	Items        map[string]int // sku -> qty
	Placed       bool
}

// Run drives the shop with w until every worker made its operations or
// an operation failed in a way no shop should answer (a 5xx, a malformed
// answer, a connection refused for longer than a restart takes).
func Run(ctx context.Context, s Shop, w Workload) (*History, error) {
	if w.SKUs <= 0 {
		w.SKUs = 3
	}
	if w.Workers <= 0 {
		w.Workers = 4
	}
	if w.DisruptEvery <= 0 {
		w.DisruptEvery = 40
	}
	h := &History{Batches: map[string]Batch{}, Orders: map[string]*Order{}, Direct: map[string]string{}, Ops: map[string]int{}}
	d := &driver{s: s, h: h, w: w}
	setup := rand.New(rand.NewPCG(w.Seed, 0))
	for i := range w.SKUs {
		for range 2 {
			if err := d.addBatch(ctx, setup, d.sku(i)); err != nil {
				return h, err
			}
		}
	}
	errs := make(chan error, w.Workers)
	var disrupt sync.Mutex // one disruption at a time
	for n := range w.Workers {
		go func() {
			rng := rand.New(rand.NewPCG(w.Seed, uint64(n)+1))
			for i := 0; i < w.Ops; i++ {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				if w.Disrupt != nil && rng.IntN(w.DisruptEvery) == 0 {
					disrupt.Lock()
					err := w.Disrupt(ctx, rng)
					disrupt.Unlock()
					if err != nil {
						errs <- fmt.Errorf("disrupting: %w", err)
						return
					}
					continue
				}
				if err := d.op(ctx, rng, n); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range w.Workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return h, first
}

type driver struct {
	s Shop
	h *History
	w Workload

	mu   sync.Mutex
	next int
}

func (d *driver) sku(i int) string { return fmt.Sprintf("SKU-%d", i) }

func (d *driver) id(prefix string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	return fmt.Sprintf("%s-%d", prefix, d.next)
}

func (h *History) count(op string) {
	h.mu.Lock()
	h.Ops[op]++
	h.mu.Unlock()
}

// pick returns a random element of keys, or "".
func pick(rng *rand.Rand, keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	return keys[rng.IntN(len(keys))]
}

func (h *History) batchRefs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for ref := range h.Batches {
		out = append(out, ref)
	}
	return out
}

func (h *History) orderIDs(placed bool) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, o := range h.Orders {
		if o.Placed == placed {
			out = append(out, id)
		}
	}
	return out
}

// op makes one random operation.
func (d *driver) op(ctx context.Context, rng *rand.Rand, worker int) error {
	sku := d.sku(rng.IntN(d.w.SKUs))
	switch n := rng.IntN(100); {
	case n < 8:
		return d.addBatch(ctx, rng, sku)
	case n < 33:
		return d.cart(ctx, rng)
	case n < 53:
		id := pick(rng, d.h.orderIDs(false))
		if id == "" {
			return nil
		}
		return d.place(ctx, id)
	case n < 60:
		id := pick(rng, append(d.h.orderIDs(false), d.h.orderIDs(true)...))
		if id == "" {
			return nil
		}
		return d.expect(ctx, "cancel", "orders", http.MethodPost, "/orders/"+id+"/cancel", nil, http.StatusOK, http.StatusConflict)
	case n < 68: // 404 while the warehouse has not heard of the batch yet
		ref := pick(rng, d.h.batchRefs())
		return d.expect(ctx, "damage", "warehouse", http.MethodPost, "/warehouse/batches/"+ref+"/damage",
			map[string]any{"qty": 1 + rng.IntN(3), "note": "chaos"}, http.StatusAccepted, http.StatusConflict, http.StatusNotFound)
	case n < 75:
		ref := pick(rng, d.h.batchRefs())
		return d.expect(ctx, "count", "warehouse", http.MethodPost, "/warehouse/batches/"+ref+"/count",
			map[string]any{"qty": rng.IntN(14)}, http.StatusAccepted, http.StatusNotFound)
	case n < 92:
		id := d.id(fmt.Sprintf("direct-w%d", worker))
		d.h.mu.Lock()
		d.h.Direct[id] = sku
		d.h.mu.Unlock()
		return d.expect(ctx, "allocate", "allocation", http.MethodPost, "/allocate",
			map[string]any{"orderid": id, "sku": sku, "qty": 1 + rng.IntN(4)}, http.StatusCreated, http.StatusConflict)
	default:
		d.h.mu.Lock()
		var ids []string
		for id := range d.h.Direct {
			ids = append(ids, id)
		}
		id := pick(rng, ids)
		sku := d.h.Direct[id]
		d.h.mu.Unlock()
		if id == "" {
			return nil
		}
		// The line's quantity is not remembered: a wrong one is a 404 too,
		// which a shop must answer as well.
		return d.expect(ctx, "deallocate", "allocation", http.MethodPost, "/deallocate",
			map[string]any{"orderid": id, "sku": sku, "qty": 1 + rng.IntN(4)}, http.StatusOK, http.StatusNotFound)
	}
}

func (d *driver) addBatch(ctx context.Context, rng *rand.Rand, sku string) error {
	ref := d.id("b")
	var eta any
	var day string
	if rng.IntN(3) == 0 {
		day = fmt.Sprintf("2031-01-%02d", 1+rng.IntN(28))
		eta = day
	}
	qty := 3 + rng.IntN(13)
	if err := d.expect(ctx, "add_batch", "allocation", http.MethodPost, "/add_batch",
		map[string]any{"ref": ref, "sku": sku, "qty": qty, "eta": eta}, http.StatusCreated); err != nil {
		return err
	}
	d.h.mu.Lock()
	d.h.Batches[ref] = Batch{Ref: ref, SKU: sku, Qty: qty, ETA: day}
	d.h.mu.Unlock()
	return nil
}

// cart opens a cart with one or two items.
func (d *driver) cart(ctx context.Context, rng *rand.Rand) error {
	cust := fmt.Sprintf("cust-%d", rng.IntN(6))
	var o struct {
		ID string `json:"orderid"`
	}
	if err := d.call(ctx, "orders", http.MethodPost, "/orders", map[string]any{"customer": cust, "email": cust + "@example.com"}, &o, http.StatusCreated); err != nil {
		return err
	}
	d.h.count("cart")
	ord := &Order{ID: o.ID, Customer: cust, Items: map[string]int{}}
	for range 1 + rng.IntN(2) {
		sku, qty := d.sku(rng.IntN(d.w.SKUs)), 1+rng.IntN(4)
		if _, dup := ord.Items[sku]; dup {
			continue
		}
		// 409: the item is in the cart already, when the request was sent
		// again after the service died before answering.
		if err := d.expect(ctx, "add_item", "orders", http.MethodPost, "/orders/"+o.ID+"/items", map[string]any{"sku": sku, "qty": qty}, http.StatusAccepted, http.StatusConflict); err != nil {
			return err
		}
		ord.Items[sku] = qty
	}
	d.h.mu.Lock()
	d.h.Orders[o.ID] = ord
	d.h.mu.Unlock()
	return nil
}

func (d *driver) place(ctx context.Context, id string) error {
	if err := d.expect(ctx, "place", "orders", http.MethodPost, "/orders/"+id+"/place", nil, http.StatusOK, http.StatusConflict); err != nil {
		return err
	}
	d.h.mu.Lock()
	d.h.Orders[id].Placed = true // a 409 (cancelled) places nothing, and changes nothing either
	d.h.mu.Unlock()
	return nil
}

// expect makes a request whose answer must have one of the statuses.
func (d *driver) expect(ctx context.Context, op, service, method, path string, body any, ok ...int) error {
	var status int
	err := d.do(ctx, service, method, path, body, nil, &status)
	if err != nil {
		return err
	}
	if !slices.Contains(ok, status) {
		return fmt.Errorf("%s %s: status %d, want one of %v", method, path, status, ok)
	}
	if status == ok[0] {
		d.h.count(op)
	}
	return nil
}

func (d *driver) call(ctx context.Context, service, method, path string, body, out any, want int) error {
	var status int
	if err := d.do(ctx, service, method, path, body, out, &status); err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s: status %d, want %d", method, path, status, want)
	}
	return nil
}

// do makes a request, retrying while the service is away (a restart) for
// up to 30 seconds, and decodes a 2xx answer into out.
func (d *driver) do(ctx context.Context, service, method, path string, body, out any, status *int) error {
	return request(ctx, d.s, service, method, path, body, out, status)
}

func request(ctx context.Context, s Shop, service, method, path string, body, out any, status *int) error {
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, method, s.URL(service)+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		resp, err := s.Client.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway:
				err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			case resp.StatusCode >= 500:
				return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
			default:
				*status = resp.StatusCode
				if out != nil && resp.StatusCode < 300 {
					if err := json.Unmarshal(b, out); err != nil {
						return fmt.Errorf("%s %s: decoding %s: %w", method, path, b, err)
					}
				}
				return nil
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%s %s on %s: %w", method, path, service, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get reads a JSON answer; found is false on a 404.
func get(ctx context.Context, s Shop, service, path string, out any) (found bool, err error) {
	var status int
	if err := request(ctx, s, service, http.MethodGet, path, nil, out, &status); err != nil {
		return false, err
	}
	switch status {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("GET %s: status %d", path, status)
}

// Summary says what the workload did, for a test's log.
func (h *History) Summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ops []string
	for op, n := range h.Ops {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	slices.Sort(ops)
	return fmt.Sprintf("%d batches, %d carts, %d direct lines; succeeded: %s", len(h.Batches), len(h.Orders), len(h.Direct), strings.Join(ops, ", "))
}
