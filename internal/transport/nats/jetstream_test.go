package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/nats"
)

// stream is a stream of a test's own: its name and subject prefix.
type stream struct {
	url    string
	name   string
	prefix string
}

// newStream names a stream for t, deleted at cleanup.
func newStream(t testing.TB, url string) stream {
	t.Helper()
	name := testenv.Name("stockflow_test")
	s := stream{url: url, name: strings.ToUpper(name), prefix: name}
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url)
		if err != nil {
			t.Logf("deleting stream %s: %v", s.name, err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, s.name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("deleting stream %s: %v", s.name, err)
		}
		if err := js.DeleteKeyValue(ctx, nats.LeaseBucket(s.name)); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("deleting lease bucket of %s: %v", s.name, err)
		}
	})
	return s
}

// open returns a transport on s, closed at cleanup (after the
// subscriptions made after it stop).
func (s stream) open(t testing.TB, opts ...nats.Option) *nats.JetStream {
	t.Helper()
	opts = append([]nats.Option{
		nats.WithStream(s.name, s.prefix),
		nats.WithRedeliveryBackoff(20*time.Millisecond, 200*time.Millisecond),
		nats.WithPollWait(time.Second),
	}, opts...)
	js, err := nats.New(s.url, testenv.Logger(t, slog.LevelDebug), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Close() })
	return js
}

// setup returns a transport on a stream of t's own, on the machine's NATS.
func setup(t testing.TB, opts ...nats.Option) (stream, *nats.JetStream) {
	t.Helper()
	s := newStream(t, testenv.NATS(t))
	return s, s.open(t, opts...)
}

// subscriber runs Subscribe in the background and hands what h is given
// to the test.
type subscriber struct {
	deliveries chan messaging.Delivery
	cancel     context.CancelFunc
	done       chan error // Subscribe's result
	closed     bool       // its transport is closed: Subscribe returns an error
}

// subscribe runs js.Subscribe for group on channels with handler h (nil:
// accept every delivery). At cleanup the subscription is cancelled, and
// must return.
func subscribe(t testing.TB, js *nats.JetStream, group string, h messaging.Handler, channels ...string) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscriber{deliveries: make(chan messaging.Delivery, 10000), cancel: cancel, done: make(chan error, 1)}
	handler := func(ctx context.Context, d messaging.Delivery) error {
		select {
		case sub.deliveries <- d:
		default:
			t.Errorf("too many deliveries")
		}
		if h != nil {
			return h(ctx, d)
		}
		return nil
	}
	go func() { sub.done <- js.Subscribe(ctx, group, channels, handler) }()
	t.Cleanup(func() { sub.stop(t) })
	return sub
}

// stop cancels the subscription and waits for Subscribe to return.
func (s *subscriber) stop(t testing.TB) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && s.closed && (err == nil || errors.Is(err, context.Canceled)) {
			t.Errorf("Subscribe on a closed transport returned %v, want an error", err)
		}
		if ok && !s.closed && !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe returned %v, want context.Canceled", err)
		}
		if ok {
			close(s.done)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Subscribe did not return within 10s of its context's cancellation")
	}
}

// next returns the next delivery, failing the test after timeout.
func (s *subscriber) next(t testing.TB, timeout time.Duration) messaging.Delivery {
	t.Helper()
	select {
	case d := <-s.deliveries:
		return d
	case <-time.After(timeout):
		t.Fatalf("no delivery within %v", timeout)
		return messaging.Delivery{}
	}
}

// none fails the test if anything is delivered within d.
func (s *subscriber) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case got := <-s.deliveries:
		t.Fatalf("unexpected delivery %+v (attempt %d)", got.Envelope, got.Attempt)
	case <-time.After(d):
	}
}

// collect returns n deliveries.
func (s *subscriber) collect(t testing.TB, n int, timeout time.Duration) []messaging.Delivery {
	t.Helper()
	out := make([]messaging.Delivery, 0, n)
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case d := <-s.deliveries:
			out = append(out, d)
		case <-deadline:
			t.Fatalf("%d deliveries within %v, want %d", len(out), timeout, n)
		}
	}
	return out
}

var at = time.Date(2011, 1, 2, 3, 4, 5, 123456789, time.UTC)

func envelope(channel, key, payload string) messaging.Envelope {
	return messaging.Envelope{
		ID:            messaging.NewID(),
		Channel:       channel,
		Key:           key,
		CorrelationID: messaging.NewID(),
		CausationID:   messaging.NewID(),
		OccurredAt:    at,
		Payload:       json.RawMessage(payload),
	}
}

