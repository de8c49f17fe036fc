package messaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/messaging"
)

// memOutbox is an in-memory Outbox.
type memOutbox struct {
	mu        sync.Mutex
	msgs      []messaging.Envelope
	published map[string]bool
	// unpubErrs and markErrs fail that many calls of Unpublished and
	// MarkPublished.
	unpubErrs, markErrs int
	unpubCalls          int
	marks               [][]string
}

func newMemOutbox(msgs ...messaging.Envelope) *memOutbox {
	return &memOutbox{msgs: msgs, published: map[string]bool{}}
}

func (o *memOutbox) add(msgs ...messaging.Envelope) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, msgs...)
}

func (o *memOutbox) Unpublished(ctx context.Context, limit int) ([]messaging.Envelope, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unpubCalls++
	if o.unpubErrs > 0 {
		o.unpubErrs--
		return nil, errors.New("outbox unavailable")
	}
	var out []messaging.Envelope
	for _, m := range o.msgs {
		if len(out) == limit {
			break
		}
		if !o.published[m.ID] {
			out = append(out, m)
		}
	}
	return out, nil
}

func (o *memOutbox) MarkPublished(ctx context.Context, ids []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if o.markErrs > 0 {
		o.markErrs--
		return errors.New("mark failed")
	}
	o.marks = append(o.marks, slices.Clone(ids))
	for _, id := range ids {
		o.published[id] = true
	}
	return nil
}

func (o *memOutbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, m := range o.msgs {
		if !o.published[m.ID] {
			n++
		}
	}
	return n
}

func (o *memOutbox) calls() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unpubCalls
}

// memPublisher is a Publisher that fails as told and records what it took.
type memPublisher struct {
	mu       sync.Mutex
	fail     func(call int) bool // call counts from 1
	callsN   int
	attempts []time.Time
	batches  [][]messaging.Envelope
}

var errBroker = errors.New("broker down")

func (p *memPublisher) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.callsN++
	p.attempts = append(p.attempts, time.Now())
	if p.fail != nil && p.fail(p.callsN) {
		return errBroker
	}
	p.batches = append(p.batches, slices.Clone(msgs))
	return nil
}

func (p *memPublisher) got() []messaging.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []messaging.Envelope
	for _, b := range p.batches {
		out = append(out, b...)
	}
	return out
}

func (p *memPublisher) attemptTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.attempts)
}

type relayMetrics struct {
	mu      sync.Mutex
	relayed []int
	oldest  []time.Time
	failed  int
}

func (m *relayMetrics) Relayed(n int, oldest time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relayed = append(m.relayed, n)
	m.oldest = append(m.oldest, oldest)
}

func (m *relayMetrics) RelayFailed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed++
}

func envs(n int) []messaging.Envelope {
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	out := make([]messaging.Envelope, n)
	for i := range out {
		out[i] = messaging.Envelope{
			ID:         fmt.Sprintf("m%04d", i),
			Channel:    "order_placed",
			Key:        "sku",
			OccurredAt: base.Add(time.Duration(i) * time.Second),
			Payload:    json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
		}
	}
	return out
}

// runRelay runs r in the background; the returned stop cancels it and
// returns Run's error.
func runRelay(t *testing.T, r *messaging.Relay) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Relay.Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestRelayPublishesInOrder(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		batch int
	}{
		{"one", 1, 0},
		{"fewer than a batch", 5, 10},
		{"batches of two", 5, 2},
		{"exact batches", 6, 3},
		{"default batch", 600, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := envs(tt.n)
			ob := newMemOutbox(msgs...)
			pub := &memPublisher{}
			m := &relayMetrics{}
			r := messaging.NewRelay(ob, pub, discardLogger())
			r.Batch = tt.batch
			r.Poll = time.Hour // only full batches go on without sleeping
			r.Metrics = m
			stop := runRelay(t, r)
			waitFor(t, 5*time.Second, "messages published", func() bool { return ob.pending() == 0 })
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
			if diff := cmp.Diff(msgs, pub.got()); diff != "" {
				t.Errorf("published (-want +got):\n%s", diff)
			}
			var marked []string
			for _, b := range ob.marks {
				marked = append(marked, b...)
			}
			var ids []string
			for _, m := range msgs {
				ids = append(ids, m.ID)
			}
			if diff := cmp.Diff(ids, marked); diff != "" {
				t.Errorf("marked published (-want +got):\n%s", diff)
			}
			batch := tt.batch
			if batch == 0 {
				batch = 256
			}
			for i, b := range pub.batches {
				if len(b) > batch {
					t.Errorf("batch %d has %d messages, want at most %d", i, len(b), batch)
				}
			}
			total := 0
			for i, n := range m.relayed {
				total += n
				if !m.oldest[i].Equal(pub.batches[i][0].OccurredAt) {
					t.Errorf("metrics oldest of batch %d = %v, want %v", i, m.oldest[i], pub.batches[i][0].OccurredAt)
				}
			}
			if total != tt.n || m.failed != 0 {
				t.Errorf("metrics relayed %d, failed %d; want %d, 0", total, m.failed, tt.n)
			}
		})
	}
}

