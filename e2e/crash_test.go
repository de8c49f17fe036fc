package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// The crash test's load: crashSKUs skus, each with one batch of
// crashStock units, and crashPerSKU allocate messages of one unit per sku.
const (
	crashSKUs   = 20
	crashPerSKU = 500
	crashStock  = 250
	crashKills  = 5 // at least this many SIGKILLs while messages are pending
)

// TestCrashUnderLoad kills the service with SIGKILL again and again while
// it consumes 10,000 allocate messages from a durable broker, and checks
// that in the end every message was applied exactly once, in order per
// sku.
//
// The service runs on SQLite in a temporary directory. Each of 20 skus
// gets one batch of 250 units over HTTP; then 10,000 allocate messages
// (500 per sku, order ids o-<sku>-<seq>, qty 1, Key = the sku) are
// published through the test's own transport, in 50 publishes of 200
// messages (10 consecutive sequence numbers of every sku each, so that
// skus interleave), from a goroutine that starts right after the batches
// are added: the messages are published while the consumer runs (and
// while it is dead). The service is killed (SIGKILL) at a random moment
// after each start (0.5-2s after it, or earlier once the events of a
// random 15-35% of the orders still pending came out, so that a fast
// consumer too is killed with messages pending) and started again on the
// same data directory and broker, until at least 5 kills happened while
// messages were still pending (at most 10 kills); after each kill the test tells the broker
// that the dead process is gone (testBroker.afterCrash: on Redis Streams
// its leases are deleted, on Kafka its group members leave), as the
// broker would find out by itself 10s (Redis lease) or 45s (Kafka session
// timeout) later, which would not fit the test's time budget. On NATS
// there is no such shortcut: a message the dead process was handling is
// handed again only after AckWait (30s), which holds its partition (one
// message in flight per partition) meanwhile; the test is slower there.
//
// After the last start the test waits (90s at most) until the events of
// all 10,000 messages came out: a group of the test's own watches
// line_allocated and out_of_stock, which name the order. Then:
//   - each order has exactly one event, with one message id (an id seen
//     again is a redelivery by the outbox relay, which consumers drop): a
//     message applied twice would have raised a second event (an
//     out_of_stock one does; an allocation applied again raises none, but
//     takes no stock either, see below);
//   - seq < 250 got line_allocated, in the sku's batch; seq >= 250 got
//     out_of_stock: per-sku order was kept;
//   - over HTTP, GET /allocations/o-<sku>-<seq> answers 200 with the
//     sku's batch for every seq < 250 and 404 for every seq >= 250 (all
//     10,000 orders are checked, 32 requests at a time);
//   - every batch is full: one more allocation gets 409;
//   - "stockflow dead-letters" lists nothing.
//
// The test logs the consumer's throughput: per run (the consumed-messages
// counter read just before each kill), in the last run, and overall.
func TestCrashUnderLoad(t *testing.T) {
	for _, kind := range brokerKinds(true) {
		t.Run(kind.name, func(t *testing.T) { crashUnderLoad(t, kind) })
	}
}

