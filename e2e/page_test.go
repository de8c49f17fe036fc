package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stockflow/stockflow/internal/testenv"
)

// browser starts Debian's chromium, headless, and returns a tab of it;
// the test skips where there is none, and fails under
// STOCKFLOW_REQUIRE_SERVICES=1.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if testenv.Required() {
			t.Fatal("no chromium on PATH, and STOCKFLOW_REQUIRE_SERVICES=1: install it (apt-get install chromium)")
		}
		t.Skip("no chromium on PATH: the page's browser test needs it (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// Start the browser now, so that a broken one says so here.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// run runs steps in the tab, within a timeout.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(steps...))
}

// get runs action in the tab, within a timeout, and returns its value.
func get[T any](t *testing.T, ctx context.Context, what string, action chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, action)
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, text)
	}
	return v
}

// text returns the text of the element selector finds.
func text(t *testing.T, ctx context.Context, selector string) string {
	t.Helper()
	return get(t, ctx, "reading "+selector, chromedp.Evaluate[string](`document.querySelector(`+strconv.Quote(selector)+`).innerText`))
}

// arrow is an arrow of the sequence diagram.
type arrow struct {
	Message string `json:"message"`
	Channel string `json:"channel"`
	From    string `json:"from"`
	To      string `json:"to"`
	Outcome string `json:"outcome"`
}

func (a arrow) String() string { return a.From + " -" + a.Channel + "-> " + a.To + " " + a.Outcome }

// diagram reads the lifelines and arrows of the sequence diagram.
func diagram(t *testing.T, ctx context.Context) (lifelines []string, arrows []arrow) {
	t.Helper()
	lifelines = get(t, ctx, "reading the lifelines",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll('#sequence g.lifeline')].map(g => g.dataset.service)`))
	arrows = get(t, ctx, "reading the arrows",
		chromedp.Evaluate[[]arrow](`[...document.querySelectorAll('#sequence g.arrow')].map(g => ({message: g.dataset.message,
			channel: g.dataset.channel, from: g.dataset.from, to: g.dataset.to, outcome: g.dataset.outcome}))`))
	return lifelines, arrows
}

func hasArrow(arrows []arrow, channel, from, to, outcome string) bool {
	return slices.ContainsFunc(arrows, func(a arrow) bool {
		return a.Channel == channel && a.From == from && a.To == to && a.Outcome == outcome
	})
}

// search types term in the page's search box.
func search(t *testing.T, ctx context.Context, term string) {
	t.Helper()
	run(t, ctx, "searching "+term,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('q').value = ''`),
		chromedp.SendKeys(chromedp.ID("q"), term+"\r"))
}

