package e2e

// The production setup: "stockflow serve allocation" on PostgreSQL and
// Redis pub/sub, as separate processes (the book's chapter 11), with the
// outbox, dead letters, several instances, the CLI and metrics. Each test
// has a database and a redis-server of its own.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

// TestChangeBatchQuantityOverRedis is the book's end-to-end test of
// chapter 11, across processes: a change_batch_quantity message published
// on Redis shrinks a batch, and the line it can no longer hold is
// reallocated, which line_allocated tells.
func TestChangeBatchQuantityOverRedis(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	s := startService(t, db, rds.URL)
	c := redisClient(t, rds, "")

	sku, early, later, order := uniq("sku"), uniq("early"), uniq("later"), uniq("order")
	s.addBatch(t, early, sku, 10, "2011-01-01")
	s.addBatch(t, later, sku, 10, "2011-01-02")
	sub := subscribe(t, c, chanLineAllocated)
	if got := s.mustAllocate(t, order, sku, 10); got != early {
		t.Fatalf("allocated to %q, want the earlier batch %q", got, early)
	}
	// The allocation itself is published first.
	first := sub.allocations(t, 5*time.Second, ordersSeen(order))
	if m := first[len(first)-1]; m.BatchRef != early {
		t.Fatalf("line_allocated for the HTTP allocation: %+v, want batchref %s", m, early)
	}

	waitSubscribed(t, c, chanChangeBatchQuantity, 10*time.Second)
	publish(t, c, chanChangeBatchQuantity, changeBatchQuantity(early, 5))

	deadline := time.Now().Add(3 * time.Second)
	var raw string
	for raw == "" {
		m, ok := sub.receive(time.Until(deadline))
		if !ok {
			t.Fatalf("no line_allocated message for %s within 3s of change_batch_quantity", order)
		}
		var probe struct {
			OrderID string `json:"orderid"`
		}
		if json.Unmarshal([]byte(m.Payload), &probe) == nil && probe.OrderID == order {
			raw = m.Payload
		}
	}
	fields := map[string]any{}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		t.Fatalf("line_allocated %s: %v", raw, err)
	}
	for _, name := range []string{"orderid", "sku", "batchref", "message_id", "correlation_id", "causation_id", "occurred_at"} {
		if v, ok := fields[name].(string); !ok || v == "" {
			t.Errorf("line_allocated %s: %q is %T %v, want a non-empty string", raw, name, fields[name], fields[name])
		}
	}
	if n, ok := fields["qty"].(json.Number); !ok {
		t.Errorf("line_allocated %s: qty is %T, want a number", raw, fields["qty"])
	} else if q, err := n.Int64(); err != nil || q != 10 {
		t.Errorf("line_allocated %s: qty %s, want the integer 10", raw, n)
	}
	if fields["orderid"] != order || fields["sku"] != sku || fields["batchref"] != later {
		t.Errorf("line_allocated %s: want orderid %s, sku %s, batchref %s (the later batch)", raw, order, sku, later)
	}
	if at, _ := fields["occurred_at"].(string); at != "" {
		if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
			t.Errorf("line_allocated %s: occurred_at: %v", raw, err)
		}
	}
	if fields["message_id"] == fields["causation_id"] {
		t.Errorf("line_allocated %s: the message is its own cause", raw)
	}
	if fields["correlation_id"] == first[len(first)-1].CorrelationID {
		t.Errorf("line_allocated %s: the reallocation shares the HTTP request's correlation id", raw)
	}
	// The read model is kept by an event handler of the allocation service
	// itself, which may finish a moment after the relay published.
	if err := eventually(5*time.Second, func() error {
		if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, later}}) {
			return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, later)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestEveryAllocationPublished: each allocation made over HTTP is published
