package inproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/messaging"
)

// subscribers returns how many subscriptions t has on channel.
func subscribers(t *Transport, channel string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.subs[channel])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recorder is a group's handler that records deliveries, failing while
// fail says so.
type recorder struct {
	mu   sync.Mutex
	got  []messaging.Delivery
	fail func(d messaging.Delivery) error
}

func (r *recorder) handle(ctx context.Context, d messaging.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
	if r.fail != nil {
		return r.fail(d)
	}
	return nil
}

func (r *recorder) deliveries() []messaging.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) ids() []string {
	var out []string
	for _, d := range r.deliveries() {
		out = append(out, fmt.Sprintf("%s#%d", d.ID, d.Attempt))
	}
	return out
}

// subscribe subscribes h in the background until the test ends, and waits
// until the subscription is in place. The returned cancel unsubscribes and
// returns Subscribe's error.
func subscribe(t *testing.T, tr *Transport, group string, channels []string, h messaging.Handler) (cancel func() error) {
	t.Helper()
	before := make(map[string]int)
	for _, c := range channels {
		before[c] = subscribers(tr, c)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Subscribe(ctx, group, channels, h) }()
	waitFor(t, "subscription of "+group, func() bool {
		for _, c := range channels {
			if subscribers(tr, c) <= before[c] {
				return false
			}
		}
		return true
	})
	var once sync.Once
	var err error
	cancel = func() error {
		once.Do(func() {
			stop()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Errorf("Subscribe of %s did not return after cancel", group)
			}
		})
		return err
	}
	t.Cleanup(func() { cancel() })
	return cancel
}

func msg(id, channel string) messaging.Envelope {
	return messaging.Envelope{
		ID:            id,
		Channel:       channel,
		Key:           "k",
		CorrelationID: "corr",
		CausationID:   "cause",
		OccurredAt:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		Payload:       json.RawMessage(`{"id":"` + id + `"}`),
	}
}

