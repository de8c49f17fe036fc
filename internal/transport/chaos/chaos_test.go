package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/transport/chaos"
)

const wait = 10 * time.Second

// --- helpers ---

// msg is a published message: the seq-th of its channel and key.
type msg struct {
	channel, key string
	seq          int
}

// world is what a test published, and what its handlers were handed.
type world struct {
	mu       sync.Mutex
	sent     map[string]msg // by id
	order    []msg          // each queue's messages, in the order published
	log      []*delivery    // in the order handed
	inflight map[string]string
	problems []string
}

type delivery struct {
	group, member string
	id            string
	m             msg
	attempt       int
	done          bool
	err           error
}

func newWorld() *world {
	return &world{sent: map[string]msg{}, inflight: map[string]string{}}
}

// messages returns n messages per key of each channel, interleaved.
func (w *world) messages(channels []string, keys, n int) map[string][]messaging.Envelope {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]messaging.Envelope{}
	for seq := range n {
		for _, ch := range channels {
			for k := range keys {
				m := msg{ch, fmt.Sprintf("k%d", k), seq}
				id := fmt.Sprintf("%s/%s/%d", m.channel, m.key, m.seq)
				w.sent[id] = m
				w.order = append(w.order, m)
				out[ch] = append(out[ch], messaging.Envelope{ID: id, Channel: ch, Key: m.key, Payload: []byte(`{}`)})
			}
		}
	}
	return out
}

