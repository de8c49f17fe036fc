package openapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/docs"
	"github.com/stockflow/stockflow/internal/openapi"
)

func load(t *testing.T) *openapi.Document {
	t.Helper()
	d, err := openapi.Load(docs.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The document keeps its conventions, so that a client generated from it
// can rely on them: every operation named, summarized and tagged with its
// service; every answer carries the correlation id; every
// error is an Error; a secured route documents 401 and 403, an open one
// neither; a route that reads a body documents 400 and 413; a 503 of a
// service says when to try again.
func TestDocumentConventions(t *testing.T) {
	t.Parallel()
	d := load(t)
	ids := map[string]string{}
	for _, p := range d.Patterns() {
		op := d.Operation(p)
		if op.OperationID == "" || op.Summary == "" || len(op.Tags) != 1 {
			t.Errorf("%s: want an operationId, a summary and one tag (its service)", p)
		}
		if prev, ok := ids[op.OperationID]; ok {
			t.Errorf("%s and %s share operationId %s", prev, p, op.OperationID)
		}
		ids[op.OperationID] = p
		roles, open := d.Roles(p)
		has := func(code string) bool { return op.Responses.Value(code) != nil }
		if secured := len(roles) > 0; secured != (has("401") && has("403")) {
			t.Errorf("%s: roles %v, but 401 documented %v and 403 %v: a route with roles documents both, one without neither", p, roles, has("401"), has("403"))
		}
		if len(roles) == 0 && !open {
			t.Errorf("%s: neither open nor callable by any role", p)
		}
		if op.RequestBody != nil && !(has("400") && has("413")) {
			t.Errorf("%s reads a body: want 400 and 413 documented", p)
		}
		for code, r := range op.Responses.Map() {
			if r.Value.Headers["X-Correlation-ID"] == nil {
				t.Errorf("%s %s: no X-Correlation-ID header", p, code)
			}
			if code >= "400" && p != "GET /readyz" {
				mt := r.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Error" {
					t.Errorf("%s %s: an error answers an Error", p, code)
				}
			}
			if code == "503" && p != "GET /readyz" && r.Value.Headers["Retry-After"] == nil {
				t.Errorf("%s 503: no Retry-After header", p)
			}
			if len(r.Value.Content) == 0 {
				t.Errorf("%s %s: no body described", p, code)
			}
		}
	}
}

func validator(t *testing.T) *openapi.Validator {
	t.Helper()
	v, err := openapi.NewValidator(docs.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}, "X-Correlation-Id": {"c1"}}

// The validator passes what the document describes, and names the route,
// the status and the complaint of what it does not.
func TestValidator(t *testing.T) {
	t.Parallel()
	v := validator(t)
	line := `{"orderid": "o1", "sku": "LAMP", "qty": 1}`
	tests := []struct {
		name string
		e    openapi.Exchange
		want string // "" when it matches; else a part of the error
	}{
		{"allocated", openapi.Exchange{Method: "POST", Target: "/allocate", Header: jsonHeader, Body: []byte(line),
			Status: 201, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"batchref": "b1"}`)}, ""},
		{"a member the document does not declare", openapi.Exchange{Method: "POST", Target: "/allocate", Header: jsonHeader, Body: []byte(line),
			Status: 201, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"batchref": "b1", "extra": 1}`)}, "extra"},
		{"a status not documented", openapi.Exchange{Method: "POST", Target: "/allocate", Header: jsonHeader, Body: []byte(line),
			Status: 418, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "teapot"}`)}, "status 418"},
		{"no correlation id", openapi.Exchange{Method: "POST", Target: "/allocate", Header: jsonHeader, Body: []byte(line),
			Status: 201, ResponseHeader: http.Header{"Content-Type": {"application/json"}}, ResponseBody: []byte(`{"batchref": "b1"}`)}, "X-Correlation-ID"},
		{"bad request refused", openapi.Exchange{Method: "POST", Target: "/allocate", Header: jsonHeader, Body: []byte(`{"sku": "LAMP", "qty": 0}`),
			Status: 400, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "missing field orderid"}`)}, ""},
		{"bad request accepted", openapi.Exchange{Method: "POST", Target: "/allocate", Header: jsonHeader, Body: []byte(`{"sku": "LAMP", "qty": 0}`),
			Status: 201, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"batchref": "b1"}`)}, "refuses the request"},
		{"an error without a message", openapi.Exchange{Method: "GET", Target: "/batches/b1",
			Status: 404, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"error": "no"}`)}, "message"},
		{"query parameter", openapi.Exchange{Method: "GET", Target: "/orders?limit=x",
			Status: 400, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "limit must be an integer"}`)}, ""},
		{"no route", openapi.Exchange{Method: "GET", Target: "/nope",
			Status: 404, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "No route GET /nope"}`)}, ""},
		{"no route, answered", openapi.Exchange{Method: "GET", Target: "/nope",
			Status: 200, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "hello"}`)}, "router answers 404"},
		{"another method", openapi.Exchange{Method: "DELETE", Target: "/allocate",
			Status: 405, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "Method DELETE not allowed on /allocate"}`)}, ""},
		{"another method, 404", openapi.Exchange{Method: "DELETE", Target: "/allocate",
			Status: 404, ResponseHeader: jsonHeader, ResponseBody: []byte(`{"message": "no"}`)}, "router answers 405"},
		{"a path not clean", openapi.Exchange{Method: "POST", Target: "//allocate",
			Status: 307, ResponseHeader: http.Header{"Location": {"/allocate"}}}, ""},
		{"metrics", openapi.Exchange{Method: "GET", Target: "/metrics",
			Status: 200, ResponseHeader: http.Header{"Content-Type": {"text/plain; version=0.0.4; charset=utf-8"}, "X-Correlation-Id": {"c"}}, ResponseBody: []byte("# HELP x\n")}, ""},
	}
	for _, tt := range tests {
		err := v.Check(context.Background(), tt.e)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && err == nil:
			t.Errorf("%s: %s passed, want a mismatch naming %q", tt.name, tt.e, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), tt.want):
			t.Errorf("%s: %v, want it to name %q", tt.name, err, tt.want)
		case err != nil && !strings.Contains(err.Error(), tt.e.String()):
			t.Errorf("%s: %v does not name the exchange", tt.name, err)
		}
	}
	c := v.Coverage()
	if n := c.Seen["POST /allocate"][201]; n == nil || n.Answers != 4 || n.ValidRequests != 3 {
		t.Errorf("coverage of POST /allocate 201: %+v", n)
	}
	if !strings.Contains(c.String(), "GET /customers") || !strings.Contains(c.String(), openapi.Unrouted) {
		t.Errorf("the coverage table lacks routes:\n%s", c)
	}
}