func TestPublishToEveryGroupInOrder(t *testing.T) {
	tr := New()
	a, b, c := &recorder{}, &recorder{}, &recorder{}
	subscribe(t, tr, "alpha", []string{"orders"}, a.handle)
	subscribe(t, tr, "beta", []string{"orders", "stock"}, b.handle)
	subscribe(t, tr, "gamma", []string{"stock"}, c.handle)

	msgs := []messaging.Envelope{msg("1", "orders"), msg("2", "stock"), msg("3", "orders"), msg("4", "other"), msg("5", "stock")}
	if err := tr.Publish(context.Background(), msgs...); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	tests := []struct {
		group string
		r     *recorder
		want  []string
	}{
		{"alpha", a, []string{"1#1", "3#1"}},
		{"beta", b, []string{"1#1", "2#1", "3#1", "5#1"}},
		{"gamma", c, []string{"2#1", "5#1"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.r.ids()); diff != "" {
			t.Errorf("group %s got (-want +got):\n%s", tt.group, diff)
		}
	}
	// Deliveries carry the envelope intact.
	if diff := cmp.Diff(messaging.Delivery{Envelope: msgs[0], Attempt: 1}, a.deliveries()[0]); diff != "" {
		t.Errorf("delivery (-want +got):\n%s", diff)
	}
}

func TestPublishRetries(t *testing.T) {
	errFlaky := errors.New("flaky")
	tests := []struct {
		name         string
		maxAttempts  int
		failAttempts int
		wantAttempts []int
		wantErr      bool
	}{
		{"no failure", 3, 0, []int{1}, false},
		{"fails twice", 3, 2, []int{1, 2, 3}, false},
		{"always fails", 3, 100, []int{1, 2, 3}, true},
		{"always fails, one attempt", 1, 100, []int{1}, true},
		{"default max attempts", 0, 100, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New()
			tr.Retry = 50 * time.Microsecond
			tr.MaxAttempts = tt.maxAttempts // 0: the default, 10 (50µs doubling ten times is about 50ms)
			r := &recorder{fail: func(d messaging.Delivery) error {
				if d.Attempt <= tt.failAttempts {
					return fmt.Errorf("attempt %d: %w", d.Attempt, errFlaky)
				}
				return nil
			}}
			subscribe(t, tr, "flaky", []string{"orders"}, r.handle)
			err := tr.Publish(context.Background(), msg("m1", "orders"))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Publish = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, errFlaky) {
					t.Errorf("Publish error %v does not wrap the handler's", err)
				}
				max := tt.maxAttempts
				if max == 0 {
					max = 10
				}
				want := fmt.Sprintf("inproc: group flaky did not take message m1 after %d attempts: attempt %d: flaky", max, max)
				if err.Error() != want {
					t.Errorf("Publish error = %q, want %q", err, want)
				}
			}
			var attempts []int
			for _, d := range r.deliveries() {
				attempts = append(attempts, d.Attempt)
				if d.ID != "m1" {
					t.Errorf("delivered %q, want m1", d.ID)
				}
			}
			if diff := cmp.Diff(tt.wantAttempts, attempts); diff != "" {
				t.Errorf("attempts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublishRetryWaitDoubles(t *testing.T) {
	tr := New()
	tr.Retry = 10 * time.Millisecond
	tr.MaxAttempts = 4
	var times []time.Time
	subscribe(t, tr, "g", []string{"c"}, func(ctx context.Context, d messaging.Delivery) error {
		times = append(times, time.Now())
		if d.Attempt < 4 {
			return errors.New("again")
		}
		return nil
	})
	if err := tr.Publish(context.Background(), msg("m", "c")); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	if len(times) != 4 {
		t.Fatalf("got %d attempts, want 4", len(times))
	}
	for i, min := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond} {
		if gap := times[i+1].Sub(times[i]); gap < min {
			t.Errorf("wait before attempt %d = %v, want at least %v", i+2, gap, min)
		}
	}
}

func TestPublishFailureStopsTheBatch(t *testing.T) {
	tr := New()
	tr.Retry, tr.MaxAttempts = time.Microsecond, 2
	a := &recorder{fail: func(d messaging.Delivery) error {
		if d.ID == "2" {
			return errors.New("refused")
		}
		return nil
	}}
	subscribe(t, tr, "a", []string{"c"}, a.handle)
	err := tr.Publish(context.Background(), msg("1", "c"), msg("2", "c"), msg("3", "c"))
	if err == nil {
		t.Fatal("Publish = nil, want an error")
	}
	// The caller (the relay) publishes them all again; 3 was not delivered.
	if diff := cmp.Diff([]string{"1#1", "2#1", "2#2"}, a.ids()); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestPublishCancelledWhileRetrying(t *testing.T) {
	tr := New()
	tr.Retry, tr.MaxAttempts = time.Hour, 5
	calls := atomic.Int32{}
	subscribe(t, tr, "g", []string{"c"}, func(context.Context, messaging.Delivery) error {
		calls.Add(1)
		return errors.New("no")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Publish(ctx, msg("m", "c")) }()
	waitFor(t, "first delivery", func() bool { return calls.Load() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Publish = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish did not return when its ctx was cancelled")
	}
}

func TestPublishNoSubscribers(t *testing.T) {
	tr := New()
	if err := tr.Publish(context.Background(), msg("1", "nobody")); err != nil {
		t.Errorf("Publish with no subscribers = %v", err)
	}
	if err := tr.Publish(context.Background()); err != nil {
		t.Errorf("Publish of nothing = %v", err)
	}
	r := &recorder{}
	subscribe(t, tr, "g", []string{"somebody"}, r.handle)
	if err := tr.Publish(context.Background(), msg("2", "nobody")); err != nil {
		t.Errorf("Publish to a channel nobody subscribes = %v", err)
	}
	if len(r.deliveries()) != 0 {
		t.Errorf("subscriber of another channel got %v", r.ids())
	}
}

func TestSubscribeReturnsOnCancelAndUnsubscribes(t *testing.T) {
	tr := New()
	a, b := &recorder{}, &recorder{}
	cancelA := subscribe(t, tr, "a", []string{"x", "y"}, a.handle)
	subscribe(t, tr, "b", []string{"x"}, b.handle)

	if err := cancelA(); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe = %v, want context.Canceled", err)
	}
	if n := subscribers(tr, "x"); n != 1 {
		t.Errorf("channel x has %d subscribers after a left, want 1", n)
	}
	if n := subscribers(tr, "y"); n != 0 {
		t.Errorf("channel y has %d subscribers after a left, want 0", n)
	}
	if err := tr.Publish(context.Background(), msg("1", "x"), msg("2", "y")); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	if len(a.deliveries()) != 0 {
		t.Errorf("group that left got %v", a.ids())
	}
	if diff := cmp.Diff([]string{"1#1"}, b.ids()); diff != "" {
		t.Errorf("remaining group got (-want +got):\n%s", diff)
	}

	// The same group may come back.
	a2 := &recorder{}
	subscribe(t, tr, "a", []string{"y"}, a2.handle)
	tr.Publish(context.Background(), msg("3", "y"))
	if diff := cmp.Diff([]string{"3#1"}, a2.ids()); diff != "" {
		t.Errorf("group back got (-want +got):\n%s", diff)
	}
}

func TestSubscribeDeadline(t *testing.T) {
	tr := New()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := tr.Subscribe(ctx, "g", []string{"c"}, func(context.Context, messaging.Delivery) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Subscribe = %v, want context.DeadlineExceeded", err)
	}
	if n := subscribers(tr, "c"); n != 0 {
		t.Errorf("%d subscribers left", n)
	}
}

func TestGroupThatLeftIsSkipped(t *testing.T) {
	// A subscription whose ctx is done but that is still listed (Subscribe
	// has not yet removed it) does not see the message, and does not hold
	// up the others.
	tr := New()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	tr.subs["c"] = append(tr.subs["c"], &subscription{group: "gone", ctx: gone, h: func(context.Context, messaging.Delivery) error {
		calls++
		return nil
	}})
	r := &recorder{}
	subscribe(t, tr, "live", []string{"c"}, r.handle)
	if err := tr.Publish(context.Background(), msg("1", "c")); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	if calls != 0 {
		t.Errorf("group that left was called %d times", calls)
	}
	if diff := cmp.Diff([]string{"1#1"}, r.ids()); diff != "" {
		t.Errorf("live group got (-want +got):\n%s", diff)
	}
}

func TestHandlerGetsSubscriptionContext(t *testing.T) {
	tr := New()
	type key struct{}
	var got any
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "sub"))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- tr.Subscribe(ctx, "g", []string{"c"}, func(ctx context.Context, d messaging.Delivery) error {
			got = ctx.Value(key{})
			return nil
		})
	}()
	waitFor(t, "subscription", func() bool { return subscribers(tr, "c") == 1 })
	tr.Publish(context.WithValue(context.Background(), key{}, "pub"), msg("1", "c"))
	if got != "sub" {
		t.Errorf("handler ctx value = %v, want the subscription's", got)
	}
	cancel()
	<-done
}

func TestClose(t *testing.T) {
	tr := New()
	if err := tr.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := tr.Publish(context.Background(), msg("1", "c")); !errors.Is(err, errClosed) {
		t.Errorf("Publish after Close = %v, want %v", err, errClosed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- tr.Subscribe(ctx, "g", []string{"c"}, func(context.Context, messaging.Delivery) error { return nil })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errClosed) {
			t.Errorf("Subscribe after Close = %v, want %v", err, errClosed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe after Close blocked")
	}
	if n := subscribers(tr, "c"); n != 0 {
		t.Errorf("closed transport took a subscriber")
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	// Publishing nothing is fine even when closed.
	if err := tr.Publish(context.Background()); err != nil {
		t.Errorf("Publish() after Close = %v", err)
	}
}

func TestCloseWithSubscribers(t *testing.T) {
	tr := New()
	r := &recorder{}
	subscribe(t, tr, "g", []string{"c"}, r.handle)
	tr.Close()
	if err := tr.Publish(context.Background(), msg("1", "c")); !errors.Is(err, errClosed) {
		t.Errorf("Publish after Close = %v, want %v", err, errClosed)
	}
	if len(r.deliveries()) != 0 {
		t.Errorf("closed transport delivered %v", r.ids())
	}
}

func TestConcurrentPublishOneDeliveryAtATimePerGroup(t *testing.T) {
	tr := New()
	var inFlight, maxInFlight atomic.Int32
	var mu sync.Mutex
	got := map[string]int{}
	h := func(ctx context.Context, d messaging.Delivery) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Microsecond)
		mu.Lock()
		got[d.ID]++
		mu.Unlock()
		return nil
	}
	subscribe(t, tr, "g", []string{"c"}, h)
	other := &recorder{}
	subscribe(t, tr, "other", []string{"c"}, other.handle)

	const publishers, per = 8, 25
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range per {
				if err := tr.Publish(context.Background(), msg(fmt.Sprintf("p%d-%d", p, i), "c")); err != nil {
					t.Errorf("Publish = %v", err)
				}
			}
		})
	}
	wg.Wait()
	if m := maxInFlight.Load(); m != 1 {
		t.Errorf("group handled %d deliveries at once, want 1", m)
	}
	if len(got) != publishers*per || len(other.deliveries()) != publishers*per {
		t.Errorf("delivered %d and %d distinct messages, want %d", len(got), len(other.deliveries()), publishers*per)
	}
	// Each publisher's messages arrive in the order it published them.
	last := map[string]int{}
	for _, d := range other.deliveries() {
		var p, i int
		fmt.Sscanf(d.ID, "p%d-%d", &p, &i)
		k := fmt.Sprint(p)
		if prev, ok := last[k]; ok && i != prev+1 {
			t.Errorf("publisher %d: message %d after %d", p, i, prev)
		}
		last[k] = i
	}
}

func TestConcurrentSubscribeAndPublish(t *testing.T) {
	// Subscribing and leaving while messages flow is safe (run with -race).
	tr := New()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tr.Publish(context.Background(), msg(fmt.Sprint(i), "c"))
		}
	})
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			tr.Subscribe(ctx, fmt.Sprint("g", i), []string{"c", "d"}, func(context.Context, messaging.Delivery) error { return nil })
			close(done)
		}()
		time.Sleep(time.Millisecond)
		cancel()
		<-done
	}
	close(stop)
	wg.Wait()
	if n := subscribers(tr, "c") + subscribers(tr, "d"); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

var _ messaging.Transport = (*Transport)(nil)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
