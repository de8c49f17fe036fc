package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestAPI runs the book's API tests and the rest of the API's rules on one
// server; every subtest uses skus, refs and orders of its own.
func TestAPI(t *testing.T) {
	s := start(t)

	t.Run("happy path returns 201 and the earlier batch", func(t *testing.T) {
		sku, other := uniq("sku"), uniq("other-sku")
		early, later, otherBatch, order := uniq("early"), uniq("later"), uniq("other"), uniq("order")
		s.addBatch(t, later, sku, 100, "2011-01-02")
		s.addBatch(t, early, sku, 100, "2011-01-01")
		s.addBatch(t, otherBatch, other, 100, "")

		if got := s.mustAllocate(t, order, sku, 3); got != early {
			t.Fatalf("allocated to %q, want the earlier batch %q", got, early)
		}
		rows := s.allocations(t, order)
		if want := []allocation{{sku, early}}; !slices.Equal(rows, want) {
			t.Fatalf("GET /allocations/%s = %v, want %v", order, rows, want)
		}
	})

	t.Run("unhappy path returns 400 and error message", func(t *testing.T) {
		sku, order := uniq("unknown-sku"), uniq("order")
		expectMessage(t, s.allocate(t, order, sku, 20), http.StatusBadRequest, "Invalid sku "+sku)
		if rows := s.allocations(t, order); rows != nil {
			t.Fatalf("GET /allocations/%s = %v after a failed allocation, want 404", order, rows)
		}
	})

	t.Run("out of stock returns 409 and error message", func(t *testing.T) {
		sku, b, order := uniq("sku"), uniq("batch"), uniq("order")
		s.addBatch(t, b, sku, 10, "2011-01-01")
		expectMessage(t, s.allocate(t, order, sku, 20), http.StatusConflict, "Out of stock for sku "+sku)
		if rows := s.allocations(t, order); rows != nil {
			t.Fatalf("GET /allocations/%s = %v after running out of stock, want 404", order, rows)
		}
		// The batch is untouched: all 10 can still go.
		if got := s.mustAllocate(t, uniq("order"), sku, 10); got != b {
			t.Fatalf("allocated to %q, want %q", got, b)
		}
	})

	t.Run("prefers warehouse stock to shipments", func(t *testing.T) {
		sku, shipment, warehouse, order := uniq("sku"), uniq("shipment"), uniq("warehouse"), uniq("order")
		s.addBatch(t, shipment, sku, 100, time.Now().AddDate(0, 0, 1).Format(time.DateOnly))
		s.addBatch(t, warehouse, sku, 100, "")
		if got := s.mustAllocate(t, order, sku, 10); got != warehouse {
			t.Fatalf("allocated to %q, want the warehouse batch %q", got, warehouse)
		}
	})

	t.Run("allocating the same line twice takes stock once", func(t *testing.T) {
		sku, early, later := uniq("sku"), uniq("early"), uniq("later")
		s.addBatch(t, early, sku, 10, "2011-01-01")
		s.addBatch(t, later, sku, 10, "2011-01-02")
		o1 := uniq("order")
		if got := s.mustAllocate(t, o1, sku, 6); got != early {
			t.Fatalf("first allocation to %q, want %q", got, early)
		}
		// Taken twice, 12 would not fit the early batch and the line would
		// land in the later one.
		if got := s.mustAllocate(t, o1, sku, 6); got != early {
			t.Fatalf("second allocation of the same line to %q, want the same batch %q", got, early)
		}
		if rows := s.allocations(t, o1); !slices.Equal(rows, []allocation{{sku, early}}) {
			t.Fatalf("GET /allocations/%s = %v, want one row in %s", o1, rows, early)
		}
		// 4 are left in the early batch, 10 in the later one, and no more.
		if got := s.mustAllocate(t, uniq("order"), sku, 4); got != early {
			t.Fatalf("4 more went to %q, want %q: the line took stock twice", got, early)
		}
		if got := s.mustAllocate(t, uniq("order"), sku, 10); got != later {
			t.Fatalf("10 more went to %q, want %q", got, later)
		}
		expectMessage(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict, "Out of stock for sku "+sku)
	})

	t.Run("change_batch_quantity reallocates", func(t *testing.T) {
		sku, early, later, order := uniq("sku"), uniq("early"), uniq("later"), uniq("order")
		s.addBatch(t, early, sku, 10, "2011-01-01")
		s.addBatch(t, later, sku, 10, "2011-01-02")
		if got := s.mustAllocate(t, order, sku, 10); got != early {
			t.Fatalf("allocated to %q, want %q", got, early)
		}
		expect(t, s.post(t, "/change_batch_quantity", map[string]any{"batchref": early, "qty": 5}), http.StatusOK)

		want := []allocation{{sku, later}}
		var rows []allocation
		err := eventually(3*time.Second, func() error {
			rows = s.allocations(t, order)
			if !slices.Equal(rows, want) {
				return fmt.Errorf("not reallocated")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("GET /allocations/%s = %v, want exactly %v", order, rows, want)
		}
		// The early batch holds 5 free units, the later one none.
		if got := s.mustAllocate(t, uniq("order"), sku, 5); got != early {
			t.Fatalf("5 more went to %q, want %q", got, early)
		}
		expectMessage(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict, "Out of stock for sku "+sku)
	})

	t.Run("change_batch_quantity to zero is allowed", func(t *testing.T) {
		sku, b := uniq("sku"), uniq("batch")
		s.addBatch(t, b, sku, 10, "")
		expect(t, s.post(t, "/change_batch_quantity", map[string]any{"batchref": b, "qty": 0}), http.StatusOK)
		expectMessage(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict, "Out of stock for sku "+sku)
	})

	t.Run("deallocate frees stock", func(t *testing.T) {
		sku, b, o1, o2 := uniq("sku"), uniq("batch"), uniq("order"), uniq("order")
		s.addBatch(t, b, sku, 10, "")
		s.mustAllocate(t, o1, sku, 10)
		expectMessage(t, s.allocate(t, o2, sku, 1), http.StatusConflict, "Out of stock for sku "+sku)

		r := s.post(t, "/deallocate", lineBody(o1, sku, 10))
		expect(t, r, http.StatusOK)
		var got struct {
			BatchRef string `json:"batchref"`
		}
		r.decode(t, &got)
		if got.BatchRef != b {
			t.Errorf("%s: batchref %q, want %q", r, got.BatchRef, b)
		}
		if rows := s.allocations(t, o1); rows != nil {
			t.Fatalf("GET /allocations/%s = %v after deallocation, want 404", o1, rows)
		}
		if ref := s.mustAllocate(t, o2, sku, 1); ref != b {
			t.Fatalf("allocated to %q, want %q", ref, b)
		}
		// Deallocating again: the line is no longer allocated.
		r = s.post(t, "/deallocate", lineBody(o1, sku, 10))
		expect(t, r, http.StatusNotFound)
	})

	t.Run("allocations of an unknown order are 404", func(t *testing.T) {
		order := uniq("no-such-order")
		r := s.do(t, http.MethodGet, "/allocations/"+order, nil)
		expectMessage(t, r, http.StatusNotFound, "No allocations for order "+order)
	})

	t.Run("duplicate batch is 409", func(t *testing.T) {
		sku, b := uniq("sku"), uniq("batch")
		s.addBatch(t, b, sku, 10, "")
		for _, body := range []map[string]any{
			batch{b, sku, 10, ""}.body(),
			batch{b, sku, 5, "2011-01-01"}.body(),
			batch{b, uniq("another-sku"), 5, ""}.body(),
		} {
			r := s.post(t, "/add_batch", body)
			expectMessageContains(t, r, http.StatusConflict, b)
		}
		// The first batch is unchanged: 10 units, no more.
		if got := s.remaining(t, uniq("drain"), sku, 20); got != 10 {
			t.Fatalf("%d units of %s allocatable, want 10", got, sku)
		}
	})

	t.Run("change_batch_quantity of an unknown batch is 404", func(t *testing.T) {
		b := uniq("no-such-batch")
		r := s.post(t, "/change_batch_quantity", map[string]any{"batchref": b, "qty": 5})
		expectMessageContains(t, r, http.StatusNotFound, b)
	})

	t.Run("deallocating a line not allocated is 404", func(t *testing.T) {
		sku, b, order := uniq("sku"), uniq("batch"), uniq("order")
		s.addBatch(t, b, sku, 10, "")
		s.mustAllocate(t, order, sku, 3)
		for _, tc := range []struct {
			name string
			body map[string]any
		}{
			{"unknown order", lineBody(uniq("order"), sku, 3)},
			{"unknown sku", lineBody(order, uniq("sku"), 3)},
			{"other quantity", lineBody(order, sku, 2)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.post(t, "/deallocate", tc.body)
				expect(t, r, http.StatusNotFound)
				if msg, ok := r.message(); !ok || msg == "" || !r.isJSON() {
					t.Fatalf("%s: want a JSON body with a message", r)
				}
			})
		}
		// The real line is still there.
		if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, b}}) {
			t.Fatalf("GET /allocations/%s = %v, want %v", order, rows, []allocation{{sku, b}})
		}
	})
}