// The page: an order's journey drawn as a sequence diagram, a new order's
// messages appearing as they happen, a message's payload in the panel, and
// the service map against the contract; in a real browser.
func TestPage(t *testing.T) {
	ctx := browser(t)
	sh := startShopInOneProcess(t)
	srv := sh.at("allocation")

	// An empty journal says what to do.
	run(t, ctx, "opening the page", chromedp.Navigate(srv.Base+"/"), chromedp.WaitVisible(chromedp.ID("flows-empty")))
	if empty := text(t, ctx, "#flows-empty"); !strings.Contains(empty, "curl examples") {
		t.Errorf("the empty list says %q", empty)
	}

	id := traceOrder(t, sh)
	awaitTrace(t, srv.Addr, id, journey...)

	// The order's journey.
	search(t, ctx, id)
	run(t, ctx, "drawing the order", chromedp.WaitVisible(chromedp.CSS(`#sequence g.arrow[data-channel="customer_became_vip"]`)))
	lifelines, arrows := diagram(t, ctx)
	if want := []string{"outside", "orders", "allocation", "warehouse", "crm", "notifications"}; !slices.Equal(lifelines, want) {
		t.Errorf("lifelines %v, want %v", lifelines, want)
	}
	for _, want := range []arrow{
		{Channel: "cart_item_added", From: "orders", To: "allocation", Outcome: "handled"},
		{Channel: "line_allocated", From: "allocation", To: "orders", Outcome: "handled"},
		{Channel: "stock_reported", From: "warehouse", To: "allocation", Outcome: "handled"},
		{Channel: "line_deallocated", From: "allocation", To: "orders", Outcome: "handled"},
		{Channel: "order_placed", From: "orders", To: "warehouse", Outcome: "handled"},
		{Channel: "order_placed", From: "orders", To: "crm", Outcome: "handled"},
		{Channel: "goods_dispatched", From: "warehouse", To: "allocation", Outcome: "handled"},
		{Channel: "customer_became_vip", From: "crm", To: "notifications", Outcome: "handled"},
	} {
		if !hasArrow(arrows, want.Channel, want.From, want.To, want.Outcome) {
			t.Errorf("no arrow %s among %v", want, arrows)
		}
	}
	if title := text(t, ctx, "#flow-title"); title != "Order "+id {
		t.Errorf("title %q", title)
	}

	// A new order, followed live: its messages appear without a reload.
	o2 := sh.newOrder(t, "tina")
	sh.addItem(t, o2, "TR-LAMP", 1)
	sh.waitStatus(t, o2, "reserved")
	await(t, "the journal has the new order", func() string {
		if r := srv.do(t, http.MethodGet, "/flows?order="+o2, nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "line_allocated") {
			return r.String()
		}
		return ""
	})
	search(t, ctx, o2)
	run(t, ctx, "drawing the new order", chromedp.WaitVisible(chromedp.CSS(`#sequence g.arrow[data-channel="line_allocated"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)),
		chromedp.Evaluate[chromedp.Void](`window.stillHere = true`))
	expect(t, sh.at("orders").post(t, "/orders/"+o2+"/place", nil), http.StatusOK)
	run(t, ctx, "the placing appearing live",
		chromedp.WaitVisible(chromedp.CSS(`#sequence g.arrow[data-channel="order_placed"][data-to="warehouse"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#sequence g.arrow[data-channel="goods_dispatched"][data-to="orders"]`)))
	if !get(t, ctx, "checking the page was not reloaded", chromedp.Evaluate[bool](`window.stillHere === true`)) {
		t.Error("the page was reloaded to show the new messages")
	}

	// A click on an arrow shows its message.
	run(t, ctx, "clicking order_placed", chromedp.Click(chromedp.CSS(`#sequence g.arrow[data-channel="order_placed"][data-to="warehouse"] .hit`)),
		chromedp.WaitVisible(chromedp.CSS(`#panel pre[data-field="payload"]`)))
	payload, panelTitle, ids := text(t, ctx, `#panel pre[data-field="payload"]`), text(t, ctx, "#panel-title"), text(t, ctx, "#panel .ids")
	if panelTitle != "order_placed" || !strings.Contains(payload, `"orderid": "`+o2+`"`) || !strings.Contains(payload, `"TR-LAMP"`) {
		t.Errorf("the panel of order_placed: %q with payload\n%s", panelTitle, payload)
	}
	_, arrows = diagram(t, ctx)
	msgID := arrows[slices.IndexFunc(arrows, func(a arrow) bool { return a.Channel == "order_placed" })].Message
	if !strings.Contains(ids, msgID) || !strings.Contains(ids, "correlation") || !strings.Contains(ids, "causation") {
		t.Errorf("the panel's ids: %q, want message %s", ids, msgID)
	}

	// The first order again, a line of it open: the picture of the README.
	search(t, ctx, id)
	run(t, ctx, "drawing the order again", chromedp.WaitVisible(chromedp.CSS(`#sequence g.arrow[data-channel="customer_became_vip"]`)),
		chromedp.Click(chromedp.CSS(`#sequence g.arrow[data-channel="line_deallocated"] .hit`)),
		chromedp.WaitVisible(chromedp.CSS(`#panel pre[data-field="payload"]`)))
	screenshot(t, ctx, "page.png")

	// The service map: the contract's services, the traffic seen, and the
	// declared channels no one used.
	run(t, ctx, "opening the service map", chromedp.Click(chromedp.ID("tab-map")),
		chromedp.WaitVisible(chromedp.CSS(`#service-map g.node[data-service="allocation"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#map-diffs li[data-kind="unused_channel"]`)))
	nodes := get(t, ctx, "reading the map's services",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll('#service-map g.node')].map(g => g.dataset.service)`))
	seen := get(t, ctx, "reading the map's traffic",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll('#service-map g.edge.seen')].map(g => g.dataset.from + '>' + g.dataset.to)`))
	unused := get(t, ctx, "reading the differences",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll('#map-diffs li[data-kind="unused_channel"]')].map(li => li.dataset.channel)`))
	for _, s := range []string{"outside", "orders", "allocation", "warehouse", "crm", "notifications"} {
		if !slices.Contains(nodes, s) {
			t.Errorf("no %s on the map: %v", s, nodes)
		}
	}
	for _, e := range []string{"orders>allocation", "allocation>orders", "orders>warehouse", "crm>notifications"} {
		if !slices.Contains(seen, e) {
			t.Errorf("no traffic %s on the map: %v", e, seen)
		}
	}
	if !slices.Contains(unused, "allocate") || slices.Contains(unused, "order_placed") {
		t.Errorf("declared channels never seen: %v", unused)
	}
	screenshot(t, ctx, "page-map.png")
}

// The page behind authentication asks for a key, keeps it for the tab,
// and sends it.
func TestPageAsksForKey(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	key := addKey(t, file, "operator", "ops")
	srv := startWith(t, options{Args: []string{"up", "--data", dir, "--auth-keys", file}, Dir: dir})
	run(t, ctx, "opening the page", chromedp.Navigate(srv.Base+"/"),
		chromedp.WaitVisible(chromedp.ID("key-dialog")))
	reason := text(t, ctx, "#key-reason")
	run(t, ctx, "giving the key",
		chromedp.SendKeys(chromedp.ID("key-input"), key+"\r"),
		chromedp.WaitNotVisible(chromedp.ID("key-dialog")),
		chromedp.WaitVisible(chromedp.ID("flows-empty")))
	if !strings.Contains(reason, "credential") || !strings.Contains(reason, "ops") {
		t.Errorf("the dialog says %q", reason)
	}
	stored := get(t, ctx, "reading the stored key", chromedp.Evaluate[string](`sessionStorage.getItem('stockflow.key')`))
	empty := text(t, ctx, "#flows-empty")
	if stored != key || !strings.Contains(empty, "curl examples") {
		t.Errorf("after the key: stored %v, the list says %q", stored == key, empty)
	}
}

// screenshot saves the page as name in the directory
// STOCKFLOW_PAGE_SCREENSHOTS names (docs/ keeps the README's), or in the
// test's temporary directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	run(t, ctx, "letting the page settle", chromedp.Sleep(1500*time.Millisecond))
	png := get(t, ctx, "taking a screenshot", chromedp.CaptureScreenshot())
	dir := os.Getenv("STOCKFLOW_PAGE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
