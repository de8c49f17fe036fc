package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

// traceOrder drives an order through the journey the flows service must
// show whole: the cart and its reservation, damage a warehouse worker
// reports on its batch (a flow started elsewhere) moving its line, the
// placing, the dispatch, and the VIP promotion the order earns, with its
// e-mail. It returns the order's id.
func traceOrder(t *testing.T, sh *shop) string {
	t.Helper()
	alloc, wh := sh.at("allocation"), sh.at("warehouse")
	alloc.addBatch(t, "tr-b1", "TR-LAMP", 4, "")
	alloc.addBatch(t, "tr-b2", "TR-LAMP", 10, "")
	await(t, "the warehouse knows batch tr-b1", func() string {
		if r := wh.do(t, http.MethodGet, "/warehouse/batches/tr-b1", nil); r.Status != http.StatusOK {
			return r.String()
		}
		return ""
	})
	// Two orders placed before: this one is the customer's third.
	sh.at("allocation").addBatch(t, "tr-mug", "TR-MUG", 2, "")
	for range 2 {
		id := sh.newOrder(t, "tina")
		sh.addItem(t, id, "TR-MUG", 1)
		sh.waitStatus(t, id, "reserved")
		expect(t, sh.at("orders").post(t, "/orders/"+id+"/place", nil), http.StatusOK)
		sh.waitStatus(t, id, "dispatched")
	}
	id := sh.newOrder(t, "tina")
	sh.addItem(t, id, "TR-LAMP", 3)
	o := sh.waitStatus(t, id, "reserved")
	if o.Lines[0].BatchRef != "tr-b1" {
		t.Fatalf("line in %s, want tr-b1", o.Lines[0].BatchRef)
	}
	expect(t, wh.post(t, "/warehouse/batches/tr-b1/damage", map[string]any{"qty": 2, "note": "roof leak"}), http.StatusAccepted)
	await(t, "the line moved to tr-b2", func() string {
		if o := sh.order(t, id); o.Lines[0].BatchRef != "tr-b2" || o.Lines[0].State != "reserved" {
			return "line " + o.Lines[0].State + " in " + o.Lines[0].BatchRef
		}
		return ""
	})
	expect(t, sh.at("orders").post(t, "/orders/"+id+"/place", nil), http.StatusOK)
	sh.waitStatus(t, id, "dispatched")
	await(t, "tina a VIP", func() string {
		if c, _ := sh.customer(t, "tina"); !c.VIP {
			return "not yet"
		}
		return ""
	})
	return id
}

// awaitTrace waits until stockflow trace of id, against the flows service
// at url, shows each of chains, each in its order (a chain is a message,
// then what it caused; siblings may come in any order), and returns it.
func awaitTrace(t *testing.T, url, id string, chains ...[]string) string {
	t.Helper()
	var out string
	await(t, "the trace of "+id, func() string {
		res := runCLI(t, nil, "trace", "--url", "http://"+url, id)
		out = res.Stdout + res.Stderr
		for _, chain := range chains {
			rest := out
			for _, w := range chain {
				i := strings.Index(rest, w)
				if i < 0 {
					return "no " + w + " after " + chain[0] + " yet in:\n" + out
				}
				rest = rest[i+len(w):]
			}
		}
		return ""
	})
	return out
}

// The order's whole journey, in causal order: each message under the one
// that caused it, with who raised it and what each handler did.
var journey = [][]string{
	{"orders → cart_item_added", "✓ allocation.reserve_cart_item  handled", "allocation → line_allocated", "batch tr-b1", "✓ orders.line_allocated  handled"},
	// The damage, a flow started in the warehouse, moved the line.
	{"warehouse → stock_reported", "batch tr-b1", "✓ allocation.report_stock  handled", "allocation → line_deallocated", "orders.line_deallocated"},
	{"warehouse → stock_reported", "allocation → line_allocated", "batch tr-b2"},
	{"orders → order_placed", "✓ warehouse.order_placed  handled", "warehouse → goods_dispatched", "✓ allocation.dispatch_order#TR-LAMP  handled"},
	{"orders → order_placed", "✓ crm.order_placed  handled", "crm → customer_became_vip", "customer tina", "✓ notifications.customer_became_vip  handled"},
}

