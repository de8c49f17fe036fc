package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
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
	"github.com/stockflow/stockflow/internal/transport/kafka"
)

const waitFor = 20 * time.Second

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newKafka(t *testing.T, addrs []string, opts ...kafka.Option) *kafka.Kafka {
	t.Helper()
	opts = append([]kafka.Option{
		kafka.RetryBackoff(10*time.Millisecond, 100*time.Millisecond),
		kafka.ClientOpts(kgo.HeartbeatInterval(100 * time.Millisecond)),
	}, opts...)
	k, err := kafka.New(addrs, testenv.Logger(t, slog.LevelWarn), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// subscribe runs Subscribe until the returned stop is called (or the test
// ends); stop waits for Subscribe to return, and checks it returned ctx's
// error.
func subscribe(t *testing.T, k *kafka.Kafka, group string, channels []string, h messaging.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Subscribe(ctx, group, channels, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Subscribe returned %v, want context.Canceled", err)
				}
			case <-time.After(waitFor):
				t.Errorf("Subscribe did not return after its ctx was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// collector records deliveries.
type collector struct {
	mu   sync.Mutex
	got  []messaging.Delivery
	cond chan struct{}
}

func newCollector() *collector { return &collector{cond: make(chan struct{}, 1)} }

func (c *collector) handle(_ context.Context, d messaging.Delivery) error {
	c.mu.Lock()
	c.got = append(c.got, d)
	c.mu.Unlock()
	select {
	case c.cond <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) deliveries() []messaging.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// wait waits until ok holds for the deliveries.
func (c *collector) wait(t *testing.T, what string, ok func([]messaging.Delivery) bool) []messaging.Delivery {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		got := c.deliveries()
		if ok(got) {
			return got
		}
		select {
		case <-c.cond:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got %d deliveries", what, len(got))
		}
	}
}

// waitN waits for n deliveries.
func (c *collector) waitN(t *testing.T, n int) []messaging.Delivery {
	t.Helper()
	return c.wait(t, fmt.Sprintf("%d deliveries", n), func(d []messaging.Delivery) bool { return len(d) >= n })
}

// waitIDs waits until every id was delivered at least once.
func (c *collector) waitIDs(t *testing.T, ids []string) []messaging.Delivery {
	t.Helper()
	return c.wait(t, fmt.Sprintf("%d messages", len(ids)), func(ds []messaging.Delivery) bool {
		seen := map[string]bool{}
		for _, d := range ds {
			seen[d.ID] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	})
}

func envelope(channel, key string, n int) messaging.Envelope {
	return messaging.Envelope{
		ID:         messaging.NewID(),
		Channel:    channel,
		Key:        key,
		OccurredAt: time.Now().UTC(),
		Payload:    json.RawMessage(fmt.Sprintf(`{"key":%q,"n":%d}`, key, n)),
	}
}

func publish(t *testing.T, k *kafka.Kafka, msgs ...messaging.Envelope) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := k.Publish(ctx, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func ids(ds []messaging.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// settle waits a little for deliveries that should not come.
func settle() { time.Sleep(300 * time.Millisecond) }

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"kafka://localhost:9092", []string{"localhost:9092"}},
		{"kafka://a:1,b:2/", []string{"a:1", "b:2"}},
		{"kafka://broker", []string{"broker:9092"}},
		{"kafka://[::1]:9093,[::1]", []string{"[::1]:9093", "[::1]:9092"}},
		{"kafka://", nil},
		{"redis://a:1", nil},
		{"kafka://a:1,,b:2", nil},
		{"kafka://user:pw@a:1", nil}, // a user with no mechanism
		{"kafka://a:1?sasl=plain", nil},
		{"kafka://user:pw@a:1?sasl=gssapi", nil},
		{"kafka://a:1?ca=/etc/ca.pem", nil}, // TLS files on a plain URL
		{"kafka+tls://a:1?cafile=/etc/ca.pem", nil},
		{"kafka+tls://user:pw@a:1,b?sasl=scram-sha-512", []string{"a:1", "b:9092"}},
		{"kafka://user:pw@a:1?sasl=PLAIN", []string{"a:1"}},
	} {
		u, err := kafka.ParseURL(tc.in)
		got := u.Brokers
		if tc.want == nil {
			if err == nil {
				t.Errorf("ParseURL(%q) = %v, want an error", tc.in, got)
			} else if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("ParseURL(%q): the error shows the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseURL(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	col := newCollector()
	subscribe(t, k, "g", []string{"line_allocated"}, col.handle)

	sent := messaging.Envelope{
		ID:            messaging.NewID(),
		Channel:       "line_allocated",
		Key:           "RED-CHAIR",
		CorrelationID: messaging.NewID(),
		CausationID:   messaging.NewID(),
		OccurredAt:    time.Date(2024, 3, 1, 12, 30, 45, 123456789, time.UTC),
		Payload:       json.RawMessage(`{"orderid":"o1","sku":"RED-CHAIR","qty":3,"batchref":"b1"}`),
	}
	publish(t, k, sent)
	d := col.waitN(t, 1)[0]
	if d.Attempt != 1 {
		t.Errorf("Attempt = %d, want 1", d.Attempt)
	}
	if d.ID != sent.ID || d.Channel != sent.Channel || d.Key != sent.Key || d.CorrelationID != sent.CorrelationID ||
		d.CausationID != sent.CausationID || !d.OccurredAt.Equal(sent.OccurredAt) || string(d.Payload) != string(sent.Payload) {
		t.Errorf("got %+v\nwant %+v", d.Envelope, sent)
	}

	// The topic was created with the default 8 partitions and the prefix.
	adm := kadm.NewClient(k.Client())
	topics, err := adm.ListTopics(context.Background(), "stockflow.line_allocated")
	if err != nil {
		t.Fatal(err)
	}
	if td, ok := topics["stockflow.line_allocated"]; !ok || len(td.Partitions) != 8 {
		t.Errorf("topic stockflow.line_allocated: %+v, want 8 partitions", td)
	}
}

func TestRecordFromOutside(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	col := newCollector()
	subscribe(t, k, "g", []string{"allocate"}, col.handle)
	// A stockflow message first (it creates the topic), then a bare JSON
	// record from a foreign producer.
	publish(t, k, envelope("allocate", "K", 1))
	at := time.Now().Truncate(time.Millisecond)
	r := &kgo.Record{Topic: "stockflow.allocate", Value: []byte(`{"sku":"LAMP"}`), Timestamp: at}
	if err := k.Client().ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var d messaging.Delivery
	for _, d = range col.waitN(t, 2) {
		if d.Key == "" {
			break
		}
	}
	// Its id is its place in the log, which a redelivery keeps.
	wantID := fmt.Sprintf("kafka:stockflow.allocate:%d:%d", r.Partition, r.Offset)
	if d.ID != wantID || d.Channel != "allocate" || string(d.Payload) != `{"sku":"LAMP"}` || !d.OccurredAt.Equal(at) {
		t.Errorf("got %+v, want id %s", d, wantID)
	}
}

func TestOrderPerKey(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	const keys, per = 5, 100

	var (
		mu       sync.Mutex
		last     = map[string]int{}
		inFlight = map[string]bool{}
		parallel int // most handlers running at once
		running  int
		errs     []string
	)
	col := newCollector()
	h := func(ctx context.Context, d messaging.Delivery) error {
		var p struct {
			Key string
			N   int
		}
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			return err
		}
		mu.Lock()
		if inFlight[p.Key] {
			errs = append(errs, "two messages of key "+p.Key+" handled at once")
		}
		inFlight[p.Key] = true
		running++
		parallel = max(parallel, running)
		if want := last[p.Key] + 1; p.N != want {
			errs = append(errs, fmt.Sprintf("key %s: got n=%d, want %d", p.Key, p.N, want))
		}
		last[p.Key] = p.N
		mu.Unlock()

		time.Sleep(100 * time.Microsecond)

		mu.Lock()
		inFlight[p.Key] = false
		running--
		mu.Unlock()
		return col.handle(ctx, d)
	}

	// Published before and while the group consumes, in batches.
	var msgs []messaging.Envelope
	for n := 1; n <= per; n++ {
		for key := range keys {
			msgs = append(msgs, envelope("batch_quantity_changed", "SKU-"+strconv.Itoa(key), n))
		}
	}
	publish(t, k, msgs[:250]...)
	subscribe(t, k, "g", []string{"batch_quantity_changed"}, h)
	for i := 250; i < len(msgs); i += 50 {
		publish(t, k, msgs[i:i+50]...)
	}
	col.waitN(t, keys*per)
	settle()

	mu.Lock()
	defer mu.Unlock()
	for _, e := range errs {
		t.Error(e)
	}
	if got := len(col.deliveries()); got != keys*per {
		t.Errorf("%d deliveries, want %d", got, keys*per)
	}
	// The keys were spread over several partitions.
	ends, err := kadm.NewClient(k.Client()).ListEndOffsets(context.Background(), "stockflow.batch_quantity_changed")
	if err != nil {
		t.Fatal(err)
	}
	used := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			used++
		}
	})
	if used < 2 {
		t.Errorf("%d partitions used by %d keys, want several", used, keys)
	}
	t.Logf("%d partitions used, at most %d handlers at once", used, parallel)
}

func TestRedeliveryAfterHandlerError(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	col := newCollector()
	h := func(ctx context.Context, d messaging.Delivery) error {
		col.handle(ctx, d)
		if string(d.Payload) == `{"key":"K","n":1}` && d.Attempt < 3 {
			return errors.New("not yet")
		}
		return nil
	}
	subscribe(t, k, "g", []string{"ch"}, h)
	sent := publish(t, k, envelope("ch", "K", 1), envelope("ch", "K", 2))
	got := col.waitN(t, 4)
	settle()
	got = col.deliveries()
	type da struct {
		id      string
		attempt int
	}
	var seq []da
	for _, d := range got {
		seq = append(seq, da{d.ID, d.Attempt})
	}
	want := []da{{sent[0], 1}, {sent[0], 2}, {sent[0], 3}, {sent[1], 1}}
	if !slices.Equal(seq, want) {
		t.Errorf("deliveries %v, want %v", seq, want)
	}
}

func TestCrashBeforeCommit(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	sent := publish(t, k, envelope("ch", "K", 0), envelope("ch", "K", 1), envelope("ch", "K", 2))

	// The first member acknowledges message 0 and is stopped while
	// message 1 is in its handler.
	col := newCollector()
	inHandler := make(chan struct{})
	stop := subscribe(t, k, "g", []string{"ch"}, func(ctx context.Context, d messaging.Delivery) error {
		col.handle(ctx, d)
		if d.ID == sent[1] {
			close(inHandler)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	select {
	case <-inHandler:
	case <-time.After(waitFor):
		t.Fatal("message 1 never reached the handler")
	}
	stop()
	if got := ids(col.deliveries()); !slices.Equal(got, sent[:2]) {
		t.Fatalf("first member got %v, want %v", got, sent[:2])
	}

	// The group hands message 1 again, not message 0.
	col2 := newCollector()
	subscribe(t, k, "g", []string{"ch"}, col2.handle)
	got := col2.waitN(t, 2)
	settle()
	got = col2.deliveries()
	if !slices.Equal(ids(got), sent[1:]) {
		t.Fatalf("second member got %v, want %v", ids(got), sent[1:])
	}
	if got[0].Attempt != 2 {
		t.Errorf("redelivered message: Attempt = %d, want 2", got[0].Attempt)
	}

}

func TestGroupPosition(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	first := publish(t, k, envelope("ch", "A", 1), envelope("ch", "B", 1), envelope("ch", "C", 1))

	// A group new to the broker starts at the oldest message.
	col := newCollector()
	stop := subscribe(t, k, "g", []string{"ch"}, col.handle)
	col.waitIDs(t, first)
	stop()

	// A group that was away gets what it missed, and only that.
	missed := publish(t, k, envelope("ch", "A", 2), envelope("ch", "D", 1))
	col2 := newCollector()
	subscribe(t, k, "g", []string{"ch"}, col2.handle)
	col2.waitIDs(t, missed)
	settle()
	got := ids(col2.deliveries())
	slices.Sort(got)
	slices.Sort(missed)
	if !slices.Equal(got, missed) {
		t.Errorf("returning group got %v, want %v", got, missed)
	}

	// Another new group gets everything.
	col3 := newCollector()
	subscribe(t, k, "other", []string{"ch"}, col3.handle)
	col3.waitIDs(t, append(first, missed...))
}

func TestRewind(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	sent := publish(t, k, envelope("a", "X", 1), envelope("b", "Y", 1), envelope("a", "Z", 1))
	channels := []string{"a", "b"}

	col := newCollector()
	stop := subscribe(t, k, "g", channels, col.handle)
	col.waitIDs(t, sent)
	stop()

	if err := k.Rewind(context.Background(), "g", channels); err != nil {
		t.Fatal(err)
	}
	col2 := newCollector()
	subscribe(t, k, "g", channels, col2.handle)
	col2.waitIDs(t, sent)
	settle()
	if n := len(col2.deliveries()); n != len(sent) {
		t.Errorf("%d deliveries after rewind, want %d", n, len(sent))
	}

	// Rewinding a group that never consumed, on a channel never used, is
	// fine too.
	if err := k.Rewind(context.Background(), "new", []string{"never_used"}); err != nil {
		t.Fatal(err)
	}
}

func TestTwoGroupsEachGetAll(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	a, b := newCollector(), newCollector()
	subscribe(t, k, "ga", []string{"ch"}, a.handle)
	subscribe(t, k, "gb", []string{"ch"}, b.handle)
	var msgs []messaging.Envelope
	for i := range 50 {
		msgs = append(msgs, envelope("ch", "K"+strconv.Itoa(i%7), i))
	}
	sent := publish(t, k, msgs...)
	a.waitIDs(t, sent)
	b.waitIDs(t, sent)
}

func TestTwoMembersShareTheWork(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	type handled struct{ member, key, id string }
	var (
		mu  sync.Mutex
		log []handled
	)
	col := newCollector()
	member := func(name string) messaging.Handler {
		return func(ctx context.Context, d messaging.Delivery) error {
			mu.Lock()
			log = append(log, handled{name, d.Key, d.ID})
			mu.Unlock()
			return col.handle(ctx, d)
		}
	}
	subscribe(t, k, "g", []string{"ch"}, member("m1"))
	subscribe(t, k, "g", []string{"ch"}, member("m2"))

	// Wait until the group is stable with both members assigned.
	adm := kadm.NewClient(k.Client())
	col.wait(t, "a stable group of two", func([]messaging.Delivery) bool {
		gs, err := adm.DescribeGroups(context.Background(), "g")
		if err != nil {
			return false
		}
		g := gs["g"]
		if g.State != "Stable" || len(g.Members) != 2 {
			return false
		}
		for _, m := range g.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) == 0 || len(a.Topics[0].Partitions) == 0 {
				return false
			}
		}
		return true
	})

	var msgs []messaging.Envelope
	for i := range 200 {
		msgs = append(msgs, envelope("ch", "SKU-"+strconv.Itoa(i%20), i))
	}
	sent := publish(t, k, msgs...)
	col.waitIDs(t, sent)

	mu.Lock()
	defer mu.Unlock()
	keyMember := map[string]string{}
	perMember := map[string]int{}
	for _, h := range log {
		perMember[h.member]++
		if m, ok := keyMember[h.key]; ok && m != h.member {
			t.Errorf("key %s handled by %s and %s: its partition is owned by one member", h.key, m, h.member)
		}
		keyMember[h.key] = h.member
	}
	if perMember["m1"] == 0 || perMember["m2"] == 0 {
		t.Errorf("work per member: %v, want both to work", perMember)
	}
	t.Logf("work per member: %v", perMember)
}

func TestProducerIsIdempotent(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs())
	if v := k.Client().OptValue(kgo.DisableIdempotentWrite); v != false {
		t.Errorf("DisableIdempotentWrite = %v, want false", v)
	}
	if v := k.Client().OptValue(kgo.RequiredAcks); v != kgo.AllISRAcks() {
		t.Errorf("RequiredAcks = %v, want all ISR", v)
	}
	id, _, err := k.Client().ProducerID(context.Background())
	if err != nil || id < 0 {
		t.Fatalf("ProducerID = %d, %v; want an idempotent producer id", id, err)
	}

	// The broker writes the first produce but the reply is lost (timed
	// out): the client sends it again, and the broker drops the
	// duplicate.
	publish(t, k, envelope("ch", "warm", 0)) // creates the topic
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "stockflow.ch", Err: kerr.RequestTimedOut})
	var msgs []messaging.Envelope
	for i := range 10 {
		msgs = append(msgs, envelope("ch", "K", i))
	}
	publish(t, k, msgs...)
	if fault.Hits() == 0 {
		t.Fatal("the fault never fired")
	}
	col := newCollector()
	subscribe(t, k, "g", []string{"ch"}, col.handle)
	col.waitN(t, 11)
	settle()
	if n := len(col.deliveries()); n != 11 {
		t.Errorf("%d records after a retried produce, want 11 (no duplicates)", n)
	}
}

func TestSubscribeOutlivesBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	c1, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c1.Close) // if the test fails before it does
	addrs := c1.ListenAddrs()
	_, port, _ := net.SplitHostPort(addrs[0])
	p, _ := strconv.Atoi(port)

	// franz-go refreshes metadata at most every 5s by default: the test
	// would wait that long after the restart.
	k := newKafka(t, addrs, kafka.ClientOpts(kgo.MetadataMinAge(100*time.Millisecond)))
	col := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- k.Subscribe(ctx, "g", []string{"ch"}, col.handle) }()

	before := publish(t, k, envelope("ch", "A", 1), envelope("ch", "B", 1))
	col.waitIDs(t, before)
	time.Sleep(200 * time.Millisecond) // let the commit land

	c1.Close()
	// While the broker is down, a publish waits (or fails and is sent
	// again, as the relay does).
	after := []messaging.Envelope{envelope("ch", "A", 2), envelope("ch", "C", 1)}
	published := make(chan error, 1)
	go func() {
		var err error
		for range 10 {
			pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = k.Publish(pctx, after...)
			pcancel()
			if err == nil {
				break
			}
		}
		published <- err
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Subscribe returned while the broker was down: %v", err)
	default:
	}

	c2, err := kfake.NewCluster(kfake.Ports(p), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := <-published; err != nil {
		t.Fatalf("Publish after restart: %v", err)
	}
	col.waitIDs(t, append(before, after[0].ID, after[1].ID))
	settle()
	// The group kept its position: the messages before the restart were
	// not handed again (their commit was kept by the broker).
	seen := map[string]int{}
	for _, d := range col.deliveries() {
		seen[d.ID]++
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Errorf("message %s delivered %d times", id, seen[id])
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe returned %v", err)
		}
	case <-time.After(waitFor):
		t.Error("Subscribe did not return")
	}
	k.Close() // before the broker goes
}

