package e2e

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadInput sends every POST route bodies it must refuse, and requests
// no route takes: each gets a 4xx with a JSON {"message": ...}, never a
// 5xx.
func TestBadInput(t *testing.T) {
	s := start(t)
	sku, ref, order := uniq("sku"), uniq("batch"), uniq("order")
	s.addBatch(t, ref, sku, 100, "")
	s.mustAllocate(t, order, sku, 1)

	long := strings.Repeat("x", 256)
	// A JSON object just over 1 MiB.
	huge := `{"ref":"` + strings.Repeat("x", 1<<20+16) + `","sku":"s","qty":1,"orderid":"o","batchref":"b"}`

	type tc struct {
		name   string
		method string
		path   string
		body   any // see server.request
		want   int
	}
	var cases []tc

	// Shared by every POST route.
	for _, path := range []string{"/add_batch", "/allocate", "/change_batch_quantity", "/deallocate"} {
		cases = append(cases,
			tc{"empty body", "POST", path, "", 400},
			tc{"no body", "POST", path, nil, 400},
			tc{"malformed JSON", "POST", path, `{"ref": "a",`, 400},
			tc{"not JSON", "POST", path, `hello`, 400},
			tc{"trailing garbage", "POST", path, `{"ref":"a"} x`, 400},
			tc{"JSON null", "POST", path, `null`, 400},
			tc{"JSON array", "POST", path, `[{"ref":"a"}]`, 400},
			tc{"JSON string", "POST", path, `"a"`, 400},
			tc{"JSON number", "POST", path, `42`, 400},
			tc{"empty object", "POST", path, `{}`, 400},
			tc{"body over 1 MiB", "POST", path, huge, 413},
			tc{"body over 1 MiB, chunked", "POST", path, bytes.NewReader([]byte(huge)), 413},
		)
	}

	batchCases := []struct {
		name string
		body string
	}{
		{"ref missing", `{"sku":"s","qty":1,"eta":null}`},
		{"sku missing", `{"ref":"r","qty":1,"eta":null}`},
		{"qty missing", `{"ref":"r","sku":"s","eta":null}`},
		{"ref null", `{"ref":null,"sku":"s","qty":1}`},
		{"qty null", `{"ref":"r","sku":"s","qty":null}`},
		{"ref empty", `{"ref":"","sku":"s","qty":1}`},
		{"ref blank", `{"ref":"   ","sku":"s","qty":1}`},
		{"sku empty", `{"ref":"r","sku":"","qty":1}`},
		{"ref too long", `{"ref":"` + long + `","sku":"s","qty":1}`},
		{"ref a number", `{"ref":1,"sku":"s","qty":1}`},
		{"sku an object", `{"ref":"r","sku":{},"qty":1}`},
		{"qty a string", `{"ref":"r","sku":"s","qty":"1"}`},
		{"qty a fraction", `{"ref":"r","sku":"s","qty":1.5}`},
		{"qty a boolean", `{"ref":"r","sku":"s","qty":true}`},
		{"qty too big", `{"ref":"r","sku":"s","qty":1e30}`},
		{"qty zero", `{"ref":"r","sku":"s","qty":0}`},
		{"qty negative", `{"ref":"r","sku":"s","qty":-5}`},
		{"eta a number", `{"ref":"r","sku":"s","qty":1,"eta":20110101}`},
		{"eta empty", `{"ref":"r","sku":"s","qty":1,"eta":""}`},
		{"eta not a date", `{"ref":"r","sku":"s","qty":1,"eta":"tomorrow"}`},
		{"eta with slashes", `{"ref":"r","sku":"s","qty":1,"eta":"2011/01/01"}`},
		{"eta month 13", `{"ref":"r","sku":"s","qty":1,"eta":"2011-13-01"}`},
		{"eta February 30", `{"ref":"r","sku":"s","qty":1,"eta":"2011-02-30"}`},
		{"eta with a time", `{"ref":"r","sku":"s","qty":1,"eta":"2011-01-01T10:00:00Z"}`},
	}
	for _, c := range batchCases {
		cases = append(cases, tc{c.name, "POST", "/add_batch", c.body, 400})
	}

	// /allocate and /deallocate take the same order line.
	lineCases := []struct {
		name string
		body string
	}{
		{"orderid missing", `{"sku":"` + sku + `","qty":1}`},
		{"sku missing", `{"orderid":"o","qty":1}`},
		{"qty missing", `{"orderid":"o","sku":"` + sku + `"}`},
		{"orderid null", `{"orderid":null,"sku":"` + sku + `","qty":1}`},
		{"orderid empty", `{"orderid":"","sku":"` + sku + `","qty":1}`},
		{"orderid blank", `{"orderid":" \t","sku":"` + sku + `","qty":1}`},
		{"sku empty", `{"orderid":"o","sku":"","qty":1}`},
		{"orderid too long", `{"orderid":"` + long + `","sku":"` + sku + `","qty":1}`},
		{"orderid a number", `{"orderid":7,"sku":"` + sku + `","qty":1}`},
		{"sku an array", `{"orderid":"o","sku":["` + sku + `"],"qty":1}`},
		{"qty a string", `{"orderid":"o","sku":"` + sku + `","qty":"1"}`},
		{"qty a fraction", `{"orderid":"o","sku":"` + sku + `","qty":0.5}`},
		{"qty too big", `{"orderid":"o","sku":"` + sku + `","qty":99999999999999999999}`},
		{"qty zero", `{"orderid":"o","sku":"` + sku + `","qty":0}`},
		{"qty negative", `{"orderid":"o","sku":"` + sku + `","qty":-1}`},
	}
	for _, path := range []string{"/allocate", "/deallocate"} {
		for _, c := range lineCases {
			cases = append(cases, tc{c.name, "POST", path, c.body, 400})
		}
	}

	changeCases := []struct {
		name string
		body string
	}{
		{"batchref missing", `{"qty":1}`},
		{"qty missing", `{"batchref":"` + ref + `"}`},
		{"batchref null", `{"batchref":null,"qty":1}`},
		{"qty null", `{"batchref":"` + ref + `","qty":null}`},
		{"batchref empty", `{"batchref":"","qty":1}`},
		{"batchref too long", `{"batchref":"` + long + `","qty":1}`},
		{"batchref a number", `{"batchref":1,"qty":1}`},
		{"qty a string", `{"batchref":"` + ref + `","qty":"5"}`},
		{"qty a fraction", `{"batchref":"` + ref + `","qty":2.5}`},
		{"qty negative", `{"batchref":"` + ref + `","qty":-1}`},
	}
	for _, c := range changeCases {
		cases = append(cases, tc{c.name, "POST", "/change_batch_quantity", c.body, 400})
	}

	// Routes and methods.
	cases = append(cases,
		tc{"wrong method", "GET", "/add_batch", nil, 405},
		tc{"wrong method", "PUT", "/allocate", `{}`, 405},
		tc{"wrong method", "GET", "/change_batch_quantity", nil, 405},
		tc{"wrong method", "DELETE", "/deallocate", nil, 405},
		tc{"wrong method", "POST", "/allocations/" + order, `{}`, 405},
		tc{"wrong method", "DELETE", "/allocations/" + order, nil, 405},
		tc{"wrong method", "POST", "/healthz", nil, 405},
		tc{"unknown path", "GET", "/nope", nil, 404},
		tc{"unknown path", "POST", "/nope", `{}`, 404},
		tc{"unknown path", "POST", "/add_batch/extra", `{}`, 404},
		tc{"unknown path", "POST", "/Allocate", `{}`, 404},
		tc{"unknown path", "GET", "/allocations", nil, 404},
		tc{"unknown path", "GET", "/allocations/", nil, 404},
		tc{"unknown path", "GET", "/allocations/" + order + "/more", nil, 404},
		tc{"unknown batch", "GET", "/batches/" + uniq("nope"), nil, 404},
		tc{"batch ref too long", "GET", "/batches/" + long, nil, 400},
		tc{"unknown product", "GET", "/products/" + uniq("nope"), nil, 404},
		tc{"sku too long", "GET", "/products/" + long, nil, 400},
		tc{"no sku", "GET", "/products/", nil, 404},
		tc{"wrong method", "POST", "/batches/" + ref, `{}`, 405},
	)

	for _, c := range cases {
		t.Run(c.method+" "+c.path+" "+c.name, func(t *testing.T) {
			r, err := s.request(t.Context(), c.method, c.path, c.body, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			if r.Status >= 500 {
				t.Fatalf("%s: server error on bad input", r)
			}
			if r.Status != c.want {
				t.Errorf("%s: want %d", r, c.want)
			}
			if !r.isJSON() {
				t.Errorf("%s: Content-Type %q, want application/json", r, r.Header.Get("Content-Type"))
			}
			if msg, ok := r.message(); !ok || strings.TrimSpace(msg) == "" {
				t.Errorf("%s: want a JSON body with a non-empty \"message\"", r)
			}
		})
	}

	// Nothing above changed the state: the one line is still allocated and
	// 99 units are left.
	if rows := s.allocations(t, order); len(rows) != 1 || rows[0] != (allocation{sku, ref}) {
		t.Errorf("GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, ref)
	}
	if got := s.remaining(t, uniq("drain"), sku, 100); got != 99 {
		t.Errorf("%d units of %s left, want 99", got, sku)
	}
}
