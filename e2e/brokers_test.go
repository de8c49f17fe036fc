package e2e

// The book's chapter 11 on every broker stockflow speaks, and the helpers
// of the broker tests (crash_test.go, deadletters_test.go, replay_test.go):
// a broker of the test's own (a private redis-server, an in-process Kafka
// cluster, a private nats-server), the test's own transport on it to
// publish the service's inbound messages and to watch its outbound ones,
// and "stockflow serve allocation --data DIR --broker URL".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/broker"
	"github.com/stockflow/stockflow/internal/transport/kafka"
	"github.com/stockflow/stockflow/internal/transport/nats"
	"github.com/stockflow/stockflow/internal/transport/redis"
)

// Channels of the allocation service, besides those of services_test.go.
const (
	chanAllocate    = "allocate"
	chanOutOfStock  = "out_of_stock"
	chanDeadLetters = "dead_letters"
)

// brokerKind is a broker the service can run on.
type brokerKind struct {
	name    string
	durable bool // keeps messages for a group that is away
	start   func(t *testing.T) *testBroker
}

// testBroker is a broker of one test's own, with the test's transport on
// it.
type testBroker struct {
	kind string
	URL  string // the service's --broker
	// Transport is the test's own: it publishes the service's inbound
	// messages and watches its outbound ones.
	Transport messaging.Transport
	durable   bool

	redis *testenv.Server // redis:// and redis+streams://
	kafka *kafka.Kafka    // kafka://
	nats  *testenv.Server // nats://
}

// natsSupported reports whether the binary takes nats:// broker URLs.
func natsSupported() bool { return strings.Contains(broker.Schemes, "nats://") }

// brokerKinds lists the brokers; durableOnly leaves pub/sub out.
func brokerKinds(durableOnly bool) []brokerKind {
	kinds := []brokerKind{
		{"redis-pubsub", false, startRedisPubSubBroker},
		{"redis-streams", true, startRedisStreamsBroker},
		{"kafka", true, startKafkaBroker},
		{"nats", true, startNATSBroker},
	}
	if durableOnly {
		kinds = slices.DeleteFunc(kinds, func(k brokerKind) bool { return !k.durable })
	}
	return kinds
}