// publish publishes each channel's messages from a publisher of its own,
// in batches of 1 to 7.
func publish(t *testing.T, tr *chaos.Transport, byChannel map[string][]messaging.Envelope) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(byChannel))
	for _, msgs := range byChannel {
		wg.Go(func() {
			for i := 0; len(msgs) > 0; i++ {
				n := min(1+i%7, len(msgs))
				if err := tr.Publish(context.Background(), msgs[:n]...); err != nil {
					errs <- err
					return
				}
				msgs = msgs[n:]
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
}

// handler records what group's member is handed; fail (nil: none) decides
// what h returns.
func (w *world) handler(group, member string, fail func(d *delivery) error) messaging.Handler {
	return func(ctx context.Context, md messaging.Delivery) error {
		w.mu.Lock()
		d := &delivery{group: group, member: member, id: md.ID, m: w.sent[md.ID], attempt: md.Attempt}
		q := group + "/" + md.Channel + "/" + md.Key
		if other, busy := w.inflight[q]; busy {
			w.problems = append(w.problems, fmt.Sprintf("%s handed to %s while %s was in a handler", md.ID, member, other))
		}
		w.inflight[q] = md.ID
		w.log = append(w.log, d)
		w.mu.Unlock()

		var err error
		if fail != nil {
			err = fail(d)
		}
		w.mu.Lock()
		delete(w.inflight, q)
		d.done, d.err = true, err
		w.mu.Unlock()
		return err
	}
}

// handed returns group's deliveries (all groups for ""), in the order handed.
func (w *world) handed(group string) []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []delivery
	for _, d := range w.log {
		if group == "" || d.group == group {
			out = append(out, *d)
		}
	}
	return out
}

// check checks group's deliveries: one at a time per queue; each message
// handed only after every earlier one of its queue was acknowledged; the
// first deliveries of a queue in the order published; every message
// acknowledged.
func (w *world) check(t *testing.T, group string) {
	t.Helper()
	w.mu.Lock()
	for _, p := range w.problems {
		t.Error(p)
	}
	w.mu.Unlock()
	type qid struct{ channel, key string }
	acked := map[qid]map[int]bool{}
	prefix := map[qid]int{} // every seq below it acknowledged
	first := map[qid]int{}  // the next seq to be handed a first time
	for _, d := range w.handed(group) {
		q := qid{d.m.channel, d.m.key}
		if acked[q] == nil {
			acked[q] = map[int]bool{}
		}
		if d.m.seq > prefix[q] {
			t.Errorf("%s (attempt %d) handed before seq %d of its queue was acknowledged", d.id, d.attempt, prefix[q])
		}
		if d.attempt == 1 {
			if d.m.seq != first[q] {
				t.Errorf("%s handed a first time when seq %d of its queue was next", d.id, first[q])
			}
			first[q] = d.m.seq + 1
		}
		if d.done && d.err == nil {
			acked[q][d.m.seq] = true
			for acked[q][prefix[q]] {
				prefix[q]++
			}
		}
	}
	for _, m := range w.order {
		if !acked[qid{m.channel, m.key}][m.seq] {
			t.Errorf("group %s: %s/%s/%d never acknowledged", group, m.channel, m.key, m.seq)
		}
	}
}

// subscribe runs tr.Subscribe in the background, once it runs; stop
// cancels it and checks that it returned ctx's error.
func subscribe(t *testing.T, tr *chaos.Transport, group string, channels []string, h messaging.Handler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := tr.Members(group)
	go func() { done <- tr.Subscribe(ctx, group, channels, h) }()
	for deadline := time.Now().Add(wait); tr.Members(group) == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Subscribe of group %s did not start", group)
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Subscribe returned %v, want context.Canceled", err)
				}
			case <-time.After(wait):
				t.Errorf("Subscribe did not return within %v of its cancellation", wait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitIdle(t *testing.T, tr *chaos.Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := tr.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v; stats %+v", err, tr.Stats())
	}
}

// newBroker returns a transport on a new broker, closed at cleanup, after
// which no goroutine of the test is left.
func newBroker(t *testing.T, opts chaos.Options) *chaos.Transport {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines left, %d before the test", runtime.NumGoroutine(), before)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	tr := chaos.New(opts)
	t.Cleanup(func() { tr.Close() })
	t.Logf("seed %d", tr.Seed())
	return tr
}

// --- the tests ---

func TestOrderPerKeyUnderChaos(t *testing.T) {
	cases := []struct {
		name     string
		opts     chaos.Options
		members  int
		channels []string
		keys, n  int
	}{
		{"defaults", chaos.Options{Seed: 1}, 1, []string{"a"}, 8, 40},
		{"two members, two channels", chaos.Options{Seed: 2}, 2, []string{"a", "b"}, 6, 30},
		{"one at a time", chaos.Options{Seed: 3, Concurrency: 1}, 1, []string{"a"}, 4, 30},
		{"wild", chaos.Options{Seed: 4, DuplicateRate: 0.3, RewindRate: 0.2, MaxRewind: 5, Concurrency: 16}, 3, []string{"a", "b"}, 10, 30},
		{"no delay", chaos.Options{Seed: 5, MaxDelay: -1}, 2, []string{"a"}, 3, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, w := newBroker(t, c.opts), newWorld()
			for i := range c.members {
				// Every member on its own connection, some failing now and then.
				member := fmt.Sprintf("m%d", i)
				subscribe(t, tr.Conn(), "g", c.channels, w.handler("g", member, func(d *delivery) error {
					if d.m.seq%7 == 3 && d.attempt == 1 {
						return errors.New("not yet")
					}
					return nil
				}))
			}
			publish(t, tr, w.messages(c.channels, c.keys, c.n))
			waitIdle(t, tr)
			w.check(t, "g")
			if n := tr.Pending("g"); n != 0 {
				t.Errorf("Pending = %d once idle, want 0", n)
			}
			per := map[string]int{}
			for _, d := range w.handed("g") {
				per[d.member]++
			}
			if len(per) != c.members {
				t.Errorf("deliveries per member %v, want all %d members to take some", per, c.members)
			}
			s := tr.Stats()
			if s.Deliveries != len(w.handed("g")) {
				t.Errorf("Stats.Deliveries = %d, handlers saw %d", s.Deliveries, len(w.handed("g")))
			}
			if c.keys > 1 && c.opts.Concurrency != 1 && s.Reorders == 0 {
				t.Errorf("no message overtook another: %+v", s)
			}
			t.Logf("%+v; per member %v", s, per)
		})
	}
}

func TestChaosRates(t *testing.T) {
	cases := []struct {
		name     string
		opts     chaos.Options
		dup, rew float64 // the rates expected
	}{
		{"defaults", chaos.Options{Seed: 10, MaxDelay: -1}, 0.05, 0.02},
		{"high", chaos.Options{Seed: 11, MaxDelay: -1, DuplicateRate: 0.2, RewindRate: 0.1, MaxRewind: 1}, 0.2, 0.1},
		{"off", chaos.Options{Seed: 12, MaxDelay: -1, DuplicateRate: -1, RewindRate: -1}, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, w := newBroker(t, c.opts), newWorld()
			subscribe(t, tr, "g", []string{"a"}, w.handler("g", "m", nil))
			publish(t, tr, w.messages([]string{"a"}, 20, 250))
			waitIdle(t, tr)
			w.check(t, "g")

			s := tr.Stats()
			handed := w.handed("g")
			firsts := 0
			for _, d := range handed {
				if d.attempt == 1 {
					firsts++
				}
			}
			if s.Published != 5000 || firsts != 5000 || s.Deliveries != len(handed) || s.Failures != 0 {
				t.Errorf("%+v; %d deliveries, %d with Attempt 1; want 5000 published and handed a first time", s, len(handed), firsts)
			}
			// Each acknowledgement is lost with DuplicateRate; the others
			// rewind with RewindRate.
			acks := s.Deliveries
			dup, rew := c.dup, c.rew
			gotDup := float64(s.Duplicates) / float64(acks)
			gotRew := float64(s.Rewinds) / float64(acks-s.Duplicates)
			if gotDup < dup*0.6 || gotDup > dup*1.4 {
				t.Errorf("duplicates: %d of %d acknowledgements (%.3f), want about %.3f", s.Duplicates, acks, gotDup, dup)
			}
			if gotRew < rew*0.5 || gotRew > rew*1.5 {
				t.Errorf("rewinds: %d of %d acknowledgements (%.3f), want about %.3f", s.Rewinds, acks-s.Duplicates, gotRew, rew)
			}
			t.Logf("%+v", s)
		})
	}
}