// envelopes returns n messages on channel with key, payloads {"n": i}.
func envelopes(channel, key string, n int) []messaging.Envelope {
	out := make([]messaging.Envelope, n)
	for i := range out {
		out[i] = envelope(channel, key, fmt.Sprintf(`{"n":%d}`, i))
	}
	return out
}

func publish(t testing.TB, js *nats.JetStream, msgs ...messaging.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

func ids(ds []messaging.Delivery) map[string]int {
	m := make(map[string]int)
	for _, d := range ds {
		m[d.ID]++
	}
	return m
}

func streamMsgs(t testing.TB, js *nats.JetStream) uint64 {
	t.Helper()
	s, err := js.JetStream().Stream(context.Background(), js.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPartition(t *testing.T) {
	if p := nats.Partition("", 8); p != 0 {
		t.Errorf("Partition(\"\", 8) = %d, want 0", p)
	}
	seen := map[int]bool{}
	for i := range 100 {
		key := fmt.Sprintf("sku-%d", i)
		p := nats.Partition(key, 8)
		if p < 0 || p >= 8 || p != nats.Partition(key, 8) {
			t.Fatalf("Partition(%q, 8) = %d", key, p)
		}
		seen[p] = true
		if q := nats.Partition(key, 1); q != 0 {
			t.Fatalf("Partition(%q, 1) = %d", key, q)
		}
	}
	if len(seen) != 8 {
		t.Errorf("100 keys fell in %d partitions of 8", len(seen))
	}
	// FNV-1a, 32 bits: "a" is 0xe40c292c.
	if p := nats.Partition("a", 1<<30); p != 0xe40c292c%(1<<30) {
		t.Errorf("Partition(a) = %#x, want FNV-1a", p)
	}
	for _, c := range []struct{ group, channel, want string }{
		{"allocation", "line_allocated", "allocation_line_allocated_3"},
		{"my group", "a.b*c>d/e", "my_group_a_b_c_d_e_3"},
	} {
		if got := nats.ConsumerName(c.group, c.channel, 3); got != c.want {
			t.Errorf("ConsumerName(%q, %q, 3) = %q, want %q", c.group, c.channel, got, c.want)
		}
	}
}

// A message comes back with all its fields; a message from outside gets
// an id that stays the same, and the time it was stored.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s, js := setup(t)
	info, err := js.JetStream().Stream(context.Background(), s.name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy ||
		cfg.Duplicates != nats.DefaultDuplicateWindow || cfg.MaxAge != nats.DefaultMaxAge ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != s.prefix+".>" {
		t.Errorf("stream config %+v", cfg)
	}
	if js.Subject("line_allocated", "sku-1") != fmt.Sprintf("%s.line_allocated.%d", s.prefix, nats.Partition("sku-1", 8)) {
		t.Errorf("subject %s", js.Subject("line_allocated", "sku-1"))
	}
	// Opening it again (another instance, or a restart) updates it.
	s.open(t)

	sub := subscribe(t, js, "test", nil, "line_allocated", "other")
	envs := []messaging.Envelope{
		envelope("line_allocated", "sku-1", `{"orderid":"o1","sku":"sku-1","qty":3,"batchref":"b1"}`),
		envelope("line_allocated", "sku-1", `{"orderid":"o2","sku":"sku-1","qty":4}`),
		envelope("line_allocated", "sku-1", ` [1, 2] `),
		{ID: messaging.NewID(), Channel: "other", Payload: json.RawMessage(`{}`)}, // no key, no ids, no time
	}
	publish(t, js, envs...)
	// In order within a partition; the other channel's message comes when
	// it comes.
	byID := map[string]messaging.Delivery{}
	var order []string
	for _, d := range sub.collect(t, len(envs), 10*time.Second) {
		byID[d.ID] = d
		if d.Channel == "line_allocated" {
			order = append(order, d.ID)
		}
	}
	if want := envs[0].ID + "," + envs[1].ID + "," + envs[2].ID; strings.Join(order, ",") != want {
		t.Errorf("delivered in the order %v, want %v", order, want)
	}
	for i, want := range envs {
		d := byID[want.ID]
		if d.Attempt != 1 {
			t.Errorf("delivery %d: attempt %d", i, d.Attempt)
		}
		if i == 3 {
			if d.ID != want.ID || d.Channel != "other" || d.Key != "" || d.CorrelationID != "" || d.CausationID != "" || string(d.Payload) != "{}" {
				t.Errorf("delivery %d: %+v, want %+v", i, d.Envelope, want)
			}
			if d.OccurredAt.IsZero() || time.Since(d.OccurredAt) > time.Minute {
				t.Errorf("delivery %d: OccurredAt %v, want the time it was stored", i, d.OccurredAt)
			}
			continue
		}
		if d.ID != want.ID || d.Channel != want.Channel || d.Key != want.Key || d.CorrelationID != want.CorrelationID ||
			d.CausationID != want.CausationID || !d.OccurredAt.Equal(want.OccurredAt) || string(d.Payload) != string(want.Payload) {
			t.Errorf("delivery %d:\n got %+v\nwant %+v", i, d.Envelope, want)
		}
	}

	// From outside: no headers at all.
	nc, err := natsgo.Connect(s.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	raw, _ := jetstream.New(nc)
	if _, err := raw.Publish(context.Background(), s.prefix+".other.0", []byte(`{"batchref":"b1"}`)); err != nil {
		t.Fatal(err)
	}
	d := sub.next(t, 10*time.Second)
	if len(d.ID) != 36 || d.Channel != "other" || string(d.Payload) != `{"batchref":"b1"}` || d.OccurredAt.IsZero() {
		t.Errorf("outside message delivered as %+v", d.Envelope)
	}
	if err := js.Publish(context.Background()); err != nil {
		t.Errorf("Publish(): %v", err)
	}
	if err := js.Publish(context.Background(), envelope("bad channel", "", "{}")); err == nil {
		t.Errorf("publishing on a channel with a space succeeded")
	}

	// The outside message's id is the same when it is handed again.
	sub.stop(t)
	if err := js.Rewind(context.Background(), "test", []string{"other"}); err != nil {
		t.Fatal(err)
	}
	sub2 := subscribe(t, js, "test", nil, "other")
	again := sub2.collect(t, 2, 10*time.Second)
	if again[0].ID != envs[3].ID || again[1].ID != d.ID {
		t.Errorf("after a rewind, ids %s, %s; want %s, %s", again[0].ID, again[1].ID, envs[3].ID, d.ID)
	}
}

// The stream drops a message whose id it saw, so that the relay's retries
// are delivered once.
func TestBrokerDeduplicates(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	env := envelope("ch", "k", `{"n":1}`)
	other := envelope("ch", "k", `{"n":2}`)
	publish(t, js, env)
	publish(t, js, env, other) // the relay's retry of a batch
	publish(t, js, env)
	if n := streamMsgs(t, js); n != 2 {
		t.Errorf("stream holds %d messages, want 2", n)
	}
	sub := subscribe(t, js, "test", nil, "ch")
	if d := sub.next(t, 10*time.Second); d.ID != env.ID {
		t.Errorf("delivered %s, want %s", d.ID, env.ID)
	}
	if d := sub.next(t, 10*time.Second); d.ID != other.ID {
		t.Errorf("delivered %s, want %s", d.ID, other.ID)
	}
	sub.none(t, 500*time.Millisecond)
}

// Messages of each key are handled in the order they were published, one
// at a time, while partitions are handled in parallel.
func TestOrderPerKey(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	const keys, perKey = 5, 100
	var all []messaging.Envelope
	want := map[string][]string{}
	parts := map[int]bool{}
	for k := range keys {
		key := fmt.Sprintf("sku-%d", k)
		parts[nats.Partition(key, 8)] = true
		for _, e := range envelopes("ch", key, perKey) {
			all = append(all, e)
			want[key] = append(want[key], e.ID)
		}
	}
	if len(parts) < 3 {
		t.Fatalf("%d keys in %d partitions: choose other keys", keys, len(parts))
	}
	// Interleave the keys, published in batches.
	var mixed []messaging.Envelope
	for i := range perKey {
		for k := range keys {
			mixed = append(mixed, all[k*perKey+i])
		}
	}
	for i := 0; i < len(mixed); i += 50 {
		publish(t, js, mixed[i:i+50]...)
	}

	var mu sync.Mutex
	got := map[string][]string{}
	inFlight := map[string]int{}
	var running, maxRunning atomic.Int32
	h := func(ctx context.Context, d messaging.Delivery) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		mu.Lock()
		inFlight[d.Key]++
		if inFlight[d.Key] > 1 {
			t.Errorf("two messages of %s handled at once", d.Key)
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inFlight[d.Key]--
		got[d.Key] = append(got[d.Key], d.ID)
		mu.Unlock()
		return nil
	}
	sub := subscribe(t, js, "test", h, "ch")
	sub.collect(t, keys*perKey, 30*time.Second)
	sub.stop(t) // the last handlers return
	mu.Lock()
	defer mu.Unlock()
	for key, ids := range want {
		if strings.Join(got[key], ",") != strings.Join(ids, ",") {
			t.Errorf("%s: handled out of order or not all (%d of %d)", key, len(got[key]), len(ids))
		}
	}
	if maxRunning.Load() < 2 {
		t.Errorf("at most %d handlers ran at once: partitions are not handled in parallel", maxRunning.Load())
	}
	t.Logf("at most %d handlers at once", maxRunning.Load())
}

// A message whose handler failed is handed again, with its attempt counted,
// and the messages after it (same key) wait.
func TestRedeliveryAfterError(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	first, second := envelope("ch", "k", `{"n":1}`), envelope("ch", "k", `{"n":2}`)
	publish(t, js, first, second)
	var fails atomic.Int32
	h := func(ctx context.Context, d messaging.Delivery) error {
		if d.ID == first.ID && d.Attempt < 3 {
			fails.Add(1)
			return errors.New("not now")
		}
		return nil
	}
	sub := subscribe(t, js, "test", h, "ch")
	for attempt := 1; attempt <= 3; attempt++ {
		d := sub.next(t, 10*time.Second)
		if d.ID != first.ID || d.Attempt != attempt {
			t.Fatalf("delivered %s attempt %d, want %s attempt %d", d.ID, d.Attempt, first.ID, attempt)
		}
		if d.CorrelationID != first.CorrelationID || string(d.Payload) != `{"n":1}` {
			t.Errorf("redelivery %d: %+v", attempt, d.Envelope)
		}
	}
	if d := sub.next(t, 10*time.Second); d.ID != second.ID || d.Attempt != 1 {
		t.Fatalf("delivered %s attempt %d, want %s attempt 1", d.ID, d.Attempt, second.ID)
	}
	sub.none(t, 500*time.Millisecond)
}

// A message whose member stopped (or crashed) before acknowledging it is
// handed again to the group.
func TestRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	s, js := setup(t)
	env := envelope("ch", "k", `{"n":1}`)
	publish(t, js, env)
	started := make(chan struct{}, 1)
	blocked := func(ctx context.Context, d messaging.Delivery) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	sub := subscribe(t, js, "test", blocked, "ch")
	if d := sub.next(t, 10*time.Second); d.ID != env.ID || d.Attempt != 1 {
		t.Fatalf("delivered %s attempt %d", d.ID, d.Attempt)
	}
	<-started
	sub.stop(t) // cancelled while the handler blocks

	// Another instance of the group gets it again.
	js2 := s.open(t)
	sub2 := subscribe(t, js2, "test", nil, "ch")
	start := time.Now()
	if d := sub2.next(t, 10*time.Second); d.ID != env.ID || d.Attempt != 2 {
		t.Fatalf("delivered %s attempt %d, want %s attempt 2", d.ID, d.Attempt, env.ID)
	}
	t.Logf("handed again after %v", time.Since(start).Round(time.Millisecond))
	sub2.none(t, 500*time.Millisecond)
}

// A member that dies without a word (its connection lost) holds its
// message for AckWait; then the group gets it again.
func TestRedeliveryAfterAckWait(t *testing.T) {
	t.Parallel()
	s, js := setup(t, nats.WithAckWait(time.Second))
	env := envelope("ch", "k", `{"n":1}`)
	publish(t, js, env)

	dying := s.open(t, nats.WithAckWait(time.Second))
	release := make(chan struct{})
	defer close(release)
	sub := subscribe(t, dying, "test", func(ctx context.Context, d messaging.Delivery) error {
		dying.Conn().Close() // dies: no ack, no nak, no progress
		<-release
		return nil
	}, "ch")
	if d := sub.next(t, 10*time.Second); d.ID != env.ID {
		t.Fatalf("delivered %s", d.ID)
	}
	sub.closed = true
	sub2 := subscribe(t, js, "test", nil, "ch")
	if d := sub2.next(t, 10*time.Second); d.ID != env.ID || d.Attempt != 2 {
		t.Fatalf("delivered %s attempt %d, want %s attempt 2", d.ID, d.Attempt, env.ID)
	}
}

// A slow handler keeps its message: it is not handed to another member
// while it runs, even past AckWait.
func TestSlowHandlerKeepsMessage(t *testing.T) {
	t.Parallel()
	s, js := setup(t, nats.WithAckWait(time.Second))
	env := envelope("ch", "k", `{"n":1}`)
	publish(t, js, env)
	slow := func(ctx context.Context, d messaging.Delivery) error {
		time.Sleep(2500 * time.Millisecond)
		return nil
	}
	sub1 := subscribe(t, js, "test", slow, "ch")
	sub2 := subscribe(t, s.open(t, nats.WithAckWait(time.Second)), "test", slow, "ch")
	var got []messaging.Delivery
	timeout := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case d := <-sub1.deliveries:
			got = append(got, d)
		case d := <-sub2.deliveries:
			got = append(got, d)
		case <-timeout:
			done = true
		}
	}
	if len(got) != 1 || got[0].ID != env.ID || got[0].Attempt != 1 {
		t.Errorf("deliveries %+v, want one", got)
	}
}

// A group new to the stream starts at the oldest message; a group keeps
// its position while it is away; Rewind hands it everything again.
func TestGroupPositionAndRewind(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	old := envelopes("ch", "k", 10)
	publish(t, js, old...)

	sub := subscribe(t, js, "test", nil, "ch", "other")
	for i, d := range sub.collect(t, 10, 10*time.Second) {
		if d.ID != old[i].ID {
			t.Fatalf("delivery %d: %s, want %s", i, d.ID, old[i].ID)
		}
	}
	sub.stop(t)

	newer := envelopes("ch", "k2", 5)
	publish(t, js, newer...)
	sub = subscribe(t, js, "test", nil, "ch", "other")
	for i, d := range sub.collect(t, 5, 10*time.Second) {
		if d.ID != newer[i].ID {
			t.Fatalf("after coming back, delivery %d: %s, want %s", i, d.ID, newer[i].ID)
		}
	}
	sub.none(t, 500*time.Millisecond)
	sub.stop(t)

	if err := js.Rewind(context.Background(), "test", []string{"ch", "other"}); err != nil {
		t.Fatal(err)
	}
	if err := js.Rewind(context.Background(), "never_subscribed", []string{"ch"}); err != nil {
		t.Errorf("rewinding a group the stream does not know: %v", err)
	}
	sub = subscribe(t, js, "test", nil, "ch", "other")
	got := ids(sub.collect(t, 15, 10*time.Second))
	for _, e := range append(old, newer...) {
		if got[e.ID] != 1 {
			t.Errorf("after the rewind, %s delivered %d times", e.ID, got[e.ID])
		}
	}
	sub.none(t, 500*time.Millisecond)
}

// Rewinding while a member is subscribed: it reads everything again.
func TestRewindWhileSubscribed(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	msgs := envelopes("ch", "k", 5)
	publish(t, js, msgs...)
	sub := subscribe(t, js, "test", nil, "ch")
	sub.collect(t, 5, 10*time.Second)
	if err := js.Rewind(context.Background(), "test", []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	got := sub.collect(t, 5, 15*time.Second)
	for i, d := range got {
		if d.ID != msgs[i].ID {
			t.Errorf("after the rewind, delivery %d: %s, want %s", i, d.ID, msgs[i].ID)
		}
	}
}

// Rewinding while a member handles a message: once it is done, the member
// reads everything again, without waiting for AckWait.
func TestRewindWhileHandling(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	msgs := envelopes("ch", "k", 3)
	publish(t, js, msgs...)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sub := subscribe(t, js, "test", func(ctx context.Context, d messaging.Delivery) error {
		if d.ID == msgs[1].ID {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
		return nil
	}, "ch")
	<-entered
	if err := js.Rewind(context.Background(), "test", []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	close(release)
	start := time.Now()
	got := sub.collect(t, 5, 10*time.Second) // 0, 1; then 0, 1, 2 again
	var order []string
	for _, d := range got {
		order = append(order, string(d.Payload))
	}
	if want := `{"n":0},{"n":1},{"n":0},{"n":1},{"n":2}`; strings.Join(order, ",") != want {
		t.Errorf("delivered %s, want %s", strings.Join(order, ","), want)
	}
	t.Logf("read again within %v", time.Since(start).Round(time.Millisecond))
}

// Each group gets every message.
func TestTwoGroupsEachGetAll(t *testing.T) {
	t.Parallel()
	_, js := setup(t)
	var msgs []messaging.Envelope
	for k := range 10 {
		msgs = append(msgs, envelopes("ch", fmt.Sprintf("sku-%d", k), 5)...)
	}
	publish(t, js, msgs...)
	a := subscribe(t, js, "a", nil, "ch")
	b := subscribe(t, js, "b", nil, "ch")
	for name, sub := range map[string]*subscriber{"a": a, "b": b} {
		got := ids(sub.collect(t, len(msgs), 10*time.Second))
		for _, e := range msgs {
			if got[e.ID] != 1 {
				t.Errorf("group %s got %s %d times", name, e.ID, got[e.ID])
			}
		}
		sub.none(t, 200*time.Millisecond)
	}
}

// Members of one group share its messages: each is handled once overall.
func TestMembersShareGroup(t *testing.T) {
	t.Parallel()
	s, js := setup(t)
	a := subscribe(t, js, "test", nil, "ch")
	b := subscribe(t, s.open(t), "test", nil, "ch")
	var msgs []messaging.Envelope
	for k := range 40 {
		msgs = append(msgs, envelopes("ch", fmt.Sprintf("sku-%d", k), 5)...)
	}
	publish(t, js, msgs...)

	got := map[string]int{}
	var na, nb int
	timeout := time.After(20 * time.Second)
	for len(got) < len(msgs) {
		select {
		case d := <-a.deliveries:
			got[d.ID]++
			na++
		case d := <-b.deliveries:
			got[d.ID]++
			nb++
		case <-timeout:
			t.Fatalf("%d of %d messages within 20s", len(got), len(msgs))
		}
	}
	a.none(t, 300*time.Millisecond)
	b.none(t, 100*time.Millisecond)
	for _, e := range msgs {
		if got[e.ID] != 1 {
			t.Errorf("%s handled %d times", e.ID, got[e.ID])
		}
	}
	t.Logf("member a handled %d, member b %d", na, nb)
}

// Subscribe returns promptly when its context is cancelled, and with an
// error when the transport is closed.
func TestSubscribeStops(t *testing.T) {
	t.Parallel()
	s, js := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- js.Subscribe(ctx, "test", []string{"ch"}, func(context.Context, messaging.Delivery) error { return nil })
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe returned %v", err)
		}
		t.Logf("returned %v after the cancellation", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("Subscribe did not return within 3s")
	}

	other := s.open(t)
	go func() {
		done <- other.Subscribe(context.Background(), "test", []string{"ch"}, func(context.Context, messaging.Delivery) error { return nil })
	}()
	time.Sleep(300 * time.Millisecond)
	other.Close()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("after Close, Subscribe returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Subscribe did not return within 15s of Close")
	}
	if err := other.Subscribe(context.Background(), "test", []string{"ch"}, func(context.Context, messaging.Delivery) error { return nil }); err == nil {
		t.Errorf("Subscribe after Close succeeded")
	}
	if err := other.Publish(context.Background(), envelope("ch", "", "{}")); err == nil {
		t.Errorf("Publish after Close succeeded")
	}
	if err := other.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A server restart is waited out: publishing fails meanwhile, the
// subscription resumes by itself, and nothing published is lost. After a
// crash (SIGKILL), the server may have lost the latest acks: the messages
// are handed again, once AckWait is over.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	t.Run("graceful", func(t *testing.T) {
		t.Parallel()
		testServerRestart(t, syscall.SIGTERM)
	})
	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		testServerRestart(t, syscall.SIGKILL, nats.WithAckWait(2*time.Second))
	})
}