func TestRelayRetriesWithBackoff(t *testing.T) {
	tests := []struct {
		name       string
		failures   int
		maxBackoff time.Duration
		// minGaps are lower bounds of the waits between attempts.
		minGaps []time.Duration
	}{
		{"one failure", 1, 5 * time.Millisecond, []time.Duration{5 * time.Millisecond}},
		{"capped", 6, 2 * time.Millisecond, []time.Duration{2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond}},
		{"doubles up to the cap", 4, 120 * time.Millisecond, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 120 * time.Millisecond, 120 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := envs(7)
			ob := newMemOutbox(msgs...)
			pub := &memPublisher{fail: func(call int) bool { return call <= tt.failures }}
			m := &relayMetrics{}
			log, rec := newRecordingLogger()
			r := messaging.NewRelay(ob, pub, log)
			r.Batch = 3
			r.Poll = time.Hour
			r.MaxBackoff = tt.maxBackoff
			r.Metrics = m
			stop := runRelay(t, r)
			waitFor(t, 10*time.Second, "messages published", func() bool { return ob.pending() == 0 })
			stop()

			// None lost, none duplicated, in order.
			if diff := cmp.Diff(msgs, pub.got()); diff != "" {
				t.Errorf("published (-want +got):\n%s", diff)
			}
			at := pub.attemptTimes()
			if len(at) != tt.failures+3 { // the failures, then 3 + 3 + 1
				t.Errorf("got %d Publish calls, want %d", len(at), tt.failures+3)
			}
			for i, minGap := range tt.minGaps {
				if gap := at[i+1].Sub(at[i]); gap < minGap {
					t.Errorf("wait before retry %d = %v, want at least %v", i+1, gap, minGap)
				}
			}
			// Once it succeeded the relay does not back off.
			if gap := at[len(at)-1].Sub(at[tt.failures]); gap > 2*time.Second {
				t.Errorf("successful rounds took %v", gap)
			}
			if m.failed != tt.failures {
				t.Errorf("metrics failures = %d, want %d", m.failed, tt.failures)
			}
			if warns := rec.find("relay: publishing failed, will retry"); len(warns) != tt.failures {
				t.Errorf("got %d retry warnings, want %d", len(warns), tt.failures)
			}
		})
	}
}

func TestRelayRetriesOutboxFailures(t *testing.T) {
	t.Run("Unpublished fails", func(t *testing.T) {
		msgs := envs(3)
		ob := newMemOutbox(msgs...)
		ob.unpubErrs = 3
		pub := &memPublisher{}
		r := messaging.NewRelay(ob, pub, discardLogger())
		r.Poll, r.MaxBackoff = time.Hour, time.Millisecond
		runRelay(t, r)
		waitFor(t, 5*time.Second, "messages published", func() bool { return ob.pending() == 0 })
		if diff := cmp.Diff(msgs, pub.got()); diff != "" {
			t.Errorf("published (-want +got):\n%s", diff)
		}
	})
	t.Run("MarkPublished fails: published again, none lost", func(t *testing.T) {
		msgs := envs(3)
		ob := newMemOutbox(msgs...)
		ob.markErrs = 1
		pub := &memPublisher{}
		r := messaging.NewRelay(ob, pub, discardLogger())
		r.Poll, r.MaxBackoff = time.Hour, time.Millisecond
		runRelay(t, r)
		waitFor(t, 5*time.Second, "messages published", func() bool { return ob.pending() == 0 })
		if diff := cmp.Diff(append(slices.Clone(msgs), msgs...), pub.got()); diff != "" {
			t.Errorf("published (-want +got):\n%s", diff)
		}
	})
}

func TestRelayNotify(t *testing.T) {
	ob := newMemOutbox()
	pub := &memPublisher{}
	r := messaging.NewRelay(ob, pub, discardLogger())
	r.Poll = time.Hour
	runRelay(t, r)
	waitFor(t, 5*time.Second, "first round", func() bool { return ob.calls() >= 1 })

	for round := range 3 {
		msgs := envs(2)
		for i := range msgs {
			msgs[i].ID = fmt.Sprintf("r%d-%d", round, i)
		}
		ob.add(msgs...)
		start := time.Now()
		r.Notify()
		r.Notify() // a second wake before the relay ran is merged, not blocking
		waitFor(t, 5*time.Second, "notified messages published", func() bool { return ob.pending() == 0 })
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("round %d: Notify took %v to publish", round, d)
		}
	}
	if got := len(pub.got()); got != 6 {
		t.Errorf("published %d messages, want 6", got)
	}
}

func TestRelayNotifyNotRunning(t *testing.T) {
	r := messaging.NewRelay(newMemOutbox(), &memPublisher{}, discardLogger())
	done := make(chan struct{})
	go func() {
		for range 10 {
			r.Notify()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify blocked with no relay running")
	}
}

func TestRelayStopsOnCancel(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*messaging.Relay, *memOutbox, *memPublisher)
	}{
		{"idle", func(r *messaging.Relay, ob *memOutbox, p *memPublisher) { r.Poll = time.Hour }},
		{"backing off", func(r *messaging.Relay, ob *memOutbox, p *memPublisher) {
			ob.add(envs(1)...)
			p.fail = func(int) bool { return true }
			r.MaxBackoff = time.Hour
			r.Poll = time.Hour
		}},
		{"defaults", func(*messaging.Relay, *memOutbox, *memPublisher) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob := newMemOutbox()
			pub := &memPublisher{}
			r := messaging.NewRelay(ob, pub, discardLogger())
			tt.setup(r, ob, pub)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			waitFor(t, 5*time.Second, "first round", func() bool { return ob.calls() >= 1 })
			time.Sleep(20 * time.Millisecond) // let it go to sleep
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v, want context.Canceled", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("Run took %v to stop", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not stop on cancel")
			}
		})
	}

	t.Run("already cancelled", func(t *testing.T) {
		ob := newMemOutbox(envs(3)...)
		pub := &memPublisher{}
		r := messaging.NewRelay(ob, pub, discardLogger())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	})
}
