package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/redis"
)

// client returns a plain client of the private server s, closed at
// cleanup.
func client(t testing.TB, s *testenv.Server) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// newPubSub returns a transport on s, closed at cleanup.
func newPubSub(t testing.TB, s *testenv.Server) *redis.PubSub {
	t.Helper()
	p, err := redis.NewPubSub(s.URL, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// subscriber runs Subscribe in the background and hands what h is given
// to the test.
type subscriber struct {
	deliveries chan messaging.Delivery
	cancel     context.CancelFunc
	done       chan error // Subscribe's result
}

// subscribe runs p.Subscribe on channels with handler h (nil: accept
// every delivery), and waits until Redis counts its subscription. At
// cleanup the subscription is cancelled and the server killed, so that
// Subscribe returns however it was blocked.
func subscribe(t testing.TB, s *testenv.Server, p *redis.PubSub, h messaging.Handler, channels ...string) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscriber{deliveries: make(chan messaging.Delivery, 1000), cancel: cancel, done: make(chan error, 1)}
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
	go func() { sub.done <- p.Subscribe(ctx, "test", channels, handler) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sub.done:
			return
		case <-time.After(500 * time.Millisecond):
		}
		s.Kill() // see TestSubscribeReturnsWhenCancelled
		select {
		case <-sub.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Subscribe did not return after its context was cancelled and the server killed")
		}
	})
	c := client(t, s)
	for _, ch := range channels {
		waitSubscribed(t, c, ch)
	}
	return sub
}

func waitSubscribed(t testing.TB, c *goredis.Client, channel string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := c.PubSubNumSub(context.Background(), channel).Result()
		if err == nil && n[channel] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscriber on %s within 10s (last error: %v)", channel, err)
		}
		time.Sleep(10 * time.Millisecond)
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
		t.Fatalf("unexpected delivery %+v", got)
	case <-time.After(d):
	}
}

// rawSubscribe subscribes a plain client to channel, confirmed.
func rawSubscribe(t testing.TB, s *testenv.Server, channel string) <-chan *goredis.Message {
	t.Helper()
	c := client(t, s)
	ps := c.Subscribe(context.Background(), channel)
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	return ps.Channel()
}

func receiveRaw(t testing.TB, ch <-chan *goredis.Message) string {
	t.Helper()
	select {
	case m := <-ch:
		return m.Payload
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return ""
	}
}

func publishRaw(t testing.TB, s *testenv.Server, channel, payload string) {
	t.Helper()
	if err := client(t, s).Publish(context.Background(), channel, payload).Err(); err != nil {
		t.Fatal(err)
	}
}

func envelope(channel, payload string) messaging.Envelope {
	return messaging.Envelope{
		ID:            messaging.NewID(),
		Channel:       channel,
		Key:           "sku-1",
		CorrelationID: messaging.NewID(),
		CausationID:   messaging.NewID(),
		OccurredAt:    time.Date(2011, 1, 2, 3, 4, 5, 123456789, time.UTC),
		Payload:       json.RawMessage(payload),
	}
}

func jsonFields(t testing.TB, payload []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("payload %q is not a JSON object: %v", payload, err)
	}
	return m
}