func testServerRestart(t *testing.T, sig syscall.Signal, opts ...nats.Option) {
	srv := testenv.StartNATS(t)
	s := newStream(t, srv.URL)
	js := s.open(t, opts...)
	pub := s.open(t, opts...)
	sub := subscribe(t, js, "test", nil, "ch")

	before := envelopes("ch", "k", 10)
	publish(t, pub, before...)
	got := ids(sub.collect(t, 10, 10*time.Second))
	if sig != syscall.SIGKILL {
		time.Sleep(100 * time.Millisecond) // the last ack
	}

	if sig == syscall.SIGKILL {
		srv.Kill()
	} else {
		srv.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := pub.Publish(ctx, envelope("ch", "k", `{"lost":true}`))
	cancel()
	if err == nil {
		t.Error("Publish with the server down succeeded")
	}
	time.Sleep(500 * time.Millisecond) // let the fetch loops fail

	srv.Restart(t)
	after := envelopes("ch", "k", 10)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := pub.Publish(ctx, after...) // the outbox relay's retries
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing after the restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Besides them may come redeliveries of messages whose ack the
	// restart lost, and the message published while the server was down
	// (the client sends it once it reconnects).
	var order []string
	isAfter := map[string]bool{}
	for _, e := range after {
		isAfter[e.ID] = true
	}
	timeout := time.After(20 * time.Second)
	for seen := 0; seen < len(after); {
		select {
		case d := <-sub.deliveries:
			if got[d.ID] == 0 && isAfter[d.ID] {
				seen++
			}
			got[d.ID]++
			if isAfter[d.ID] {
				order = append(order, d.ID)
			}
		case <-timeout:
			for p := range 8 {
				c, err := pub.JetStream().Consumer(context.Background(), s.name, nats.ConsumerName("test", "ch", p))
				if err == nil {
					ci := c.CachedInfo()
					t.Logf("consumer %d: delivered %+v ack floor %+v pending acks %d pending %d redelivered %d waiting %d", p, ci.Delivered, ci.AckFloor, ci.NumAckPending, ci.NumPending, ci.NumRedelivered, ci.NumWaiting)
				}
			}
			t.Fatalf("after the restart, %d messages of %d delivered within 20s", len(order), len(after))
		}
	}
	for _, e := range append(before, after...) {
		if got[e.ID] == 0 {
			t.Errorf("%s never delivered", e.ID)
		}
	}
	// The key's order is kept.
	var want []string
	for _, e := range after {
		want = append(want, e.ID)
	}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("after the restart, delivered %v\nwant %v", order, want)
	}
	redelivered := 0
	for _, n := range got {
		redelivered += n - 1
	}
	t.Logf("%d messages handed again", redelivered)
	if sig == syscall.SIGTERM && redelivered > 0 {
		t.Errorf("after a graceful restart, %d messages handed again", redelivered)
	}
	if n := streamMsgs(t, pub); n < 20 || n > 21 {
		t.Errorf("stream holds %d messages, want 20 (or 21)", n)
	}
}