func startRedisPubSubBroker(t *testing.T) *testBroker {
	t.Helper()
	r := testenv.StartRedis(t)
	tr, err := redis.NewPubSub(r.URL, testenv.Logger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &testBroker{kind: "redis-pubsub", URL: r.URL, Transport: tr, redis: r}
}

func startRedisStreamsBroker(t *testing.T) *testBroker {
	t.Helper()
	r := testenv.StartRedis(t)
	u := "redis+streams://" + r.Addr
	tr, err := redis.NewStreams(u, testenv.Logger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &testBroker{kind: "redis-streams", URL: u, Transport: tr, redis: r, durable: true}
}

// startKafkaBroker runs a one-broker Kafka cluster (kfake) in the test
// process, on a free port.
func startKafkaBroker(t *testing.T) *testBroker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close) // after the transports and the service, cleaned up before it
	addrs := c.ListenAddrs()
	k, err := kafka.New(addrs, testenv.Logger(t, slog.LevelWarn),
		kafka.RetryBackoff(10*time.Millisecond, 200*time.Millisecond),
		kafka.ClientOpts(kgo.HeartbeatInterval(200*time.Millisecond), kgo.MetadataMinAge(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return &testBroker{kind: "kafka", URL: "kafka://" + strings.Join(addrs, ","), Transport: k, kafka: k, durable: true}
}

// startNATSBroker runs a private nats-server with JetStream: the binary
// takes no stream name in its URL, so it uses the default stream, which
// a shared server would mix with other tests'.
func startNATSBroker(t *testing.T) *testBroker {
	t.Helper()
	if !natsSupported() {
		t.Skipf("skipping: the binary takes no nats:// broker (broker.Schemes: %s)", broker.Schemes)
	}
	s := testenv.StartNATS(t)
	tr, err := nats.New(s.URL, testenv.Logger(t, slog.LevelWarn), nats.WithRedeliveryBackoff(20*time.Millisecond, 500*time.Millisecond), nats.WithPollWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &testBroker{kind: "nats", URL: s.URL, Transport: tr, nats: s, durable: true}
}

// publish publishes payload (a string or []byte sent as it is, anything
// else as JSON) on channel with key, through the test's transport, and
// returns the message's id.
func (b *testBroker) publish(t testing.TB, channel, key string, payload any) string {
	t.Helper()
	env := envelope(channel, key, payload)
	b.publishAll(t, env)
	return env.ID
}

// envelope makes a message from outside stockflow.
func envelope(channel, key string, payload any) messaging.Envelope {
	var raw []byte
	switch p := payload.(type) {
	case string:
		raw = []byte(p)
	case []byte:
		raw = p
	default:
		raw, _ = json.Marshal(p)
	}
	id := messaging.NewID()
	return messaging.Envelope{ID: id, Channel: channel, Key: key, CorrelationID: id, OccurredAt: time.Now().UTC(), Payload: raw}
}

// publishAll publishes envs, retrying for 10s on errors.
func (b *testBroker) publishAll(t testing.TB, envs ...messaging.Envelope) {
	t.Helper()
	if err := b.tryPublish(context.Background(), envs...); err != nil {
		t.Fatalf("publishing %d messages on %s: %v", len(envs), b.kind, err)
	}
}

// tryPublish publishes envs, retrying for 10s on errors, or until ctx is
// done.
func (b *testBroker) tryPublish(ctx context.Context, envs ...messaging.Envelope) error {
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = b.Transport.Publish(pctx, envs...)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// waitConsuming waits until the service (s) listens to its inbound
// channels, when the broker forgets what nobody listens to (pub/sub);
// durable brokers keep messages for the group, so there is nothing to
// wait for.
func (b *testBroker) waitConsuming(t testing.TB) {
	t.Helper()
	if b.kind != "redis-pubsub" {
		return
	}
	c := redisClient(t, b.redis, "")
	for _, ch := range []string{chanChangeBatchQuantity, chanAllocate} {
		waitSubscribed(t, c, ch, 10*time.Second)
	}
}

// serveOn starts "stockflow serve allocation" on the SQLite store in dir
// and broker b, with extra flags.
func serveOn(t testing.TB, dir string, b *testBroker, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "allocation", "--data", dir, "--broker", b.URL}, extra...)
	return startWith(t, options{Args: args, Dir: dir})
}

// watcher collects what a consumer group of the test's own is handed.
type watcher struct {
	mu     sync.Mutex
	got    []messaging.Delivery
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan error
}

// watch subscribes the group of the test's own to channels; it stops at
// cleanup. On pub/sub it returns once Redis has the subscription.
func (b *testBroker) watch(t testing.TB, channels ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{wake: make(chan struct{}, 1), cancel: cancel, done: make(chan error, 1)}
	group := testenv.Name("watch")
	go func() {
		w.done <- b.Transport.Subscribe(ctx, group, channels, func(_ context.Context, d messaging.Delivery) error {
			w.mu.Lock()
			w.got = append(w.got, d)
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			t.Errorf("the test's subscription to %v did not stop within 20s", channels)
		}
	})
	if b.kind == "redis-pubsub" {
		c := redisClient(t, b.redis, "")
		for _, ch := range channels {
			waitSubscribed(t, c, ch, 10*time.Second)
		}
	}
	return w
}

// snapshot returns what the group was handed so far.
func (w *watcher) snapshot() []messaging.Delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// len returns how many deliveries the group was handed.
func (w *watcher) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

// since returns the deliveries from the nth on.
func (w *watcher) since(n int) []messaging.Delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got[min(n, len(w.got)):])
}

// waitFor waits until a delivery matches, and returns it; it fails the
// test after timeout.
func (w *watcher) waitFor(t testing.TB, timeout time.Duration, what string, match func(messaging.Delivery) bool) messaging.Delivery {
	t.Helper()
	deadline := time.Now().Add(timeout)
	seen := 0
	for {
		for _, d := range w.since(seen) {
			seen++
			if match(d) {
				return d
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %s within %v; the test's group was handed %d messages", what, timeout, seen)
		}
		select {
		case <-w.wake:
		case <-time.After(min(left, 100*time.Millisecond)):
		}
	}
}

// field returns a string field of a delivery's JSON payload.
func field(d messaging.Delivery, name string) string {
	var m map[string]any
	if json.Unmarshal(d.Payload, &m) != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}

// sumMetric sums the samples of the Prometheus text whose series starts
// with name and has every label of labels ("channel=\"allocate\"").
func sumMetric(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		all := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				all = false
			}
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err == nil && all {
			sum += v
		}
	}
	return sum
}

