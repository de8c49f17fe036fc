package redis

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
)

// --- helpers ---

// streamsEnv is a test's Streams namespace on a Redis.
type streamsEnv struct {
	t      *testing.T
	url    string
	prefix string
	raw    *redis.Client
}

func newStreamsEnv(t *testing.T, url string) *streamsEnv {
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(opts)
	t.Cleanup(func() { raw.Close() })
	return &streamsEnv{t: t, url: url, prefix: streamsPrefix(t, url), raw: raw}
}

// transport returns a Streams transport of the namespace, closed at
// cleanup.
func (e *streamsEnv) transport() *Streams {
	s := newTestStreams(e.t, e.url, e.prefix)
	e.t.Cleanup(func() { s.Close() })
	return s
}

// record is what handlers were handed, across subscriptions.
type record struct {
	mu   sync.Mutex
	got  []delivered
	wake chan struct{}
}

type delivered struct {
	who string
	d   messaging.Delivery
	at  time.Time
}

func newRecord() *record { return &record{wake: make(chan struct{}, 1)} }

// handler records each delivery as who's, then returns h's answer (nil
// when h is nil).
func (r *record) handler(who string, h messaging.Handler) messaging.Handler {
	return func(ctx context.Context, d messaging.Delivery) error {
		r.mu.Lock()
		r.got = append(r.got, delivered{who, d, time.Now()})
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
		if h != nil {
			return h(ctx, d)
		}
		return nil
	}
}

func (r *record) snapshot() []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until cond holds on the deliveries so far.
func (r *record) waitFor(t *testing.T, timeout time.Duration, what string, cond func([]delivered) bool) []delivered {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.snapshot()
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, g := range got {
				fmt.Fprintf(&b, "\n  %s: %s key=%s attempt=%d payload=%s", g.who, g.d.ID, g.d.Key, g.d.Attempt, g.d.Payload)
			}
			t.Fatalf("waiting for %s: not within %v; deliveries:%s", what, timeout, b.String())
		}
		select {
		case <-r.wake:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hasAll reports whether every message of msgs was delivered.
func hasAll(msgs ...messaging.Envelope) func([]delivered) bool {
	return func(got []delivered) bool {
		for _, m := range msgs {
			if !slices.ContainsFunc(got, func(g delivered) bool { return g.d.ID == m.ID }) {
				return false
			}
		}
		return true
	}
}

// running is a Subscribe in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// subscribeStreams runs s.Subscribe in the background; at cleanup it is
// cancelled and must return.
func subscribeStreams(t *testing.T, s *Streams, group string, channels []string, h messaging.Handler) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Subscribe(ctx, group, channels, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Subscribe did not return within 10s of its cancellation")
		}
	})
	return r
}

// stop cancels the subscription and waits for Subscribe to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe returned %v, want context.Canceled", err)
		}
		r.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe did not return within 10s of its cancellation")
	}
}

func streamsMessage(channel, key string, n int) messaging.Envelope {
	return messaging.Envelope{
		ID:            messaging.NewID(),
		Channel:       channel,
		Key:           key,
		CorrelationID: messaging.NewID(),
		CausationID:   messaging.NewID(),
		OccurredAt:    time.Date(2011, 1, 2, 3, 4, 5, 123456789, time.UTC),
		Payload:       json.RawMessage(fmt.Sprintf(`{"key":%q,"n":%d}`, key, n)),
	}
}

func mustPublish(t *testing.T, s *Streams, msgs ...messaging.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

func ids(got []delivered) []string {
	var out []string
	for _, g := range got {
		out = append(out, g.d.ID)
	}
	return out
}

// --- tests ---

// NewStreams takes redis+streams:// URLs (and plain redis:// ones).
func TestStreamsURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		addr string
		db   int
		tls  bool
	}{
		{"redis+streams://127.0.0.1:6379", "127.0.0.1:6379", 0, false},
		{"redis+streams://h.example:7000/3", "h.example:7000", 3, false},
		{"rediss+streams://h.example:7000/1", "h.example:7000", 1, true},
		{"redis://h.example:7000/2", "h.example:7000", 2, false},
	} {
		s, err := NewStreams(c.url, nil)
		if err != nil {
			t.Errorf("NewStreams(%q): %v", c.url, err)
			continue
		}
		o := s.Client().Options()
		if o.Addr != c.addr || o.DB != c.db || (o.TLSConfig != nil) != c.tls {
			t.Errorf("NewStreams(%q): addr %s db %d tls %v; want %s %d %v", c.url, o.Addr, o.DB, o.TLSConfig != nil, c.addr, c.db, c.tls)
		}
		s.Close()
	}
	for _, bad := range []string{"nats://user:secret@h:4222", "redis+streams://h:1/notadb", "streams://h:1"} {
		_, err := NewStreams(bad, nil)
		if err == nil {
			t.Errorf("NewStreams(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("NewStreams(%q) error shows the password: %v", bad, err)
		}
	}
}

