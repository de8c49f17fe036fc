package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestShopBadInput sends the shop's routes (orders, warehouse, CRM,
// notifications) what they must refuse: each gets a 4xx with a JSON
// {"message": ...}, never a 5xx, and nothing changes.
func TestShopBadInput(t *testing.T) {
	sh := startShopInOneProcess(t)
	s := sh.at("orders")
	s.addBatch(t, "bad-b1", "BAD-LAMP", 10, "")
	id := sh.newOrder(t, "jane")
	sh.addItem(t, id, "BAD-LAMP", 1)
	sh.waitStatus(t, id, "reserved")
	placed := sh.newOrder(t, "jane")
	sh.addItem(t, placed, "BAD-LAMP", 1)
	expect(t, s.post(t, "/orders/"+placed+"/place", nil), http.StatusOK)
	sh.waitStatus(t, placed, "dispatched")

	long := strings.Repeat("x", 256)
	huge := `{"customer":"` + strings.Repeat("x", 1<<20+16) + `"}`
	type tc struct {
		name         string
		method, path string
		body         any
		want         int
	}
	var cases []tc
	for _, path := range []string{"/orders", "/orders/" + id + "/items", "/warehouse/batches/bad-b1/damage", "/warehouse/batches/bad-b1/count"} {
		cases = append(cases,
			tc{"empty body", "POST", path, "", 400},
			tc{"malformed JSON", "POST", path, `{"qty": 1,`, 400},
			tc{"JSON array", "POST", path, `[]`, 400},
			tc{"JSON null", "POST", path, `null`, 400},
			tc{"empty object", "POST", path, `{}`, 400},
			tc{"body over 1 MiB", "POST", path, huge, 413},
		)
	}
	cases = append(cases,
		tc{"customer missing", "POST", "/orders", `{"email":"a@example.com"}`, 400},
		tc{"email missing", "POST", "/orders", `{"customer":"a"}`, 400},
		tc{"customer empty", "POST", "/orders", `{"customer":"","email":"a@example.com"}`, 400},
		tc{"customer too long", "POST", "/orders", `{"customer":"` + long + `","email":"a@example.com"}`, 400},
		tc{"customer a number", "POST", "/orders", `{"customer":5,"email":"a@example.com"}`, 400},
		tc{"customer with a NUL", "POST", "/orders", `{"customer":"a\u0000b","email":"a@example.com"}`, 400},
		tc{"email not an address", "POST", "/orders", `{"customer":"a","email":"nope"}`, 400},

		tc{"sku missing", "POST", "/orders/" + id + "/items", `{"qty":1}`, 400},
		tc{"qty missing", "POST", "/orders/" + id + "/items", `{"sku":"S"}`, 400},
		tc{"qty zero", "POST", "/orders/" + id + "/items", `{"sku":"S","qty":0}`, 400},
		tc{"qty negative", "POST", "/orders/" + id + "/items", `{"sku":"S","qty":-2}`, 400},
		tc{"qty a string", "POST", "/orders/" + id + "/items", `{"sku":"S","qty":"2"}`, 400},
		tc{"qty a fraction", "POST", "/orders/" + id + "/items", `{"sku":"S","qty":1.5}`, 400},
		tc{"sku blank", "POST", "/orders/" + id + "/items", `{"sku":"  ","qty":1}`, 400},
		tc{"sku too long", "POST", "/orders/" + id + "/items", `{"sku":"` + long + `","qty":1}`, 400},
		tc{"sku in the cart already", "POST", "/orders/" + id + "/items", `{"sku":"BAD-LAMP","qty":1}`, 409},
		tc{"unknown order", "POST", "/orders/nope/items", `{"sku":"S","qty":1}`, 404},
		tc{"item for a placed order", "POST", "/orders/" + placed + "/items", `{"sku":"S","qty":1}`, 409},
		tc{"unknown order", "GET", "/orders/nope", nil, 404},
		tc{"order id too long", "GET", "/orders/" + long, nil, 400},
		tc{"place unknown order", "POST", "/orders/nope/place", nil, 404},
		tc{"cancel unknown order", "POST", "/orders/nope/cancel", nil, 404},
		tc{"cancel a dispatched order", "POST", "/orders/" + placed + "/cancel", nil, 409},
		tc{"wrong method", "DELETE", "/orders/" + id, nil, 405},
		tc{"wrong method", "GET", "/orders/" + id + "/place", nil, 405},

		tc{"qty missing", "POST", "/warehouse/batches/bad-b1/damage", `{"note":"x"}`, 400},
		tc{"no damage", "POST", "/warehouse/batches/bad-b1/damage", `{"qty":0}`, 400},
		tc{"negative damage", "POST", "/warehouse/batches/bad-b1/damage", `{"qty":-1}`, 400},
		tc{"more damage than stock", "POST", "/warehouse/batches/bad-b1/damage", `{"qty":1000}`, 409},
		tc{"negative count", "POST", "/warehouse/batches/bad-b1/count", `{"qty":-1}`, 400},
		tc{"note a number", "POST", "/warehouse/batches/bad-b1/count", `{"qty":1,"note":5}`, 400},
		tc{"note too long", "POST", "/warehouse/batches/bad-b1/count", `{"qty":1,"note":"` + strings.Repeat("n", 1001) + `"}`, 400},
		tc{"unknown batch", "POST", "/warehouse/batches/nope/damage", `{"qty":1}`, 404},
		tc{"unknown batch", "GET", "/warehouse/batches/nope", nil, 404},
		tc{"unknown shipment", "GET", "/warehouse/shipments/nope", nil, 404},
		tc{"wrong method", "PUT", "/warehouse/batches/bad-b1/count", `{"qty":1}`, 405},

		tc{"unknown customer", "GET", "/customers/nope", nil, 404},
		tc{"customer id too long", "GET", "/customers/" + long, nil, 400},
		tc{"bad limit", "GET", "/customers?limit=abc", nil, 400},
		tc{"bad vip", "GET", "/customers?vip=maybe", nil, 400},
		tc{"bad limit", "GET", "/notifications?limit=-1", nil, 400},
		tc{"bad limit", "GET", "/notifications?limit=x", nil, 400},
		tc{"unknown notification", "GET", "/notifications/nope", nil, 404},
		tc{"wrong method", "POST", "/notifications", `{}`, 405},
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
			if msg, ok := r.message(); !ok || strings.TrimSpace(msg) == "" || !r.isJSON() {
				t.Errorf("%s: want a JSON body with a non-empty \"message\"", r)
			}
		})
	}

	// Nothing above changed the orders, or the batch (10 - 1 dispatched).
	if o := sh.order(t, id); len(o.Lines) != 1 || o.Status != "reserved" {
		t.Errorf("order %s changed: %+v", id, o)
	}
	var b struct {
		Qty int `json:"qty"`
	}
	wh := sh.at("warehouse").do(t, http.MethodGet, "/warehouse/batches/bad-b1", nil)
	wh.decode(t, &b)
	if b.Qty != 9 {
		t.Errorf("batch bad-b1 at %d units, want 9: %s", b.Qty, wh)
	}
}