// on line_allocated, with its batch.
func TestEveryAllocationPublished(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	s := startService(t, db, rds.URL)
	c := redisClient(t, rds, "")
	sub := subscribe(t, c, chanLineAllocated)

	sku, small, big := uniq("sku"), uniq("small"), uniq("big")
	s.addBatch(t, small, sku, 3, "2011-01-01")
	s.addBatch(t, big, sku, 100, "2011-01-02")
	want := map[string]string{} // order -> batch
	var orders []string
	for i := range 5 {
		o := uniq("order")
		orders = append(orders, o)
		want[o] = s.mustAllocate(t, o, sku, 1)
		if wantRef := map[bool]string{true: small, false: big}[i < 3]; want[o] != wantRef {
			t.Fatalf("order %d went to %s, want %s", i, want[o], wantRef)
		}
	}
	got := sub.allocations(t, 5*time.Second, ordersSeen(orders...))
	ids := map[string]string{} // message id -> order
	for _, m := range got {
		ref, ok := want[m.OrderID]
		if !ok {
			t.Errorf("unexpected line_allocated %+v", m)
			continue
		}
		if m.BatchRef != ref || m.SKU != sku || m.Qty != 1 {
			t.Errorf("line_allocated %+v, want batchref %s, sku %s, qty 1", m, ref, sku)
		}
		if m.MessageID == "" {
			t.Errorf("line_allocated %+v has no message_id", m)
		} else if o, dup := ids[m.MessageID]; dup && o != m.OrderID {
			t.Errorf("orders %s and %s share message_id %s", o, m.OrderID, m.MessageID)
		}
		ids[m.MessageID] = m.OrderID
	}
	// In the order of the allocations (one sku).
	if firsts := firstOrders(got); !slices.Equal(firsts, orders) {
		t.Errorf("line_allocated orders %v, want %v", firsts, orders)
	}
}

// firstOrders returns the order ids of msgs, each at its first occurrence.
func firstOrders(msgs []lineAllocated) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range msgs {
		if !seen[m.OrderID] {
			seen[m.OrderID] = true
			out = append(out, m.OrderID)
		}
	}
	return out
}