// A message published by the transport comes back with its ids, its time
// and its fields; messages published together keep their order.
func TestRoundTripKeepsIDs(t *testing.T) {
	s := testenv.StartRedis(t)
	p := newPubSub(t, s)
	sub := subscribe(t, s, p, nil, "line_allocated")
	raw := rawSubscribe(t, s, "line_allocated")

	envs := []messaging.Envelope{
		envelope("line_allocated", `{"orderid":"o1","sku":"sku-1","qty":3,"batchref":"b1"}`),
		envelope("line_allocated", `{"orderid":"o2","sku":"sku-1","qty":4,"batchref":"b1"}`),
		envelope("line_allocated", `{"orderid":"o3","sku":"sku-1","qty":5,"batchref":"b2"}`),
	}
	if err := p.Publish(context.Background(), envs...); err != nil {
		t.Fatal(err)
	}
	for i, want := range envs {
		d := sub.next(t, 5*time.Second)
		if d.ID != want.ID || d.CorrelationID != want.CorrelationID || d.CausationID != want.CausationID {
			t.Errorf("delivery %d ids (%s, %s, %s), want (%s, %s, %s)", i, d.ID, d.CorrelationID, d.CausationID, want.ID, want.CorrelationID, want.CausationID)
		}
		if !d.OccurredAt.Equal(want.OccurredAt) {
			t.Errorf("delivery %d OccurredAt %v, want %v", i, d.OccurredAt, want.OccurredAt)
		}
		if d.Channel != "line_allocated" || d.Attempt != 1 {
			t.Errorf("delivery %d: channel %q, attempt %d; want line_allocated, 1", i, d.Channel, d.Attempt)
		}
		got, wantFields := jsonFields(t, d.Payload), jsonFields(t, want.Payload)
		for k, v := range wantFields {
			if got[k] != v {
				t.Errorf("delivery %d: %s = %v, want %v (payload %s)", i, k, got[k], v, d.Payload)
			}
		}

		// On the wire: the book's fields plus the ids, one JSON object.
		wire := jsonFields(t, []byte(receiveRaw(t, raw)))
		if wire["orderid"] != wantFields["orderid"] || wire["message_id"] != want.ID ||
			wire["correlation_id"] != want.CorrelationID || wire["causation_id"] != want.CausationID {
			t.Errorf("message %d on the wire: %v", i, wire)
		}
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(wire["occurred_at"])); err != nil || !at.Equal(want.OccurredAt) {
			t.Errorf("message %d on the wire: occurred_at %v, want %v", i, wire["occurred_at"], want.OccurredAt)
		}
	}
}

// A message from outside that carries no ids is delivered as it is, with
// an empty ID (the consumer gives it one).
func TestOutsideMessageWithoutIDs(t *testing.T) {
	s := testenv.StartRedis(t)
	p := newPubSub(t, s)
	sub := subscribe(t, s, p, nil, "change_batch_quantity")

	for _, payload := range []string{`{"batchref": "b1", "qty": 5}`, `{}`, `not json`, ``, `[1, 2]`} {
		publishRaw(t, s, "change_batch_quantity", payload)
		d := sub.next(t, 5*time.Second)
		if d.ID != "" || d.CorrelationID != "" || d.CausationID != "" || !d.OccurredAt.IsZero() {
			t.Errorf("%q: delivered with ids (%q, %q, %q, %v), want none", payload, d.ID, d.CorrelationID, d.CausationID, d.OccurredAt)
		}
		if string(d.Payload) != payload || d.Channel != "change_batch_quantity" || d.Attempt != 1 {
			t.Errorf("%q: delivered %q on %q, attempt %d", payload, d.Payload, d.Channel, d.Attempt)
		}
	}
}