func TestCloseEndsSubscriptions(t *testing.T) {
	c := newCluster(t)
	k, err := kafka.New(c.ListenAddrs(), testenv.Logger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	done := make(chan error, 1)
	go func() { done <- k.Subscribe(context.Background(), "g", []string{"ch"}, col.handle) }()
	sent := publish(t, k, envelope("ch", "K", 1))
	col.waitIDs(t, sent)
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Subscribe returned nil after Close")
		}
	case <-time.After(waitFor):
		t.Fatal("Subscribe did not return after Close")
	}
	if err := k.Publish(context.Background(), envelope("ch", "K", 2)); err == nil {
		t.Error("Publish after Close succeeded")
	}
}

var _ messaging.Transport = (*kafka.Kafka)(nil)
var _ messaging.Rewinder = (*kafka.Kafka)(nil)

// A member joining while another is busy takes over partitions between
// polls, after their handled records were committed: nothing is lost, and
// nothing handled twice.
func TestMemberJoinsMidStream(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c.ListenAddrs(), kafka.MaxPollRecords(20))
	var (
		mu        sync.Mutex
		perMember = map[string]int{}
		handled   = map[string]int{}
		lastSeq   = map[string]int{}
		problems  []string
	)
	col := newCollector()
	member := func(name string) messaging.Handler {
		return func(ctx context.Context, d messaging.Delivery) error {
			var p struct {
				Key string
				N   int
			}
			json.Unmarshal(d.Payload, &p)
			mu.Lock()
			perMember[name]++
			handled[d.ID]++
			if last, ok := lastSeq[p.Key]; ok && p.N < last {
				problems = append(problems, fmt.Sprintf("key %s: n=%d after %d", p.Key, p.N, last))
			}
			lastSeq[p.Key] = p.N
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			return col.handle(ctx, d)
		}
	}
	var msgs []messaging.Envelope
	for n := range 40 {
		for key := range 10 {
			msgs = append(msgs, envelope("ch", "SKU-"+strconv.Itoa(key), n))
		}
	}
	sent := publish(t, k, msgs...)
	subscribe(t, k, "g", []string{"ch"}, member("m1"))
	col.waitN(t, 50)
	subscribe(t, k, "g", []string{"ch"}, member("m2"))
	col.waitIDs(t, sent)
	settle()

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	dups := 0
	for _, n := range handled {
		dups += n - 1
	}
	if dups > 0 {
		t.Errorf("%d messages handled twice", dups)
	}
	if perMember["m2"] == 0 {
		t.Errorf("the second member took no work: %v", perMember)
	}
	t.Logf("work per member: %v", perMember)
}
