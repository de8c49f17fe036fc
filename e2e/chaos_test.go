package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stockflow/stockflow/internal/shoptest"
)

// The shop under chaos on real brokers: the five services as separate
// processes on a durable broker, driven by a random shop workload, with
// services killed (SIGKILL) or stopped (SIGTERM) and started again along
// the way; once the messages drain, every service must agree about stock
// (internal/shoptest). By default it runs a short load on Redis Streams
// and SQLite. STOCKFLOW_CHAOS_BROKERS=1 runs a longer one on every durable
// broker, on SQLite and on PostgreSQL (the README's command);
// STOCKFLOW_CHAOS_SEED and STOCKFLOW_CHAOS_OPS replay and size a run.
func TestShopUnderChaosOnBrokers(t *testing.T) {
	type run struct {
		broker string
		start  func(*testing.T) *testBroker
		pg     bool
	}
	runs := []run{{"redis-streams", startRedisStreamsBroker, false}}
	ops, seed := 25, uint64(time.Now().UnixNano())
	if os.Getenv("STOCKFLOW_CHAOS_BROKERS") == "1" {
		ops = 150
		runs = nil
		for _, pg := range []bool{false, true} {
			runs = append(runs, run{"redis-streams", startRedisStreamsBroker, pg}, run{"nats", startNATSBroker, pg}, run{"kafka", startKafkaBroker, pg})
		}
	}
	if s := os.Getenv("STOCKFLOW_CHAOS_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("STOCKFLOW_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	for _, r := range runs {
		store := "sqlite"
		if r.pg {
			store = "postgres"
		}
		t.Run(r.broker+"/"+store, func(t *testing.T) {
			b := r.start(t)
			// Carts expire while the workload runs (durable timers through
			// kills): the stock they free goes to waiting lines.
			extra := []string{"--reservation-ttl", "3s"}
			if r.pg {
				extra = append(extra, "--db", newDatabase(t))
			}
			sh := &chaosShop{shop: &shop{procs: map[string]*server{}, dir: t.TempDir(), b: b}, t: t, extra: extra}
			for _, name := range shopServices {
				if err := sh.start(name); err != nil {
					t.Fatal(err)
				}
			}
			s := shoptest.Shop{URL: sh.url, Client: &http.Client{Timeout: 10 * time.Second}}
			ctx := t.Context()
			h, err := shoptest.Run(ctx, s, shoptest.Workload{Seed: seed, Ops: ops, Workers: 4, DisruptEvery: 30, Disrupt: sh.disrupt})
			t.Logf("seed %d: %s; %d services killed, %d stopped", seed, h.Summary(), sh.killed, sh.stopped)
			if err != nil {
				t.Fatalf("seed %d: the workload failed: %v", seed, err)
			}
			problems, err := shoptest.Agree(ctx, s, h, 90*time.Second)
			if err != nil {
				t.Fatalf("seed %d: checking: %v", seed, err)
			}
			for _, p := range problems {
				t.Errorf("seed %d: %s", seed, p)
			}
			if len(problems) > 0 {
				sh.explain(t, problems)
				t.Logf("replay: STOCKFLOW_CHAOS_BROKERS=1 STOCKFLOW_CHAOS_SEED=%d STOCKFLOW_CHAOS_OPS=%d go test -count=1 -run 'TestShopUnderChaosOnBrokers/%s/%s' ./e2e", seed, ops, r.broker, store)
			}
		})
	}
}

// chaosShop is a shop whose services the workload kills and restarts.
type chaosShop struct {
	*shop
	t     *testing.T
	extra []string

	mu              sync.Mutex
	killed, stopped int
}

// start starts a service; it may be called from any goroutine.
func (sh *chaosShop) start(name string) error {
	args := append([]string{"serve", name, "--data", sh.dir, "--broker", sh.b.URL}, sh.extra...)
	var err error
	for range 3 { // the free port may be taken before the binary listens
		var s *server
		if s, err = launchWith(sh.t, options{Args: args, Dir: sh.dir, KillAtCleanup: true}); err == nil {
			sh.mu.Lock()
			sh.procs[name] = s
			sh.mu.Unlock()
			sh.joined(s)
			return nil
		}
	}
	return fmt.Errorf("starting %s: %w", name, err)
}

func (sh *chaosShop) url(name string) string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.procs[name].Base
}

// joined waits, on Kafka, until a service's consumer was given its
// partitions (its log says so). kfake, the tests' Kafka, kept a member
// whose process died while it joined the group, holding its partitions,
// for over 90 s with a 10 s session, where a Kafka broker drops it once
// its session times out:
// the chaos does not kill a member there, so that what is checked is
// stockflow, not kfake. Other brokers need no wait.
func (sh *chaosShop) joined(s *server) {
	if sh.b.kind != "kafka" {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(s.logs.String(), "kafka partitions assigned") {
		time.Sleep(20 * time.Millisecond)
	}
}

// disrupt kills or stops a random service and starts it again.
func (sh *chaosShop) disrupt(ctx context.Context, rng *rand.Rand) error {
	name := shopServices[rng.IntN(len(shopServices))]
	sh.mu.Lock()
	s := sh.procs[name]
	kill := rng.IntN(2) == 0
	if kill {
		sh.killed++
	} else {
		sh.stopped++
	}
	sh.mu.Unlock()
	if kill {
		s.kill()
	} else {
		s.stop()
	}
	if d := time.Duration(rng.IntN(500)) * time.Millisecond; d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	return sh.start(name)
}

// explain logs what the broker holds of the orders the problems name, read
// from the oldest message by a group of the test's own: whether what a
// service missed was ever published.
func (sh *chaosShop) explain(t *testing.T, problems []string) {
	ids := map[string]bool{}
	for _, p := range problems {
		if m := orderIDs.FindStringSubmatch(p); m != nil && len(ids) < 3 {
			ids[m[1]] = true
		}
	}
	if sh.b.kind == "kafka" {
		sh.explainKafka(t)
	}
	w := sh.b.watch(t, "line_allocated", "line_deallocated", "out_of_stock", "goods_dispatched", "order_cancelled", "cart_item_added", "order_placed")
	time.Sleep(5 * time.Second)
	for _, d := range w.snapshot() {
		for id := range ids {
			if strings.Contains(string(d.Payload), id) {
				t.Logf("on the broker: %s key %s id %s: %s", d.Channel, d.Key, d.ID, d.Payload)
			}
		}
	}
}

// orderIDs finds the order a problem names first.
var orderIDs = regexp.MustCompile(`order ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`)

// explainKafka logs each service's consumer group as the broker sees it:
// its state, members, and every partition it lags on, with its owner.
func (sh *chaosShop) explainKafka(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(strings.TrimPrefix(sh.b.URL, "kafka://"), ",")...))
	if err != nil {
		t.Logf("kafka admin: %v", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lags, err := kadm.NewClient(cl).Lag(ctx, shopServices...)
	if err != nil {
		t.Logf("kafka lag: %v", err)
		return
	}
	for _, g := range lags.Sorted() {
		t.Logf("group %s: state %s, %d members, lag %d, err %v", g.Group, g.State, len(g.Members), g.Lag.Total(), g.Error())
		for _, l := range g.Lag.Sorted() {
			if l.Lag == 0 {
				continue
			}
			owner := "(none)"
			if l.Member != nil {
				owner = l.Member.MemberID
			}
			t.Logf("  %s/%d: committed %d, end %d, lag %d, owner %s, err %v", l.Topic, l.Partition, l.Commit.At, l.End.Offset, l.Lag, owner, l.Err)
		}
	}
}