// afterCrash tells the broker at once what it would find out by itself
// some seconds after the service died (SIGKILL), so that a test can crash
// the service many times within its time budget:
//
//   - Redis Streams: the partition leases of the dead process (LeaseTTL,
//     10s) are deleted, as their expiry would;
//   - Kafka: the dead members of the group "allocation" leave it, as the
//     end of their session (45s, franz-go's default session timeout;
//     stockflow has no setting for it and no static membership) would.
//
// The next process then takes over the partitions, and what the dead one
// had read but not acknowledged, right away. NATS gets no such shortcut
// (its transport is being reworked): what the dead process held comes
// back after its lease and AckWait (30s) lapse, and the tests wait.
func (b *testBroker) afterCrash(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch b.kind {
	case "redis-streams":
		c := redisClient(t, b.redis, "")
		keys, err := c.Keys(ctx, "stockflow:lease:allocation:*").Result()
		if err != nil {
			t.Fatalf("listing the leases: %v", err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Fatalf("deleting the leases: %v", err)
			}
		}
	case "kafka":
		adm := kadm.NewClient(b.kafka.Client())
		groups, err := adm.DescribeGroups(ctx, "allocation")
		if err != nil {
			t.Logf("describing the group allocation: %v", err)
			return
		}
		g, ok := groups["allocation"]
		if !ok || len(g.Members) == 0 {
			return
		}
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group = "allocation"
		for _, m := range g.Members {
			lm := kmsg.NewLeaveGroupRequestMember()
			lm.MemberID = m.MemberID
			req.Members = append(req.Members, lm)
		}
		resp, err := req.RequestWith(ctx, b.kafka.Client())
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
			for _, m := range resp.Members {
				err = errors.Join(err, kerr.ErrorForCode(m.ErrorCode))
			}
		}
		if err != nil {
			t.Logf("making the dead members leave the group: %v", err)
		}
	}
}

// TestChapter11OnEveryBroker is the book's chapter 11 end-to-end test on
// each broker, with the service as a separate process on SQLite: a
// change_batch_quantity message published on the broker shrinks a batch,
// and line_allocated tells that the line it can no longer hold went to
// the later batch. On the durable brokers the service is then stopped, an
// allocate message is published while it is down, and once started again
// on the same data directory it catches up.
func TestChapter11OnEveryBroker(t *testing.T) {
	for _, kind := range brokerKinds(false) {
		t.Run(kind.name, func(t *testing.T) {
			b := kind.start(t)
			dir := t.TempDir()
			s := serveOn(t, dir, b)

			sku, early, later, order := uniq("sku"), uniq("early"), uniq("later"), uniq("order")
			s.addBatch(t, early, sku, 10, "2011-01-01")
			s.addBatch(t, later, sku, 10, "2011-01-02")
			if got := s.mustAllocate(t, order, sku, 10); got != early {
				t.Fatalf("allocated to %q, want the earlier batch %q", got, early)
			}
			w := b.watch(t, chanLineAllocated)
			b.waitConsuming(t)
			cause := b.publish(t, chanChangeBatchQuantity, early, map[string]any{"batchref": early, "qty": 5})

			d := w.waitFor(t, 5*time.Second, "line_allocated for "+order+" in "+later, func(d messaging.Delivery) bool {
				return field(d, "orderid") == order && field(d, "batchref") == later
			})
			if d.Channel != chanLineAllocated || d.ID == "" || d.ID == cause {
				t.Errorf("line_allocated delivery %+v: want channel %s and an id of its own", d.Envelope, chanLineAllocated)
			}
			if d.CausationID == "" {
				t.Errorf("line_allocated %s has no causation id", d.Payload)
			}
			// The read model follows the events a moment after they are
			// relayed (the book's chapter 12: eventually consistent).
			if err := eventually(5*time.Second, func() error {
				if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, later}}) {
					return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, later)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			if !kind.durable {
				return
			}

			// Down: the message waits in the broker for the group.
			sku2, ref2, down := uniq("sku"), uniq("batch"), uniq("o-down")
			s.addBatch(t, ref2, sku2, 10, "")
			s.stop()
			if t.Failed() {
				t.FailNow()
			}
			b.publish(t, chanAllocate, sku2, map[string]any{"orderid": down, "sku": sku2, "qty": 3})
			s = serveOn(t, dir, b)
			err := eventually(10*time.Second, func() error {
				if rows := s.allocations(t, down); !slices.Equal(rows, []allocation{{sku2, ref2}}) {
					return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", down, rows, sku2, ref2)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("the allocate published while the service was down was not applied after its restart: %v", err)
			}
			w.waitFor(t, 5*time.Second, "line_allocated for "+down, func(d messaging.Delivery) bool {
				return field(d, "orderid") == down && field(d, "batchref") == ref2
			})
			// What was there before is still there, and 7 are left.
			if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, later}}) {
				t.Errorf("after the restart GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, later)
			}
			if got := s.mustAllocate(t, uniq("order"), sku2, 7); got != ref2 {
				t.Errorf("allocated to %q, want %q", got, ref2)
			}
			expect(t, s.allocate(t, uniq("order"), sku2, 1), http.StatusConflict)
		})
	}
}