// TestRedisOutage kills Redis: allocations go on (201), their events wait
// in the outbox, and once Redis is back they are all published, in order;
// the consumer subscribes again by itself.
func TestRedisOutage(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	s := startService(t, db, rds.URL)
	c := redisClient(t, rds, "")
	sub := subscribe(t, c, chanLineAllocated)

	sku, stock := uniq("sku"), uniq("stock")
	s.addBatch(t, stock, sku, 1000, "")
	// A batch for the consumer check afterwards.
	sku2, early, later, held := uniq("sku"), uniq("early"), uniq("later"), uniq("order")
	s.addBatch(t, early, sku2, 10, "2011-01-01")
	s.addBatch(t, later, sku2, 10, "2011-01-02")
	if got := s.mustAllocate(t, held, sku2, 10); got != early {
		t.Fatalf("allocated to %q, want %q", got, early)
	}
	var before []string
	for range 3 {
		o := uniq("before")
		s.mustAllocate(t, o, sku, 1)
		before = append(before, o)
	}
	sub.allocations(t, 5*time.Second, ordersSeen(append(before, held)...))
	waitSubscribed(t, c, chanChangeBatchQuantity, 10*time.Second)

	rds.Kill()
	sub.close()
	const n = 12
	var during []string
	for range n {
		o := uniq("during")
		if got := s.mustAllocate(t, o, sku, 1); got != stock {
			t.Fatalf("allocated to %q, want %q", got, stock)
		}
		during = append(during, o)
	}
	// The events wait in the outbox.
	if depth, ok := metric(s.metrics(t), `stockflow_outbox_depth{service="allocation"}`); !ok || depth < n {
		t.Errorf("stockflow_outbox_depth during the outage = %v (found: %v), want at least %d", depth, ok, n)
	}
	if rows := s.allocations(t, during[n-1]); !slices.Equal(rows, []allocation{{sku, stock}}) {
		t.Errorf("GET /allocations/%s during the outage = %v", during[n-1], rows)
	}

	// Back, with a password at first, so that the relay cannot publish
	// before this test listens again (pub/sub keeps nothing for absent
	// subscribers); the password is then removed.
	const password = "outage-test"
	rds.Restart(t, "--requirepass", password)
	c2 := redisClient(t, rds, password)
	sub2 := subscribe(t, c2, chanLineAllocated)
	if err := c2.ConfigSet(t.Context(), "requirepass", "").Err(); err != nil {
		t.Fatalf("CONFIG SET requirepass: %v", err)
	}
	got := sub2.allocations(t, 10*time.Second, ordersSeen(during...))
	var firsts []string
	for _, o := range firstOrders(got) {
		if strings.HasPrefix(o, "during-") {
			firsts = append(firsts, o)
		}
	}
	if !slices.Equal(firsts, during) {
		t.Errorf("after the outage line_allocated came in the order\n%v\nwant the allocations' order\n%v", firsts, during)
	}
	for _, m := range got {
		if strings.HasPrefix(m.OrderID, "during-") && (m.BatchRef != stock || m.SKU != sku || m.Qty != 1) {
			t.Errorf("line_allocated %+v, want sku %s, batchref %s, qty 1", m, sku, stock)
		}
	}
	if err := eventually(5*time.Second, func() error {
		depth, ok := metric(s.metrics(t), `stockflow_outbox_depth{service="allocation"}`)
		if !ok || depth != 0 {
			return fmt.Errorf("stockflow_outbox_depth = %v (found: %v)", depth, ok)
		}
		return nil
	}); err != nil {
		t.Errorf("after the outage: %v, want 0", err)
	}

	// The consumer subscribed again by itself.
	waitSubscribed(t, c2, chanChangeBatchQuantity, 10*time.Second)
	publish(t, c2, chanChangeBatchQuantity, changeBatchQuantity(early, 5))
	re := sub2.allocations(t, 5*time.Second, func(got []lineAllocated) bool {
		return slices.ContainsFunc(got, func(m lineAllocated) bool { return m.OrderID == held })
	})
	if m := re[len(re)-1]; m.BatchRef != later {
		t.Errorf("reallocation after the outage: %+v, want batchref %s", m, later)
	}
	// The read model follows the events, a moment after they are relayed.
	if err := eventually(5*time.Second, func() error {
		if rows := s.allocations(t, held); !slices.Equal(rows, []allocation{{sku2, later}}) {
			return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", held, rows, sku2, later)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// And allocations are published right away again.
	after := uniq("after")
	s.mustAllocate(t, after, sku, 1)
	sub2.allocations(t, 5*time.Second, ordersSeen(after))
}

// deadLetter is a line of "stockflow dead-letters".
type deadLetter struct {
	ID            int64      `json:"id"`
	Consumer      string     `json:"consumer"`
	Channel       string     `json:"channel"`
	MessageID     string     `json:"message_id"`
	Key           string     `json:"key"`
	CorrelationID string     `json:"correlation_id"`
	CausationID   string     `json:"causation_id"`
	OccurredAt    *time.Time `json:"occurred_at"`
	Payload       string     `json:"payload"`
	Reason        string     `json:"reason"`
	Attempts      int        `json:"attempts"`
	FirstFailedAt *time.Time `json:"first_failed_at"`
	FailedAt      time.Time  `json:"failed_at"`
	Fingerprint   string     `json:"fingerprint"`
	Group         string     `json:"group"`
	State         string     `json:"state"`
	Failures      int        `json:"failures"`
	Retried       int        `json:"retried"`
	RetriedAt     *time.Time `json:"retried_at"`
	ArchivedAt    *time.Time `json:"archived_at"`
	ArchivedBy    string     `json:"archived_by"`
}

// TestPoisonMessages publishes each kind of bad change_batch_quantity,
// each followed by a good one whose effect shows that the consumer went
// on; the bad ones are listed by "stockflow dead-letters".
func TestPoisonMessages(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	s := startService(t, db, rds.URL)
	c := redisClient(t, rds, "")

	// A batch the poison messages name, which must keep its 10.
	target, targetSKU := uniq("target"), uniq("sku")
	s.addBatch(t, target, targetSKU, 10, "")
	poison := []struct{ name, payload string }{
		{"malformed JSON", `{"batchref": "` + target + `", "qty": `},
		{"qty of the wrong type", `{"batchref": "` + target + `", "qty": "5"}`},
		{"batchref of the wrong type", `{"batchref": 12, "qty": 5}`},
		{"missing batchref", `{"qty": 5}`},
		{"missing qty", `{"batchref": "` + target + `"}`},
		{"negative qty", `{"batchref": "` + target + `", "qty": -1}`},
		{"unknown batchref", `{"batchref": "` + uniq("no-such-batch") + `", "qty": 5}`},
		{"JSON array", `[{"batchref": "` + target + `", "qty": 5}]`},
		{"empty payload", ``},
		{"null", `null`},
	}
	waitSubscribed(t, c, chanChangeBatchQuantity, 10*time.Second)
	for _, p := range poison {
		// A line in an early batch, which a good message then shrinks.
		sku, early, later, order := uniq("sku"), uniq("early"), uniq("later"), uniq("order")
		s.addBatch(t, early, sku, 10, "2011-01-01")
		s.addBatch(t, later, sku, 10, "2011-01-02")
		if got := s.mustAllocate(t, order, sku, 10); got != early {
			t.Fatalf("allocated to %q, want %q", got, early)
		}
		publish(t, c, chanChangeBatchQuantity, p.payload)
		publish(t, c, chanChangeBatchQuantity, changeBatchQuantity(early, 5))
		err := eventually(5*time.Second, func() error {
			if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, later}}) {
				return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, later)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("after the poison message %q (%s), the good one that followed had no effect: %v", p.payload, p.name, err)
		}
	}
	// The poison left the target batch alone: all 10 can go.
	if got := s.mustAllocate(t, uniq("order"), targetSKU, 10); got != target {
		t.Errorf("allocated to %q, want %q", got, target)
	}
	expect(t, s.allocate(t, uniq("order"), targetSKU, 1), http.StatusConflict)

	letters := listDeadLetters(t, "--db", db)
	if len(letters) != len(poison) {
		t.Errorf("stockflow dead-letters listed %d, want %d (one per poison message): %+v", len(letters), len(poison), letters)
	}
	for _, p := range poison {
		var found []deadLetter
		for _, d := range letters {
			if d.Payload == p.payload {
				found = append(found, d)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s %q: %d dead letters with its payload, want 1", p.name, p.payload, len(found))
			continue
		}
		d := found[0]
		if d.Reason == "" || d.Consumer != "allocation" || d.Channel != chanChangeBatchQuantity || d.FailedAt.IsZero() {
			t.Errorf("%s: dead letter %+v, want consumer allocation, channel %s, a reason and a time", p.name, d, chanChangeBatchQuantity)
		}
		t.Logf("%s: %s", p.name, d.Reason)
	}
	// Newest first.
	for i := 1; i < len(letters); i++ {
		if letters[i].FailedAt.After(letters[i-1].FailedAt) {
			t.Errorf("dead letters not newest first: %v before %v", letters[i-1].FailedAt, letters[i].FailedAt)
		}
	}
}

// TestTwoInstances runs two "serve allocation" processes on one database
// and one Redis, and has them race for a batch of 50.
func TestTwoInstances(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	a := startService(t, db, rds.URL)
	b := startService(t, db, rds.URL)
	c := redisClient(t, rds, "")
	sub := subscribe(t, c, chanLineAllocated)

	const stock, workers, perWorker = 50, 8, 13 // 2*8*13 = 208 requests
	sku, ref := uniq("sku"), uniq("batch")
	a.addBatch(t, ref, sku, stock, "")

	type outcome struct {
		order  string
		status int
		body   string
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for _, s := range []*server{a, b} {
		for range workers {
			wg.Go(func() {
				for range perWorker {
					order := uniq("order")
					r, err := s.request(t.Context(), http.MethodPost, "/allocate", lineBody(order, sku, 1), nil)
					mu.Lock()
					if err != nil {
						outcomes = append(outcomes, outcome{order, -1, err.Error()})
					} else {
						outcomes = append(outcomes, outcome{order, r.Status, string(bytes.TrimSpace(r.Body))})
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()

	var created []string
	counts := map[int]int{}
	for _, o := range outcomes {
		counts[o.status]++
		switch o.status {
		case http.StatusCreated:
			created = append(created, o.order)
			if !strings.Contains(o.body, ref) {
				t.Errorf("201 for %s with body %s, want batchref %s", o.order, o.body, ref)
			}
		case http.StatusConflict:
		default:
			t.Errorf("allocating %s: %d %s, want 201 or 409", o.order, o.status, o.body)
		}
	}
	t.Logf("answers: %v", counts)
	if len(created) != stock {
		t.Errorf("%d allocations succeeded, want exactly %d", len(created), stock)
	}
	for i, o := range created {
		s := []*server{a, b}[i%2]
		if rows := s.allocations(t, o); !slices.Equal(rows, []allocation{{sku, ref}}) {
			t.Errorf("GET /allocations/%s on %s = %v, want [{%s %s}]", o, s.Addr, rows, sku, ref)
		}
	}
	expect(t, b.allocate(t, uniq("order"), sku, 1), http.StatusConflict)

	// Each allocation is published, by whichever instance relays.
	got := sub.allocations(t, 10*time.Second, ordersSeen(created...))
	for _, m := range got {
		if !slices.Contains(created, m.OrderID) {
			t.Errorf("line_allocated for an order that got no 201: %+v", m)
		}
	}
}

// TestMigrateAndEnvironment: "stockflow migrate" is idempotent; the
// STOCKFLOW_* variables are honoured, and the flags win.
func TestMigrateAndEnvironment(t *testing.T) {
	db := newDatabase(t)
	const bad = "postgres://nobody@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2"

	for i := range 2 {
		if res := runCLI(t, nil, "migrate", "--db", db); res.Code != 0 {
			t.Fatalf("stockflow migrate (run %d) exited %d: %s", i+1, res.Code, res.Stderr)
		}
	}
	if res := runCLI(t, []string{"STOCKFLOW_DB=" + db}, "migrate"); res.Code != 0 {
		t.Fatalf("STOCKFLOW_DB=... stockflow migrate exited %d: %s", res.Code, res.Stderr)
	}
	if res := runCLI(t, []string{"STOCKFLOW_DB=" + db}, "migrate", "--db", bad); res.Code == 0 {
		t.Errorf("stockflow migrate --db <unreachable> exited 0, want failure (the flag wins over STOCKFLOW_DB)")
	}
	if res := runCLI(t, nil, "migrate"); res.Code != 2 {
		t.Errorf("stockflow migrate without a database exited %d, want 2 (usage): %s", res.Code, res.Stderr)
	}

	// The environment points to a bad URL, the flag to the good one.
	sku, ref, order := uniq("sku"), uniq("batch"), uniq("order")
	s := startWith(t, options{
		Args: []string{"serve", "allocation", "--db", db},
		Env:  []string{"STOCKFLOW_DB=" + bad},
	})
	if err := eventually(5*time.Second, func() error {
		if !strings.Contains(s.logs.String(), `store="postgres://`) {
			return fmt.Errorf("serve --db: logs do not name the postgres store:\n%s", s.logs.String())
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	s.addBatch(t, ref, sku, 10, "")
	if got := s.mustAllocate(t, order, sku, 4); got != ref {
		t.Fatalf("allocated to %q, want %q", got, ref)
	}
	s.stop()

	// The environment alone: STOCKFLOW_DB and STOCKFLOW_HTTP.
	s = startWith(t, options{
		Args:        []string{"serve", "allocation"},
		Env:         []string{"STOCKFLOW_DB=" + db},
		HTTPFromEnv: true,
	})
	if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, ref}}) {
		t.Errorf("STOCKFLOW_DB: GET /allocations/%s = %v, want the allocation made with --db", order, rows)
	}
	if got := s.mustAllocate(t, uniq("order"), sku, 6); got != ref {
		t.Errorf("allocated to %q, want %q", got, ref)
	}
	expect(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict)

	// A bad database in the flag, a good one in the environment: the flag
	// wins, and the service does not start.
	res := runCLI(t, []string{"STOCKFLOW_DB=" + db}, "serve", "allocation", "--db", bad, "--http", testenv.FreeAddr(t))
	if res.Code == 0 {
		t.Errorf("serve --db <unreachable> exited 0, want failure:\n%s", res.Stderr)
	}
}

// TestMetrics: GET /metrics serves the Prometheus text format, with the
// HTTP and outbox metrics.
func TestMetrics(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	s := startService(t, db, rds.URL)
	sku, ref := uniq("sku"), uniq("batch")
	s.addBatch(t, ref, sku, 10, "")
	s.mustAllocate(t, uniq("order"), sku, 1)

	r := s.do(t, http.MethodGet, "/metrics", nil)
	expect(t, r, http.StatusOK)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		t.Errorf("GET /metrics Content-Type %q, want text/plain", r.Header.Get("Content-Type"))
	}
	body := string(r.Body)
	for _, name := range []string{"stockflow_http_requests_total", "stockflow_outbox_depth"} {
		if !strings.Contains(body, "# TYPE "+name+" ") {
			t.Errorf("GET /metrics has no %s", name)
		}
	}
	if v, ok := metric(body, `stockflow_http_requests_total{route="POST /allocate",status="201"}`); !ok || v < 1 {
		t.Errorf("stockflow_http_requests_total of POST /allocate 201 = %v (found: %v), want at least 1", v, ok)
	}
	if _, ok := metric(body, `stockflow_outbox_depth{service="allocation"}`); !ok {
		t.Errorf("GET /metrics has no stockflow_outbox_depth sample for the allocation service")
	}
}

// TestGracefulStopWithRedis: SIGTERM stops a service on the Redis broker
// promptly, with exit code 0, as it does one on the default broker.
func TestGracefulStopWithRedis(t *testing.T) {
	db, rds := newDatabase(t), testenv.StartRedis(t)
	s := startService(t, db, rds.URL)
	waitSubscribed(t, redisClient(t, rds, ""), chanChangeBatchQuantity, 10*time.Second)
	s.stopped.Store(true)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM (%v), want 0", code, s.waitErr)
		}
		return
	case <-time.After(5 * time.Second):
	}
	s.kill()
	t.Error("still running 5s after SIGTERM")
}

// listDeadLetters runs stockflow dead-letters with args and returns what
// it lists, checking each line is a dead letter and nothing more.
func listDeadLetters(t *testing.T, args ...string) []deadLetter {
	t.Helper()
	res := runCLI(t, nil, append([]string{"dead-letters", "list", "--state", "all"}, args...)...)
	if res.Code != 0 {
		t.Fatalf("stockflow dead-letters %v exited %d: %s", args, res.Code, res.Stderr)
	}
	var letters []deadLetter
	dec := json.NewDecoder(strings.NewReader(res.Stdout))
	dec.DisallowUnknownFields()
	for dec.More() {
		var d deadLetter
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("stockflow dead-letters printed %q: %v", res.Stdout, err)
		}
		letters = append(letters, d)
	}
	return letters
}