// payloadN returns the n of a payload {"n": n}.
func payloadN(t testing.TB, d messaging.Delivery) int {
	t.Helper()
	var p struct{ N int }
	if err := json.Unmarshal(d.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", d.Payload, err)
	}
	return p.N
}

// A member that dies in the middle of a batch: the next one gets the rest
// of the partition once AckWait is over, in order, starting at the message
// that was in the handler (or before it: the messages handled since the
// last ack come again).
func TestBatchRedeliveredInOrderAfterCrash(t *testing.T) {
	t.Parallel()
	s, js := setup(t, nats.WithAckWait(time.Second))
	msgs := envelopes("ch", "k", 20)
	publish(t, js, msgs...)

	dying := s.open(t, nats.WithAckWait(time.Second))
	release := make(chan struct{})
	defer close(release)
	sub := subscribe(t, dying, "test", func(ctx context.Context, d messaging.Delivery) error {
		if payloadN(t, d) == 6 {
			dying.Conn().Close() // dies: no ack, no nak, no progress
			<-release
		}
		return nil
	}, "ch")
	for i, d := range sub.collect(t, 7, 10*time.Second) {
		if n := payloadN(t, d); n != i {
			t.Fatalf("delivery %d: n=%d", i, n)
		}
	}
	sub.closed = true

	sub2 := subscribe(t, js, "test", nil, "ch")
	first := sub2.next(t, 10*time.Second)
	start := payloadN(t, first)
	if start > 6 {
		t.Fatalf("the next member started at n=%d, after the message in the handler (6)", start)
	}
	if first.Attempt < 2 {
		t.Errorf("n=%d came again with Attempt %d, want 2 or more", start, first.Attempt)
	}
	for i, d := range sub2.collect(t, 19-start, 10*time.Second) {
		if n := payloadN(t, d); n != start+1+i {
			t.Fatalf("after n=%d, delivery %d is n=%d, want %d", start, i, n, start+1+i)
		}
	}
	sub2.none(t, 500*time.Millisecond)
}