func TestTraceInOneProcess(t *testing.T) {
	sh := startShopInOneProcess(t)
	id := traceOrder(t, sh)
	url := sh.at("allocation").Addr
	out := awaitTrace(t, url, id, journey...)
	t.Logf("stockflow trace %s:\n%s", id, out)

	// The same as JSON, and over HTTP.
	res := runCLI(t, nil, "trace", "--url", "http://"+url, "--json", id)
	var nodes []struct {
		Channel  string            `json:"channel"`
		Children []json.RawMessage `json:"children"`
	}
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &nodes) != nil || len(nodes) == 0 {
		t.Fatalf("trace --json: exit %d, %s %s", res.Code, res.Stdout, res.Stderr)
	}
	r := sh.at("allocation").do(t, http.MethodGet, "/flows?order="+id, nil)
	expect(t, r, http.StatusOK)

	// Bad input: a clear message, never a 5xx.
	for _, c := range []struct {
		path string
		want int
	}{
		{"/flows", 400},
		{"/flows?order=a&batch=b", 400},
		{"/flows?colour=red", 400},
		{"/flows?order=" + id + "&limit=0", 400},
		{"/flows?order=nope", 404},
		{"/flows?message=" + strings.Repeat("x", 300), 400},
	} {
		expectMessageContains(t, sh.at("allocation").do(t, http.MethodGet, c.path, nil), c.want, "")
	}
	if res := runCLI(t, nil, "trace", "--url", "http://"+url, "no-such-thing"); res.Code == 0 || !strings.Contains(res.Stderr, "no order, flow, message or batch no-such-thing") {
		t.Errorf("trace of an unknown id: exit %d, %q", res.Code, res.Stderr)
	}
	if res := runCLI(t, nil, "trace", "--url", "http://"+url); res.Code != 2 || !strings.Contains(res.Stderr, "one ID") {
		t.Errorf("trace without an id: exit %d, %q", res.Code, res.Stderr)
	}
}

// As separate processes on Redis Streams, with the flows service stopped
// while the order goes its way: started again, it catches up from the
// broker, and the trace is whole.
func TestTraceAsSeparateProcessesCatchesUp(t *testing.T) {
	sh := startShopInProcesses(t, startRedisStreamsBroker(t))
	sh.startService(t, "flows")
	sh.at("flows").stop()
	id := traceOrder(t, sh)
	time.Sleep(200 * time.Millisecond)
	sh.startService(t, "flows")
	out := awaitTrace(t, sh.at("flows").Addr, id, journey...)
	t.Logf("stockflow trace %s:\n%s", id, out)
}

// A message a service gives up on shows in its trace with the reason; a
// message delivered twice shows the second as a duplicate, skipped; and
// trace --follow prints what joins a flow as it happens.
func TestTraceShowsFailuresAndDuplicates(t *testing.T) {
	b := startRedisStreamsBroker(t)
	sh := startShopInProcesses(t, b)
	sh.startService(t, "flows")
	flowsAt := sh.at("flows").Addr
	sh.at("allocation").addBatch(t, "td-b1", "TD-LAMP", 10, "")

	bad := b.publish(t, "change_batch_quantity", "td-b1", map[string]any{"batchref": "td-b1", "qty": -1})
	out := awaitTrace(t, flowsAt, bad, []string{"outside → change_batch_quantity", "batch td-b1", "!! DEAD-LETTERED",
		"✗ allocation  DEAD-LETTERED after 1 attempts: qty must not be negative"})
	t.Logf("trace of a dead letter:\n%s", out)

	twice := envelope("allocate", "TD-LAMP", map[string]any{"orderid": "td-o1", "sku": "TD-LAMP", "qty": 2})
	b.publishAll(t, twice)
	awaitTrace(t, flowsAt, twice.ID, []string{"outside → allocate", "✓ allocation/allocate  handled"})

	// --follow, from before the duplicate comes.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "trace", "--url", "http://"+flowsAt, "--follow", twice.ID)
	cmd.Env = environ()
	var follow testenv.Buffer
	cmd.Stdout, cmd.Stderr = &follow, &follow
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	await(t, "trace --follow printing the flow", func() string {
		if !strings.Contains(follow.String(), "✓ allocation/allocate  handled") {
			return follow.String()
		}
		return ""
	})
	b.publishAll(t, twice) // again: the inbox skips it
	await(t, "trace --follow printing the duplicate", func() string {
		if !strings.Contains(follow.String(), "↺ allocation/allocate  duplicate, skipped") {
			return follow.String()
		}
		return ""
	})
}
