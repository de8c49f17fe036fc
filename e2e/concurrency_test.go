package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentAllocation races 16 clients of 25 requests each for 100
// units of one sku in two batches: exactly 100 lines are allocated, the
// others are told the sku is out of stock, nobody gets a 5xx.
func TestConcurrentAllocation(t *testing.T) {
	const (
		clients   = 16
		perClient = 25
		warehouse = 40
		shipment  = 60
	)
	s := start(t)
	sku, wref, sref := uniq("sku"), uniq("warehouse"), uniq("shipment")
	s.addBatch(t, sref, sku, shipment, "2011-01-01")
	s.addBatch(t, wref, sku, warehouse, "")

	type result struct {
		order    string
		status   int
		batchRef string
		err      string
	}
	results := make([][]result, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for c := range clients {
		wg.Go(func() {
			<-start
			for i := range perClient {
				res := result{order: fmt.Sprintf("c%02d-%02d-%s", c, i, sku)}
				r, err := s.request(context.Background(), http.MethodPost, "/allocate", lineBody(res.order, sku, 1), nil)
				switch {
				case err != nil:
					res.err = err.Error()
				default:
					res.status = r.Status
					switch r.Status {
					case http.StatusCreated:
						var b struct {
							BatchRef string `json:"batchref"`
						}
						if err := json.Unmarshal(r.Body, &b); err != nil || b.BatchRef == "" {
							res.err = r.String() + " (no batchref)"
						}
						res.batchRef = b.BatchRef
					case http.StatusConflict:
						if msg, _ := r.message(); msg != "Out of stock for sku "+sku {
							res.err = "409 with message " + msg
						}
					default:
						res.err = r.String()
					}
				}
				results[c] = append(results[c], res)
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d allocations in %v", clients*perClient, time.Since(began))

	perBatch := map[string]int{}
	var allocated []result
	for _, rs := range results {
		for _, r := range rs {
			if r.err != "" {
				t.Errorf("order %s: %s (want 201, or 409 out of stock)", r.order, r.err)
				continue
			}
			if r.status == http.StatusCreated {
				allocated = append(allocated, r)
				perBatch[r.batchRef]++
			}
		}
	}
	if len(allocated) != warehouse+shipment {
		t.Errorf("%d allocations answered 201, want %d", len(allocated), warehouse+shipment)
	}
	if perBatch[wref] != warehouse || perBatch[sref] != shipment || len(perBatch) != 2 {
		t.Errorf("allocations per batch %v, want %s: %d and %s: %d", perBatch, wref, warehouse, sref, shipment)
	}
	for _, r := range allocated {
		if rows := s.allocations(t, r.order); !slices.Equal(rows, []allocation{{sku, r.batchRef}}) {
			t.Errorf("order %s answered 201 in %s; GET /allocations = %v", r.order, r.batchRef, rows)
		}
	}
	expectMessage(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict, "Out of stock for sku "+sku)
}

// TestCorrelationID: the X-Correlation-ID a request carries comes back in
// its answer and in its log line (a debug line); without one, the answer
// carries a new one.
func TestCorrelationID(t *testing.T) {
	s := startWith(t, options{Args: []string{"up", "--log-level", "debug"}})
	sku := uniq("sku")
	s.addBatch(t, uniq("batch"), sku, 10, "")

	cases := []struct {
		name   string
		method string
		path   string
		body   any
		id     string
		want   int
	}{
		{"allocate", "POST", "/allocate", lineBody(uniq("order"), sku, 1), "abc", 201},
		{"healthz", "GET", "/healthz", nil, "abc", 200},
		{"bad input", "POST", "/allocate", `{`, "abc", 400},
		{"unknown route", "GET", "/nope", nil, "abc", 404},
		{"wrong method", "GET", "/allocate", nil, "abc", 405},
		{"other id", "GET", "/allocations/" + uniq("order"), nil, "corr-e2e-42", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := s.request(t.Context(), c.method, c.path, c.body, http.Header{"X-Correlation-Id": {c.id}})
			if err != nil {
				t.Fatal(err)
			}
			expect(t, r, c.want)
			if got := r.Header.Get("X-Correlation-ID"); got != c.id {
				t.Errorf("%s: X-Correlation-ID %q, want %q echoed", r, got, c.id)
			}
		})
	}

	t.Run("logged", func(t *testing.T) {
		id := uniq("corr-log")
		r, err := s.request(t.Context(), "GET", "/healthz", nil, http.Header{"X-Correlation-Id": {id}})
		if err != nil {
			t.Fatal(err)
		}
		expect(t, r, 200)
		err = eventually(3*time.Second, func() error {
			if !strings.Contains(s.logs.String(), "correlation_id="+id) {
				return fmt.Errorf("no log line with correlation_id=%s", id)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("generated when absent", func(t *testing.T) {
		a := s.do(t, "GET", "/healthz", nil).Header.Get("X-Correlation-ID")
		b := s.do(t, "GET", "/healthz", nil).Header.Get("X-Correlation-ID")
		if a == "" || b == "" || a == b {
			t.Errorf("X-Correlation-ID without one asked: %q then %q, want two distinct ids", a, b)
		}
	})
}