// A message goes to the stream <prefix>:<channel>:<FNV-1a(key) mod
// Partitions> (0 for no key), with its fields.
func TestStreamsPartitioning(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	s.Partitions = 4
	ch := testenv.Name("parts")
	var sent []messaging.Envelope
	for i := range 30 {
		sent = append(sent, streamsMessage(ch, fmt.Sprintf("sku-%d", i%10), i))
	}
	sent = append(sent, streamsMessage(ch, "", 30), streamsMessage(ch, "", 31))
	mustPublish(t, s, sent...)

	ctx := context.Background()
	where := map[string]int{}             // id -> partition
	fields := map[string]map[string]any{} // id -> fields
	for p := range 4 {
		entries, err := e.raw.XRange(ctx, fmt.Sprintf("%s:%s:%d", e.prefix, ch, p), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range entries {
			id, _ := m.Values["id"].(string)
			where[id] = p
			fields[id] = m.Values
		}
	}
	used := map[int]bool{}
	for _, m := range sent {
		want := 0
		if m.Key != "" {
			h := fnv.New32a()
			h.Write([]byte(m.Key))
			want = int(h.Sum32() % 4)
		}
		got, ok := where[m.ID]
		if !ok {
			t.Fatalf("message %s (key %q) is in no partition stream", m.ID, m.Key)
		}
		used[got] = true
		if got != want || s.Partition(m.Key) != want {
			t.Errorf("key %q: partition %d (Partition says %d), want %d", m.Key, got, s.Partition(m.Key), want)
		}
		wantFields := map[string]any{
			"id": m.ID, "key": m.Key, "correlation_id": m.CorrelationID, "causation_id": m.CausationID,
			"occurred_at": "2011-01-02T03:04:05.123456789Z", "payload": string(m.Payload),
		}
		if f := fields[m.ID]; !mapsEqual(f, wantFields) {
			t.Errorf("fields %v, want %v", f, wantFields)
		}
	}
	if len(used) < 3 {
		t.Errorf("10 keys used only partitions %v of 4", used)
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// MaxLen bounds each partition stream, approximately; negative keeps all.
func TestStreamsRetention(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	ctx := context.Background()
	for _, c := range []struct {
		maxLen   int64
		min, max int64
	}{{50, 50, 250}, {-1, 2000, 2000}} {
		s := e.transport()
		s.MaxLen = c.maxLen
		ch := testenv.Name("retention")
		for range 20 {
			var batch []messaging.Envelope
			for i := range 100 {
				batch = append(batch, streamsMessage(ch, "k", i))
			}
			mustPublish(t, s, batch...)
		}
		n, err := e.raw.XLen(ctx, s.Stream(ch, s.Partition("k"))).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n < c.min || n > c.max {
			t.Errorf("MaxLen %d: after 2000 messages the stream has %d, want %d to %d", c.maxLen, n, c.min, c.max)
		}
	}
}

// TestStreamsCrashHelperProcess is the member that crashes in
// TestStreamsPendingRedeliveredAfterCrash: run by it in a process of its
// own, it subscribes, announces each message it is handed, and never
// returns from the handler. Run by go test, it does nothing.
func TestStreamsCrashHelperProcess(t *testing.T) {
	if os.Getenv("STOCKFLOW_STREAMS_CRASH_HELPER") != "1" {
		return
	}
	s, err := NewStreams(os.Getenv("STOCKFLOW_STREAMS_URL"), nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s.Prefix = os.Getenv("STOCKFLOW_STREAMS_PREFIX")
	s.LeaseTTL = time.Second
	s.Block = 100 * time.Millisecond
	s.Subscribe(context.Background(), "g", []string{os.Getenv("STOCKFLOW_STREAMS_CHANNEL")}, func(ctx context.Context, d messaging.Delivery) error {
		fmt.Printf("handling %s %d\n", d.ID, d.Attempt)
		time.Sleep(time.Hour) // until killed
		return nil
	})
}

// A member killed (SIGKILL) while it handles a message leaves it pending;
// once its lease lapses, another member takes the partition over and is
// handed that message first, Attempt 2, then the rest in order.
func TestStreamsPendingRedeliveredAfterCrash(t *testing.T) {
	url := testenv.Redis(t)
	e := newStreamsEnv(t, url)
	ch := testenv.Name("crash")
	s := e.transport()
	s.LeaseTTL = time.Second
	sent := []messaging.Envelope{streamsMessage(ch, "k", 0), streamsMessage(ch, "k", 1), streamsMessage(ch, "k", 2)}
	mustPublish(t, s, sent...)

	cmd := exec.Command(os.Args[0], "-test.run=^TestStreamsCrashHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"STOCKFLOW_STREAMS_CRASH_HELPER=1",
		"STOCKFLOW_STREAMS_URL=redis+streams://"+strings.TrimPrefix(url, "redis://"),
		"STOCKFLOW_STREAMS_PREFIX="+e.prefix,
		"STOCKFLOW_STREAMS_CHANNEL="+ch)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	})
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	want := fmt.Sprintf("handling %s 1", sent[0].ID)
	for got := ""; got != want; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the helper process ended before it was handed %s", sent[0].ID)
			}
			if strings.HasPrefix(line, "handling") || strings.HasPrefix(line, "error") {
				got = line
				if got != want {
					t.Fatalf("the helper was handed %q, want %q", got, want)
				}
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the helper process was not handed the message within 20s")
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	killed := time.Now()

	stream := s.Stream(ch, s.Partition("k"))
	pending, err := e.raw.XPending(context.Background(), stream, "g").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count == 0 {
		t.Fatal("nothing pending after the crash")
	}

	r := newRecord()
	subscribeStreams(t, s, "g", []string{ch}, r.handler("b", nil))
	got := r.waitFor(t, 10*time.Second, "the messages after the crash", hasAll(sent...))
	t.Logf("taken over %v after the crash (lease %v)", got[0].at.Sub(killed).Round(time.Millisecond), s.LeaseTTL)
	if !slices.Equal(ids(got), []string{sent[0].ID, sent[1].ID, sent[2].ID}) {
		t.Fatalf("handed %v, want %v in order", ids(got), []string{sent[0].ID, sent[1].ID, sent[2].ID})
	}
	if got[0].d.Attempt != 2 {
		t.Errorf("the message in the handler at the crash came again with Attempt %d, want 2", got[0].d.Attempt)
	}
	for _, g := range got[1:] {
		// Read in the same batch by the crashed member: they count that
		// delivery (a clean stop gives it back).
		if g.d.Attempt < 1 || g.d.Attempt > 2 {
			t.Errorf("a message read but not handed before the crash came with Attempt %d, want 1 or 2", g.d.Attempt)
		}
	}
}

// A member that died holding the lease and some pending entries (simulated
// with plain commands) is taken over when its lease lapses: its pending
// entries first (XAUTOCLAIM), in order, an entry deleted meanwhile
// skipped, then new ones; its consumer is deleted.
func TestStreamsTakeoverFromDeadMember(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	s.LeaseTTL = time.Second
	ch := testenv.Name("takeover")
	ctx := context.Background()
	stream := s.Stream(ch, s.Partition("k"))
	sent := []messaging.Envelope{streamsMessage(ch, "k", 0), streamsMessage(ch, "k", 1), streamsMessage(ch, "k", 2), streamsMessage(ch, "k", 3)}
	mustPublish(t, s, sent[:3]...)

	// The dead member: it holds the lease for 700ms more, and read the
	// first three entries; the first was deleted since.
	if err := e.raw.Set(ctx, s.leaseKey("g", ch, s.Partition("k")), "dead-token", 700*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	leaseSet := time.Now()
	if err := e.raw.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := e.raw.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "dead", Streams: []string{stream, ">"}, Count: 3, Block: -1}).Result()
	if err != nil || len(res[0].Messages) != 3 {
		t.Fatalf("the dead member's read: %v %v", res, err)
	}
	if err := e.raw.XDel(ctx, stream, res[0].Messages[0].ID).Err(); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, s, sent[3])

	r := newRecord()
	subscribeStreams(t, s, "g", []string{ch}, r.handler("b", nil))
	got := r.waitFor(t, 10*time.Second, "the dead member's messages", hasAll(sent[1:]...))
	if wait := got[0].at.Sub(leaseSet); wait < 500*time.Millisecond {
		t.Errorf("the partition was taken %v after the dead member's lease was set for 700ms", wait)
	}
	if !slices.Equal(ids(got), []string{sent[1].ID, sent[2].ID, sent[3].ID}) {
		t.Fatalf("handed %v, want %v", ids(got), []string{sent[1].ID, sent[2].ID, sent[3].ID})
	}
	for i, want := range []int{2, 2, 1} {
		if got[i].d.Attempt != want {
			t.Errorf("message %d: Attempt %d, want %d", i+1, got[i].d.Attempt, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		consumers, err := e.raw.XInfoConsumers(ctx, stream, "g").Result()
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.raw.XPending(ctx, stream, "g").Result()
		if err != nil {
			t.Fatal(err)
		}
		dead := slices.ContainsFunc(consumers, func(c redis.XInfoConsumer) bool { return c.Name == "dead" })
		if !dead && p.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the takeover: dead consumer still there %v, %d pending", dead, p.Count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An entry pending for a consumer that does not hold the partition (a
// stray reader) is taken by the holder once it has been idle ClaimMinIdle.
func TestStreamsClaimsStrays(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	s.ClaimMinIdle = 300 * time.Millisecond
	s.ClaimInterval = 100 * time.Millisecond
	ch := testenv.Name("strays")
	ctx := context.Background()
	stream := s.Stream(ch, s.Partition("k"))
	first, second := streamsMessage(ch, "k", 0), streamsMessage(ch, "k", 1)

	release := make(chan struct{})
	r := newRecord()
	subscribeStreams(t, s, "g", []string{ch}, r.handler("holder", func(ctx context.Context, d messaging.Delivery) error {
		if d.ID == first.ID {
			<-release // not reading meanwhile
		}
		return nil
	}))
	mustPublish(t, s, first)
	r.waitFor(t, 10*time.Second, "the first message", hasAll(first))
	mustPublish(t, s, second)
	res, err := e.raw.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "stray", Streams: []string{stream, ">"}, Count: 10, Block: -1}).Result()
	if err != nil || len(res[0].Messages) != 1 {
		t.Fatalf("the stray's read: %v %v", res, err)
	}
	strayRead := time.Now()
	close(release)

	got := r.waitFor(t, 10*time.Second, "the stray's message", hasAll(second))
	d := got[len(got)-1]
	if d.d.ID != second.ID || d.d.Attempt != 2 {
		t.Errorf("last handed %s attempt %d, want %s attempt 2", d.d.ID, d.d.Attempt, second.ID)
	}
	if wait := d.at.Sub(strayRead); wait < 250*time.Millisecond {
		t.Errorf("the stray's entry was taken after %v, before ClaimMinIdle", wait)
	}
}

// Two members of one group share the partitions; when one stops, the
// other takes its partitions over: every message handed once, in order
// per key.
func TestStreamsHandover(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	a, b := e.transport(), e.transport()
	ch := testenv.Name("handover")
	r := newRecord()
	slow := func(ctx context.Context, d messaging.Delivery) error { time.Sleep(2 * time.Millisecond); return nil }
	ra := subscribeStreams(t, a, "g", []string{ch}, r.handler("a", slow))
	subscribeStreams(t, b, "g", []string{ch}, r.handler("b", slow))

	var sent []messaging.Envelope
	for n := range 20 {
		for k := range 10 {
			sent = append(sent, streamsMessage(ch, fmt.Sprintf("key-%d", k), n))
		}
	}
	published := make(chan error, 1)
	go func() {
		for i := 0; i < len(sent); i += 10 {
			if err := a.Publish(context.Background(), sent[i:i+10]...); err != nil {
				published <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		published <- nil
	}()
	r.waitFor(t, 10*time.Second, "40 messages", func(got []delivered) bool { return len(got) >= 40 })
	ra.stop(t)
	stopped := time.Now()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	got := r.waitFor(t, 15*time.Second, "every message", hasAll(sent...))
	time.Sleep(300 * time.Millisecond)
	got = r.snapshot()

	n := map[string]int{}
	last := map[string]int{}
	var afterStop int
	for _, g := range got {
		n[g.d.ID]++
		var p struct{ N int }
		json.Unmarshal(g.d.Payload, &p)
		if prev, ok := last[g.d.Key]; ok && p.N < prev {
			t.Errorf("key %s: %d handed (to %s) after %d", g.d.Key, p.N, g.who, prev)
		}
		last[g.d.Key] = p.N
		if g.who == "a" && g.at.After(stopped) {
			afterStop++
		}
	}
	for _, m := range sent {
		if n[m.ID] != 1 {
			t.Errorf("message %s handed %d times", m.ID, n[m.ID])
		}
	}
	if afterStop > 0 {
		t.Errorf("%d messages handed to a after it stopped", afterStop)
	}
	count := map[string]int{}
	for _, g := range got {
		count[g.who]++
	}
	t.Logf("a took %d, b %d", count["a"], count["b"])
}

// Attempt counts on where the last subscription stopped: a message that
// failed three times comes to the next subscription with Attempt 4.
func TestStreamsAttemptsSurviveResubscribe(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	ch := testenv.Name("attempts")
	m := streamsMessage(ch, "k", 0)
	mustPublish(t, s, m)
	r := newRecord()
	var first *running
	ready := make(chan struct{})
	first = subscribeStreams(t, s, "g", []string{ch}, r.handler("a", func(ctx context.Context, d messaging.Delivery) error {
		if d.Attempt == 3 {
			<-ready
			first.cancel()
		}
		return errors.New("failing")
	}))
	close(ready)
	r.waitFor(t, 10*time.Second, "three attempts", func(got []delivered) bool { return len(got) >= 3 })
	first.stop(t)
	subscribeStreams(t, s, "g", []string{ch}, r.handler("b", nil))
	got := r.waitFor(t, 10*time.Second, "the message again", func(got []delivered) bool { return got[len(got)-1].who == "b" })
	var attempts []int
	for _, g := range got {
		attempts = append(attempts, g.d.Attempt)
	}
	if !slices.Equal(attempts, []int{1, 2, 3, 4}) {
		t.Errorf("attempts %v, want [1 2 3 4]", attempts)
	}
}

// Redis going away is waited out: Subscribe does not return, a
// subscription started meanwhile waits, Publish fails promptly; when
// Redis is back (empty), both subscriptions get what is published.
func TestStreamsSurvivesRedisOutage(t *testing.T) {
	srv := testenv.StartRedis(t)
	e := newStreamsEnv(t, srv.URL)
	s := e.transport()
	ch := testenv.Name("outage")
	r := newRecord()
	one := subscribeStreams(t, s, "g1", []string{ch}, r.handler("g1", nil))
	m0 := streamsMessage(ch, "k", 0)
	mustPublish(t, s, m0)
	r.waitFor(t, 10*time.Second, "the first message", hasAll(m0))

	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := time.Now()
	err := s.Publish(ctx, streamsMessage(ch, "k", 1))
	cancel()
	if err == nil {
		t.Fatal("Publish with Redis down succeeded")
	}
	t.Logf("Publish with Redis down failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	two := subscribeStreams(t, s, "g2", []string{ch}, r.handler("g2", nil))
	time.Sleep(1500 * time.Millisecond)
	for _, sub := range []*running{one, two} {
		select {
		case err := <-sub.done:
			t.Fatalf("Subscribe returned %v while Redis was down", err)
		default:
		}
	}

	srv.Restart(t)
	after := []messaging.Envelope{streamsMessage(ch, "k", 2), streamsMessage(ch, "other", 3)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.Publish(ctx, after...)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitFor(t, 10*time.Second, "both groups to get the messages published after the outage", func(got []delivered) bool {
		n := map[string]int{}
		for _, g := range got {
			for _, m := range after {
				if g.d.ID == m.ID {
					n[g.who]++
				}
			}
		}
		return n["g1"] == len(after) && n["g2"] == len(after)
	})
}

// Close stops running subscriptions, and later ones at once.
func TestStreamsClose(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	ch := testenv.Name("close")
	sub := subscribeStreams(t, s, "g", []string{ch}, func(context.Context, messaging.Delivery) error { return nil })
	time.Sleep(100 * time.Millisecond)
	s.Close()
	select {
	case err := <-sub.done:
		if !errors.Is(err, errStreamsClosed) {
			t.Errorf("Subscribe returned %v, want %v", err, errStreamsClosed)
		}
		sub.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe did not return within 10s of Close")
	}
	if err := s.Subscribe(context.Background(), "g", []string{ch}, nil); !errors.Is(err, errStreamsClosed) {
		t.Errorf("Subscribe after Close returned %v", err)
	}
}

// commandCalls returns how many times the server ran each command since
// its statistics were last reset.
func commandCalls(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		var v int
		fmt.Sscan(n, &v)
		calls[strings.TrimPrefix(name, "cmdstat_")] = v
	}
	return calls
}

// A partition is read in batches of BatchSize and acknowledged in bulk,
// with its reads: a backlog of 1,000 messages takes a few round trips,
// not one or two per message; every message is handed once, in order,
// and acknowledged.
func TestStreamsBatchesRoundTrips(t *testing.T) {
	srv := testenv.StartRedis(t)
	e := newStreamsEnv(t, srv.URL)
	s := e.transport()
	s.Partitions = 1
	s.AckInterval = time.Hour // only with the reads, and at the stop
	ch := testenv.Name("batches")
	var sent []messaging.Envelope
	for i := range 1000 {
		sent = append(sent, streamsMessage(ch, "k", i))
	}
	mustPublish(t, s, sent...)
	ctx := context.Background()
	if err := e.raw.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	r := newRecord()
	sub := subscribeStreams(t, s, "g", []string{ch}, r.handler("a", nil))
	got := r.waitFor(t, 20*time.Second, "every message", hasAll(sent...))
	sub.stop(t)
	calls := commandCalls(t, e.raw)
	t.Logf("1000 messages: %d XREADGROUP, %d XACK", calls["xreadgroup"], calls["xack"])
	// 4 full batches, the end of the pending entries, and a few blocked
	// reads while the test looks.
	if calls["xreadgroup"] > 30 || calls["xack"] > calls["xreadgroup"]+1 {
		t.Errorf("1000 messages took %d XREADGROUP and %d XACK", calls["xreadgroup"], calls["xack"])
	}
	if !slices.Equal(ids(got), ids(r.snapshot())) || len(got) != len(sent) {
		t.Fatalf("handed %d messages, want %d once each", len(r.snapshot()), len(sent))
	}
	for i, g := range got {
		if g.d.ID != sent[i].ID || g.d.Attempt != 1 {
			t.Fatalf("message %d: handed %s attempt %d, want %s attempt 1", i, g.d.ID, g.d.Attempt, sent[i].ID)
		}
	}
	p, err := e.raw.XPending(ctx, s.Stream(ch, 0), "g").Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 0 {
		t.Errorf("%d entries pending after every message was handled and the subscription stopped", p.Count)
	}
}

// Acknowledgements wait for the handler: an entry is never acknowledged
// before h returned nil for it; what h took is acknowledged before a
// failed entry's backoff and when the subscription stops, while the
// entries read but not handed get their delivery count back; the next
// subscription goes on from the entry that was in the handler.
func TestStreamsAcksOnlyWhatWasTaken(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	s.AckInterval = time.Hour
	s.RetryBackoff = 300 * time.Millisecond
	ch := testenv.Name("acks")
	ctx := context.Background()
	stream := s.Stream(ch, s.Partition("k"))
	var sent []messaging.Envelope
	for i := range 5 {
		sent = append(sent, streamsMessage(ch, "k", i))
	}
	mustPublish(t, s, sent...)
	entries, err := e.raw.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(entries) != 5 {
		t.Fatalf("the stream: %v %v", entries, err)
	}
	entryOf := map[string]string{} // stream entry ID -> message ID
	for _, m := range entries {
		entryOf[m.ID], _ = m.Values["id"].(string)
	}
	pendingNow := func() map[string]int64 { // called from handlers too
		p, err := e.raw.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 100}).Result()
		if err != nil {
			t.Errorf("XPENDING: %v", err)
		}
		out := map[string]int64{}
		for _, x := range p {
			out[entryOf[x.ID]] = x.RetryCount
		}
		return out
	}

	backoff := make(chan map[string]int64, 1)
	entered := make(chan map[string]int64, 1)
	r := newRecord()
	sub := subscribeStreams(t, s, "g", []string{ch}, r.handler("a", func(ctx context.Context, d messaging.Delivery) error {
		switch d.ID {
		case sent[2].ID:
			if d.Attempt == 1 {
				go func() { time.Sleep(150 * time.Millisecond); backoff <- pendingNow() }()
				return errors.New("not yet")
			}
		case sent[3].ID:
			entered <- pendingNow()
			<-ctx.Done() // in the handler when the subscription stops
			return ctx.Err()
		}
		return nil
	}))

	// During the failed entry's backoff, what h took before is acknowledged.
	var p map[string]int64
	select {
	case p = <-backoff:
	case <-time.After(10 * time.Second):
		t.Fatal("the third message did not fail within 10s")
	}
	for i, m := range sent {
		if _, pending := p[m.ID]; pending != (i >= 2) {
			t.Errorf("during the backoff of message 2, message %d pending: %v", i, pending)
		}
	}
	// In the handler: that entry and those after it are not acknowledged.
	select {
	case p = <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the fourth message was not handed within 10s")
	}
	for i, m := range sent {
		if _, pending := p[m.ID]; !pending && i >= 3 {
			t.Errorf("message %d acknowledged before it was handled", i)
		}
	}
	sub.stop(t)

	// Stopped: the taken entries are acknowledged, the one in the handler
	// keeps its delivery, the one read but not handed gets its back.
	p = pendingNow()
	want := map[string]int64{sent[3].ID: 1, sent[4].ID: 0}
	if len(p) != len(want) || p[sent[3].ID] != 1 || p[sent[4].ID] != 0 {
		t.Errorf("pending after the stop: %v, want %v", p, want)
	}

	subscribeStreams(t, s, "g", []string{ch}, r.handler("b", nil))
	got := r.waitFor(t, 10*time.Second, "the rest", func(got []delivered) bool { return got[len(got)-1].who == "b" && len(got) >= 7 })
	var attempts []string
	for _, g := range got {
		for i, m := range sent {
			if g.d.ID == m.ID {
				attempts = append(attempts, fmt.Sprintf("%s:%d#%d", g.who, i, g.d.Attempt))
			}
		}
	}
	wantAttempts := []string{"a:0#1", "a:1#1", "a:2#1", "a:2#2", "a:3#1", "b:3#2", "b:4#1"}
	if !slices.Equal(attempts, wantAttempts) {
		t.Errorf("handed %v, want %v", attempts, wantAttempts)
	}
}

// Pending entries are read in batches too: a dead member's backlog larger
// than BatchSize is handed whole, in order, each with the delivery it
// had, before what is new.
func TestStreamsPendingInBatches(t *testing.T) {
	e := newStreamsEnv(t, testenv.Redis(t))
	s := e.transport()
	s.BatchSize = 2
	ch := testenv.Name("pendingbatches")
	ctx := context.Background()
	stream := s.Stream(ch, s.Partition("k"))
	var sent []messaging.Envelope
	for i := range 6 {
		sent = append(sent, streamsMessage(ch, "k", i))
	}
	mustPublish(t, s, sent[:5]...)
	if err := e.raw.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The dead member read the five entries, and the first again.
	for _, count := range []int64{5, 0} {
		from := ">"
		if count == 0 {
			count, from = 1, "0"
		}
		if err := e.raw.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "dead", Streams: []string{stream, from}, Count: count, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish(t, s, sent[5])

	r := newRecord()
	subscribeStreams(t, s, "g", []string{ch}, r.handler("b", nil))
	got := r.waitFor(t, 10*time.Second, "every message", hasAll(sent...))
	time.Sleep(100 * time.Millisecond)
	got = r.snapshot()
	var want []string
	for _, m := range sent {
		want = append(want, m.ID)
	}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("handed %v, want the six messages once, in order", ids(got))
	}
	for i, want := range []int{3, 2, 2, 2, 2, 1} {
		if got[i].d.Attempt != want {
			t.Errorf("message %d: Attempt %d, want %d", i, got[i].d.Attempt, want)
		}
	}
}