// An empty object, and payloads that are not objects, travel too.
func TestEmptyAndNonObjectPayloads(t *testing.T) {
	s := testenv.StartRedis(t)
	p := newPubSub(t, s)
	sub := subscribe(t, s, p, nil, "ch")
	raw := rawSubscribe(t, s, "ch")

	for _, payload := range []string{`{}`, ` { } `, "{\n}"} {
		env := envelope("ch", payload)
		if err := p.Publish(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		wire := receiveRaw(t, raw)
		fields := jsonFields(t, []byte(wire))
		if fields["message_id"] != env.ID || len(fields) != 5 {
			t.Errorf("%q on the wire: %s, want the ids and nothing else", payload, wire)
		}
		d := sub.next(t, 5*time.Second)
		if d.ID != env.ID || d.CorrelationID != env.CorrelationID || d.CausationID != env.CausationID {
			t.Errorf("%q: delivered ids (%s, %s, %s), want (%s, %s, %s)", payload, d.ID, d.CorrelationID, d.CausationID, env.ID, env.CorrelationID, env.CausationID)
		}
	}
	// A payload that is not an object goes as it is, without ids.
	for _, payload := range []string{`[1,2]`, `"text"`, `7`} {
		if err := p.Publish(context.Background(), envelope("ch", payload)); err != nil {
			t.Fatal(err)
		}
		if wire := receiveRaw(t, raw); wire != payload {
			t.Errorf("%s on the wire: %s", payload, wire)
		}
		if d := sub.next(t, 5*time.Second); string(d.Payload) != payload || d.ID != "" {
			t.Errorf("%s delivered as %q with id %q", payload, d.Payload, d.ID)
		}
	}
	// Publishing nothing is a no-op.
	if err := p.Publish(context.Background()); err != nil {
		t.Errorf("Publish(): %v", err)
	}
}

// When the server goes away and comes back, the subscription resumes by
// itself; publishing fails meanwhile, promptly.
func TestReconnectAfterServerRestart(t *testing.T) {
	s := testenv.StartRedis(t)
	p := newPubSub(t, s)
	sub := subscribe(t, s, p, nil, "ch")

	publishRaw(t, s, "ch", `{"n": 1}`)
	if d := sub.next(t, 5*time.Second); string(d.Payload) != `{"n": 1}` {
		t.Fatalf("delivered %s", d.Payload)
	}

	s.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := time.Now()
	err := p.Publish(ctx, envelope("ch", `{"n": 2}`))
	cancel()
	if err == nil {
		t.Fatal("Publish with the server down succeeded")
	}
	t.Logf("Publish with the server down failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	time.Sleep(300 * time.Millisecond) // let the subscriber notice and back off

	s.Restart(t)
	waitSubscribed(t, client(t, s), "ch")
	publishRaw(t, s, "ch", `{"n": 3}`)
	if d := sub.next(t, 5*time.Second); string(d.Payload) != `{"n": 3}` {
		t.Fatalf("after the restart, delivered %s", d.Payload)
	}
	env := envelope("ch", `{"n": 4}`)
	if err := p.Publish(context.Background(), env); err != nil {
		t.Fatalf("Publish after the restart: %v", err)
	}
	if d := sub.next(t, 5*time.Second); d.ID != env.ID {
		t.Fatalf("after the restart, delivered %+v, want id %s", d, env.ID)
	}
}

// A message whose handler fails is handed again in place, Attempt
// counting up, until the handler takes it or MaxAttempts is reached; the
// subscriber then goes on.
func TestFailingHandlerRetried(t *testing.T) {
	s := testenv.StartRedis(t)
	p := newPubSub(t, s)
	p.MaxAttempts = 4
	fail := errors.New("not now")
	var mu sync.Mutex
	attempts := map[string][]int{}
	h := func(ctx context.Context, d messaging.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		key := string(d.Payload)
		attempts[key] = append(attempts[key], d.Attempt)
		switch {
		case key == `{"fail":"twice"}` && d.Attempt <= 2:
			return fail
		case key == `{"fail":"always"}`:
			return fail
		}
		return nil
	}
	sub := subscribe(t, s, p, h, "ch")

	publishRaw(t, s, "ch", `{"fail":"twice"}`)
	publishRaw(t, s, "ch", `{"fail":"always"}`)
	publishRaw(t, s, "ch", `{"fail":"never"}`)
	var order []string
	for range 3 + 4 + 1 {
		order = append(order, string(sub.next(t, 10*time.Second).Payload))
	}
	sub.none(t, 300*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	for key, want := range map[string][]int{`{"fail":"twice"}`: {1, 2, 3}, `{"fail":"always"}`: {1, 2, 3, 4}, `{"fail":"never"}`: {1}} {
		if got := attempts[key]; !slices.Equal(got, want) {
			t.Errorf("%s: attempts %v, want %v", key, got, want)
		}
	}
	// In place: the next message waits for the retries of the one before.
	want := []string{`{"fail":"twice"}`, `{"fail":"twice"}`, `{"fail":"twice"}`,
		`{"fail":"always"}`, `{"fail":"always"}`, `{"fail":"always"}`, `{"fail":"always"}`, `{"fail":"never"}`}
	if !slices.Equal(order, want) {
		t.Errorf("deliveries in the order %v, want %v", order, want)
	}
}

// Subscribe returns ctx's error once ctx is done, promptly, even when no
// message comes.
func TestSubscribeReturnsWhenCancelled(t *testing.T) {
	s := testenv.StartRedis(t)
	p := newPubSub(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.Subscribe(ctx, "test", []string{"ch"}, func(context.Context, messaging.Delivery) error { return nil })
	}()
	waitSubscribed(t, client(t, s), "ch")

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe returned %v, want context.Canceled", err)
		}
		return
	case <-time.After(3 * time.Second):
	}
	s.Kill() // unblocks it
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("Subscribe did not return even after the server was killed")
	}
	t.Error("Subscribe did not return within 3s of its context being cancelled")
}