func TestFailedMessageHandedAgain(t *testing.T) {
	tr, w := newBroker(t, chaos.Options{Seed: 20}), newWorld()
	subscribe(t, tr, "g", []string{"a"}, w.handler("g", "m", func(d *delivery) error {
		if d.m.seq == 2 && d.attempt == 1 {
			return errors.New("not yet")
		}
		return nil
	}))
	publish(t, tr, w.messages([]string{"a"}, 5, 6))
	waitIdle(t, tr)
	w.check(t, "g")
	// In each queue, the delivery after the failed one is the same message,
	// Attempt 2.
	last := map[string]delivery{}
	failed := 0
	for _, d := range w.handed("g") {
		if prev, ok := last[d.m.key]; ok && prev.err != nil {
			failed++
			if d.id != prev.id || d.attempt != 2 {
				t.Errorf("after %s failed, its queue handed %s attempt %d; want it again, attempt 2", prev.id, d.id, d.attempt)
			}
		}
		last[d.m.key] = d
	}
	if s := tr.Stats(); failed != 5 || s.Failures != 5 {
		t.Errorf("%d failed deliveries handed again, Stats.Failures %d; want 5", failed, s.Failures)
	}
}

func TestLateGroupGetsWhatWasPublished(t *testing.T) {
	cases := []struct {
		name     string
		declare  bool
		pendingB int // Pending before the group subscribes
	}{
		{"declared", true, 30},
		{"new to the broker", false, 0}, // unknown until it subscribes, then at the oldest
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, w := newBroker(t, chaos.Options{Seed: 30}), newWorld()
			if c.declare {
				tr.Declare("late", "a")
			}
			subscribe(t, tr, "early", []string{"a"}, w.handler("early", "e", nil))
			publish(t, tr, w.messages([]string{"a"}, 3, 10))
			waitIdle(t, tr) // the early group is done; the late one has no Subscribe yet
			if n := tr.Pending("late"); n != c.pendingB {
				t.Errorf("Pending(late) = %d before it subscribed, want %d", n, c.pendingB)
			}
			if !tr.Idle() {
				t.Error("not Idle after WaitIdle")
			}
			subscribe(t, tr.Conn(), "late", []string{"a"}, w.handler("late", "l", nil))
			waitIdle(t, tr)
			w.check(t, "early")
			w.check(t, "late")
			if n := tr.Pending("late"); n != 0 {
				t.Errorf("Pending(late) = %d once idle, want 0", n)
			}
		})
	}
}