func crashUnderLoad(t *testing.T, kind brokerKind) {
	began := time.Now()
	b := kind.start(t)
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	t.Logf("random seed %d", seed)

	w := b.watch(t, chanLineAllocated, chanOutOfStock)
	launch := func() *server {
		return startWith(t, options{Args: []string{"serve", "allocation", "--data", dir, "--broker", b.URL}, Dir: dir, KillAtCleanup: true})
	}
	s := launch()

	skus := make([]string, crashSKUs)
	refs := map[string]string{}
	for i := range skus {
		skus[i] = uniq("crash")
		refs[skus[i]] = uniq("batch")
		s.addBatch(t, refs[skus[i]], skus[i], crashStock, "")
	}
	order := func(sku string, seq int) string { return fmt.Sprintf("o-%s-%d", sku, seq) }
	total := crashSKUs * crashPerSKU

	// The publisher.
	const perPublish = 10 // sequence numbers of every sku per publish
	published := make(chan error, 1)
	pctx, stopPublishing := context.WithCancel(context.Background())
	t.Cleanup(stopPublishing) // before the transport is closed
	publishStart := time.Now()
	var publishedIn time.Duration
	go func() {
		for first := 0; first < crashPerSKU; first += perPublish {
			envs := make([]messaging.Envelope, 0, perPublish*crashSKUs)
			for seq := first; seq < first+perPublish; seq++ {
				for _, sku := range skus {
					envs = append(envs, envelope(chanAllocate, sku, map[string]any{"orderid": order(sku, seq), "sku": sku, "qty": 1}))
				}
			}
			if err := b.tryPublish(pctx, envs...); err != nil {
				published <- fmt.Errorf("publishing seq %d-%d: %w", first, first+perPublish-1, err)
				return
			}
		}
		publishedIn = time.Since(publishStart)
		published <- nil
	}()
	publishDone := false
	checkPublished := func(wait time.Duration) {
		t.Helper()
		if publishDone {
			return
		}
		select {
		case err := <-published:
			if err != nil {
				t.Fatal(err)
			}
			publishDone = true
			t.Logf("published %d messages in %v", total, publishedIn.Round(time.Millisecond))
		case <-time.After(wait):
		}
	}

	tl := newEventTally()
	kills, loaded := 0, 0
	for loaded < crashKills && kills < 10 {
		if kills > 0 {
			s = launch()
		}
		runStart := time.Now()
		// A random moment: 0.5-2s after the start, or earlier, once the
		// events of a random 15-35% of the orders still pending are out,
		// so that a fast consumer is killed with messages pending too.
		delay := time.Duration(500+rng.IntN(1500)) * time.Millisecond
		pending := total - tl.update(w)
		target := total - pending + max(1, pending*(15+rng.IntN(21))/100)
		for time.Since(runStart) < delay && tl.update(w) < target {
			time.Sleep(5 * time.Millisecond)
		}
		consumed := -1.0
		if r, err := s.request(t.Context(), http.MethodGet, "/metrics", nil, nil); err == nil && r.Status == http.StatusOK {
			consumed = sumMetric(string(r.Body), "stockflow_messages_consumed_total")
		}
		seen := tl.update(w)
		s.kill()
		ran := time.Since(runStart)
		b.afterCrash(t)
		kills++
		if seen < total {
			loaded++
		}
		t.Logf("kill %d after %v: consumed %.0f messages in this run (%.0f/s); events of %d/%d orders out", kills, ran.Round(time.Millisecond), consumed, consumed/ran.Seconds(), seen, total)
		checkPublished(0)
		if t.Failed() {
			t.FailNow()
		}
	}
	if loaded < crashKills {
		t.Logf("only %d of the %d kills came while messages were pending: the consumer was faster than the kills", loaded, kills)
	}

	s = serveOn(t, dir, b)
	lastStart := time.Now()
	seenAtStart := tl.update(w)
	checkPublished(30 * time.Second)
	if !publishDone {
		t.Fatal("publishing the 10,000 messages took more than 30s after the kills")
	}
	deadline := time.Now().Add(90 * time.Second)
	for tl.update(w) < total {
		if time.Now().After(deadline) {
			t.Fatalf("after 90s, events of only %d of the %d orders came out (last run consumed %.0f messages)",
				tl.update(w), total, sumMetric(s.metrics(t), "stockflow_messages_consumed_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	lastRun := time.Since(lastStart)
	lastConsumed := sumMetric(s.metrics(t), "stockflow_messages_consumed_total")
	t.Logf("after %d kills the last run brought the events of the remaining %d orders out in %v; it consumed %.0f messages (%.0f/s); %d messages in %v overall since publishing began (%.0f/s, crashes included)",
		kills, total-seenAtStart, lastRun.Round(time.Millisecond), lastConsumed, lastConsumed/lastRun.Seconds(),
		total, time.Since(publishStart).Round(time.Millisecond), float64(total)/time.Since(publishStart).Seconds())

	// One event per order: in its sku's batch for the first 250, out of
	// stock for the others.
	for _, sku := range skus {
		for seq := range crashPerSKU {
			o := order(sku, seq)
			ev := tl.events[o]
			if len(ev) != 1 {
				t.Errorf("order %s: %d events with distinct ids, want 1: %v", o, len(ev), ev)
				continue
			}
			for _, e := range ev {
				want := chanLineAllocated
				if seq >= crashStock {
					want = chanOutOfStock
				}
				if e.channel != want || (want == chanLineAllocated && e.batchref != refs[sku]) {
					t.Errorf("order %s (seq %d): %s (batch %q), want %s in %s", o, seq, e.channel, e.batchref, want, refs[sku])
				}
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Over HTTP: every order.
	type check struct {
		order, sku string
		want       int
	}
	var checks []check
	for _, sku := range skus {
		for seq := range crashPerSKU {
			want := http.StatusOK
			if seq >= crashStock {
				want = http.StatusNotFound
			}
			checks = append(checks, check{order(sku, seq), sku, want})
		}
	}
	verify := func(c check) error {
		r, err := s.request(t.Context(), http.MethodGet, "/allocations/"+c.order, nil, nil)
		if err != nil {
			return err
		}
		if r.Status != c.want {
			return fmt.Errorf("%s: want %d", r, c.want)
		}
		if c.want == http.StatusOK {
			var rows []allocation
			if err := json.Unmarshal(r.Body, &rows); err != nil || !slices.Equal(rows, []allocation{{c.sku, refs[c.sku]}}) {
				return fmt.Errorf("%s: want [{%s %s}]", r, c.sku, refs[c.sku])
			}
		}
		return nil
	}
	httpStart := time.Now()
	var mu sync.Mutex
	var failed []check
	var firstErrs []string
	var wg sync.WaitGroup
	next := make(chan check)
	for range 32 {
		wg.Go(func() {
			for c := range next {
				if err := verify(c); err != nil {
					mu.Lock()
					failed = append(failed, c)
					firstErrs = append(firstErrs, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	for _, c := range checks {
		next <- c
	}
	close(next)
	wg.Wait()
	t.Logf("checked %d orders over HTTP in %v", len(checks), time.Since(httpStart).Round(time.Millisecond))
	if len(failed) > 0 {
		// The allocations view may lag its events for a moment.
		time.Sleep(2 * time.Second)
		var still []string
		for _, c := range failed {
			if err := verify(c); err != nil {
				still = append(still, err.Error())
			}
		}
		if len(still) > 0 {
			slices.Sort(still)
			t.Fatalf("%d of %d orders wrong over HTTP, e.g.:\n%s", len(still), len(checks), strings.Join(still[:min(20, len(still))], "\n"))
		}
		t.Logf("%d orders were right only on a second look (the view lagged), e.g. %s", len(failed), firstErrs[0])
	}
	// Every batch is full.
	for _, sku := range skus {
		expect(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict)
	}
	if dead := listDeadLetters(t, "--data", dir); len(dead) != 0 {
		t.Errorf("stockflow dead-letters listed %+v, want none", dead)
	}
	t.Logf("%s: %d kills, %v in all", kind.name, kills, time.Since(began).Round(time.Millisecond))
}

// eventTally indexes the line_allocated and out_of_stock events a watcher
// was handed, by order and message id.
type eventTally struct {
	n      int                             // deliveries indexed
	events map[string]map[string]eventSeen // order -> message id -> event
}

type eventSeen struct {
	channel, batchref string
}

func newEventTally() *eventTally {
	return &eventTally{events: map[string]map[string]eventSeen{}}
}

// update indexes what w was handed since the last update, and returns how
// many orders have events.
func (tl *eventTally) update(w *watcher) int {
	for _, d := range w.since(tl.n) {
		tl.n++
		o := field(d, "orderid")
		if o == "" {
			continue
		}
		if tl.events[o] == nil {
			tl.events[o] = map[string]eventSeen{}
		}
		tl.events[o][d.ID] = eventSeen{d.Channel, field(d, "batchref")}
	}
	return len(tl.events)
}