// Two members of a group, one of them a standby: when the holder stops in
// the middle of a long run of one key, the other takes the partition over
// and goes on where it stopped: every message once, in order, never two at
// a time.
func TestHandoverKeepsOrder(t *testing.T) {
	t.Parallel()
	s, a := setup(t)
	b := s.open(t)
	const n = 300
	msgs := envelopes("ch", "k", n)

	var mu sync.Mutex
	var order []int
	var running atomic.Int32
	h := func(ctx context.Context, d messaging.Delivery) error {
		if running.Add(1) > 1 {
			t.Errorf("two messages of the key handled at once")
		}
		defer running.Add(-1)
		time.Sleep(200 * time.Microsecond)
		mu.Lock()
		order = append(order, payloadN(t, d))
		mu.Unlock()
		return nil
	}
	subA := subscribe(t, a, "test", h, "ch")
	publish(t, a, msgs[:10]...) // a takes the partitions
	subA.collect(t, 10, 10*time.Second)
	subB := subscribe(t, b, "test", h, "ch")
	publish(t, a, msgs[10:]...)
	for len(subA.deliveries) < 60 {
		time.Sleep(time.Millisecond)
	}
	subA.stop(t) // in the middle of a batch
	deadline := time.After(20 * time.Second)
	for {
		mu.Lock()
		got := len(order)
		mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d of %d messages handled within 20s", got, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond) // nothing more comes
	mu.Lock()
	defer mu.Unlock()
	for i, got := range order {
		if got != i {
			t.Fatalf("handled %d-th: n=%d, want %d (a handled %d, b %d)", i, got, i, 10+len(subA.deliveries), len(subB.deliveries))
		}
	}
	if len(order) != n {
		t.Errorf("%d deliveries for %d messages", len(order), n)
	}
	if len(subB.deliveries) == 0 {
		t.Errorf("the standby handled nothing")
	}
}

// A consumer of the earlier version (explicit acks, MaxAckPending 1) is
// created again, acknowledging all, from its first message not
// acknowledged.
func TestOldConsumerMigrated(t *testing.T) {
	t.Parallel()
	s, js := setup(t)
	msgs := envelopes("ch", "k", 6)
	publish(t, js, msgs...)
	p := nats.Partition("k", 8)
	name := nats.ConsumerName("test", "ch", p)
	ctx := context.Background()
	old, err := js.JetStream().CreateOrUpdateConsumer(ctx, s.name, jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: js.Subject("ch", "k"),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the earlier version handled two
		m, err := old.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil { // and was handling the third
		t.Fatal(err)
	}

	sub := subscribe(t, js, "test", nil, "ch")
	for i, d := range sub.collect(t, 4, 10*time.Second) {
		if n := payloadN(t, d); n != i+2 {
			t.Fatalf("delivery %d: n=%d, want %d", i, n, i+2)
		}
	}
	sub.none(t, 300*time.Millisecond)
	c, err := js.JetStream().Consumer(ctx, s.name, name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; cfg.AckPolicy != jetstream.AckAllPolicy || cfg.MaxAckPending != nats.DefaultBatch {
		t.Errorf("consumer acks %v, MaxAckPending %d; want all, %d", cfg.AckPolicy, cfg.MaxAckPending, nats.DefaultBatch)
	}
}

// The lease is lost from under its holder (the key deleted) a few times
// while a long run of one key is handled, and the other member takes it,
// so that for a while both believe they hold the partition (and the
// server hands the messages to both, in turn): the messages are still
// handled in order, one at a time, and all of them, without waiting for
// AckWait.
func TestLeaseLostKeepsOrder(t *testing.T) {
	t.Parallel()
	s, a := setup(t, nats.WithLeaseTTL(time.Second))
	b := s.open(t, nats.WithLeaseTTL(time.Second))
	const n = 600
	msgs := envelopes("ch", "k", n)

	var mu sync.Mutex
	var order []int
	var running atomic.Int32
	h := func(ctx context.Context, d messaging.Delivery) error {
		if running.Add(1) > 1 {
			t.Errorf("two messages of the key handled at once")
		}
		defer running.Add(-1)
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		order = append(order, payloadN(t, d))
		mu.Unlock()
		return nil
	}
	subscribe(t, a, "test", h, "ch")
	subscribe(t, b, "test", h, "ch")
	publish(t, a, msgs...)

	kv, err := a.JetStream().KeyValue(context.Background(), a.LeaseBucket())
	if err != nil {
		t.Fatal(err)
	}
	key := nats.LeaseKey("test", "ch", nats.Partition("k", 8))
	deadline := time.After(20 * time.Second) // less than AckWait
	for i := 0; ; i++ {
		mu.Lock()
		got := len(order)
		mu.Unlock()
		if got >= n {
			break
		}
		if i%50 == 20 && i < 200 {
			kv.Delete(context.Background(), key) // whoever holds it loses it
		}
		select {
		case <-deadline:
			t.Fatalf("%d of %d messages handled within 20s", got, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	last := -1
	seen := map[int]bool{}
	for i, got := range order {
		if got < last {
			t.Fatalf("handled %d-th: n=%d after n=%d", i, got, last)
		}
		last = got
		seen[got] = true
	}
	if len(seen) != n {
		t.Errorf("%d messages handled of %d", len(seen), n)
	}
	if len(order) != n {
		t.Logf("%d deliveries for %d messages", len(order), n)
	}
}