func TestStoppedSubscriberHandsOver(t *testing.T) {
	tr, w := newBroker(t, chaos.Options{Seed: 40}), newWorld()
	const keys = 4
	entered := make(chan string, 100)
	stopA := subscribe(t, tr, "g", []string{"a"}, w.handler("g", "a", func(d *delivery) error {
		if d.m.seq == 0 {
			return nil
		}
		entered <- d.m.key
		time.Sleep(time.Duration(d.m.seq) * time.Millisecond) // let the others enter too
		return errors.New("crashed")                          // in every handler at once
	}))
	publish(t, tr, w.messages([]string{"a"}, keys, 5))
	// Every key entered once at least (a key may enter again, its
	// message failed: count keys, not entries).
	in := map[string]bool{}
	for len(in) < keys {
		select {
		case k := <-entered:
			in[k] = true
		case <-time.After(wait):
			t.Fatal("the first subscriber was not handed seq 1 of every key")
		}
	}
	stopA()
	if n := tr.Pending("g"); n != keys*4 {
		t.Errorf("Pending = %d after the first subscriber stopped, want %d", n, keys*4)
	}

	subscribe(t, tr.Conn(), "g", []string{"a"}, w.handler("g", "b", nil))
	waitIdle(t, tr)
	w.check(t, "g")
	firstOfB := map[string]delivery{}
	for _, d := range w.handed("g") {
		if _, ok := firstOfB[d.m.key]; !ok && d.member == "b" {
			firstOfB[d.m.key] = d
		}
	}
	for k, d := range firstOfB {
		if d.m.seq != 1 || d.attempt < 2 {
			t.Errorf("key %s: the next subscriber was first handed seq %d attempt %d, want seq 1, attempt 2 or more", k, d.m.seq, d.attempt)
		}
	}
	if len(firstOfB) != keys {
		t.Errorf("the next subscriber took %d keys, want %d", len(firstOfB), keys)
	}
}

func TestSeedSteers(t *testing.T) {
	// One delivery at a time, no delay, everything published before the
	// group comes: the seed alone decides what is handed when.
	run := func(seed uint64) []string {
		tr, w := newBroker(t, chaos.Options{Seed: seed, Concurrency: 1, MaxDelay: -1, DuplicateRate: 0.2, RewindRate: 0.1}), newWorld()
		publish(t, tr, w.messages([]string{"a", "b"}, 5, 10))
		stop := subscribe(t, tr, "g", []string{"a", "b"}, w.handler("g", "m", nil))
		waitIdle(t, tr)
		stop()
		var out []string
		for _, d := range w.handed("g") {
			out = append(out, fmt.Sprintf("%s#%d", d.id, d.attempt))
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 twice handed different sequences:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 handed the same sequence")
	}
}

func TestClose(t *testing.T) {
	tr := newBroker(t, chaos.Options{Seed: 50})
	other := tr.Conn()
	t.Cleanup(func() { other.Close() })
	w := newWorld()
	done := make(chan error, 1)
	go func() { done <- tr.Subscribe(context.Background(), "g", []string{"a"}, w.handler("g", "m", nil)) }()
	for tr.Members("g") == 0 {
		time.Sleep(time.Millisecond)
	}
	tr.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Subscribe returned nil after Close, want an error")
		}
	case <-time.After(wait):
		t.Fatal("Subscribe did not return after Close")
	}
	ctx := context.Background()
	if err := tr.Publish(ctx, messaging.Envelope{ID: "x", Channel: "a"}); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := tr.Subscribe(ctx, "g", []string{"a"}, w.handler("g", "m", nil)); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	// The broker goes on for its other connections, and kept the group's
	// place: the message is handed to it there.
	if err := other.Publish(ctx, messaging.Envelope{ID: "y", Channel: "a"}); err != nil {
		t.Fatalf("Publish on another connection: %v", err)
	}
	subscribe(t, other, "g", []string{"a"}, w.handler("g", "m", nil))
	waitIdle(t, other)
	if got := w.handed("g"); len(got) == 0 || got[len(got)-1].id != "y" {
		t.Errorf("handed %v, want y", got)
	}
}
