// Package transporttest is the contract every messaging.Transport is held
// to: one suite, run by each transport's own tests with Run.
//
// The cases, and the transports they apply to:
//
//	PublishAndReceive              all: payload, ID, CorrelationID, CausationID, Channel, OccurredAt arrive as sent, Attempt 1
//	KeyPreserved                   all: Key arrives as sent (empty too)
//	AckOnlyAfterSuccess            all: a failed message is handed again, Attempt 2, 3...; once h returned nil it is not
//	                               (durable: not even to the group's next subscription)
//	RedeliveryAfterCrash           durable: a message in h when its subscription stopped is handed to the group's next one
//	                               first, Attempt 2 or more; the next of its key (never handed) then, Attempt 1
//	GroupKeepsPosition             durable: a group that was away gets what it missed, and only that
//	DuplicateKeepsID               all: a message published twice arrives (once or twice) with its ID
//	OrderPerKey                    all: 5 keys x 50 messages from concurrent publishers, the 10th of each failing once:
//	                               each key's messages are handed in order, one at a time
//	OneMemberPerMessage            durable: two subscriptions (on two transports) of one group: each message handed once
//	                               overall, in order per key, one at a time per key across members
//	EveryGroupGetsEveryMessage     all: two groups each get every message once
//	NewGroupStartsAtOldest         durable: a group new to the broker gets what was published before it came
//	Rewind                         transports that implement messaging.Rewinder
//	PublishWithoutSubscribers      all: Publish to a channel nobody reads does not fail
//	SubscribeReturnsWhenCancelled  all: Subscribe returns ctx's error promptly once ctx is done
//	PanickingHandler               all: behind the consumer pipeline (messaging.Consumer and Bus), a handler
//	                               that panics on a message fails its attempts, the message is dead-lettered,
//	                               the next message of its key is handled, and Subscribe goes on
//	BrokerRestart                  when Factory.Restart is set: messages published before and after a restart arrive
//
// A non-durable transport (in-process, Redis pub/sub) keeps no position and
// hands a message to whoever is subscribed when it is published: the
// durable-only cases are skipped for it, with the reason, and the suite
// waits until its subscriptions receive (probe messages, with ids starting
// "probe-", that handlers never see) before it publishes.
//
// Payloads are JSON objects; a transport may add fields (Redis pub/sub adds
// the ids) but must keep every field it was given. The suite uses unique
// channel names (testenv.Name), bounds every wait (about 10s), and at
// cleanup cancels its subscriptions, closes its transports and checks that
// every Subscribe returned.
package transporttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
)

// Factory makes the transports the suite runs against.
type Factory struct {
	// New returns a fresh transport; the suite closes it. Transports from
	// one Factory must talk to one broker namespace: the suite makes two to
	// act as two members of a group. Cases are isolated by channel names.
	New func(t *testing.T) messaging.Transport
	// Durable is true for a transport that keeps positions and history and
	// redelivers (Redis Streams, Kafka, JetStream); false for the in-process
	// transport and Redis pub/sub.
	Durable bool
	// Restart restarts the broker that New's transports talk to; nil skips
	// BrokerRestart.
	Restart func(t *testing.T)
	// Skip names cases (as Run names them) to skip, with the reason: a
	// known bug is "BUG: ...".
	Skip map[string]string
}

// Timeouts of the suite.
const (
	wait  = 10 * time.Second       // for what must happen
	quiet = 300 * time.Millisecond // for what must not
)

// Run runs the contract suite against f's transports, one subtest per case.
func Run(t *testing.T, f Factory) {
	if f.New == nil {
		t.Fatal("transporttest: Factory.New is nil")
	}
	cases := []struct {
		name    string
		durable bool // only for durable transports
		why     string
		run     func(*testing.T, Factory)
	}{
		{"PublishAndReceive", false, "", testPublishAndReceive},
		{"KeyPreserved", false, "", testKeyPreserved},
		{"AckOnlyAfterSuccess", false, "", testAckOnlyAfterSuccess},
		{"RedeliveryAfterCrash", true, "a non-durable group keeps nothing for its next subscription", testRedeliveryAfterCrash},
		{"GroupKeepsPosition", true, "a non-durable group has no position: what is published while it is away is not kept", testGroupKeepsPosition},
		{"DuplicateKeepsID", false, "", testDuplicateKeepsID},
		{"OrderPerKey", false, "", testOrderPerKey},
		{"OneMemberPerMessage", true, "a non-durable transport hands every message to every subscription, even of one group", testOneMemberPerMessage},
		{"EveryGroupGetsEveryMessage", false, "", testEveryGroupGetsEveryMessage},
		{"NewGroupStartsAtOldest", true, "a non-durable transport keeps no history", testNewGroupStartsAtOldest},
		{"Rewind", false, "", testRewind},
		{"PublishWithoutSubscribers", false, "", testPublishWithoutSubscribers},
		{"SubscribeReturnsWhenCancelled", false, "", testSubscribeReturnsWhenCancelled},
		{"PanickingHandler", false, "", testPanickingHandler},
		{"BrokerRestart", false, "", testBrokerRestart},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if reason, ok := f.Skip[c.name]; ok {
				t.Skip(reason)
			}
			if c.durable && !f.Durable {
				t.Skip("durable transports only: " + c.why)
			}
			c.run(t, f)
		})
	}
}

// --- messages ---

// body is the payload of the suite's messages.
type body struct {
	K   string `json:"k"`
	Seq int    `json:"seq"`
}

// message returns a message on channel with key, numbered seq.
func message(channel, key string, seq int) messaging.Envelope {
	payload, _ := json.Marshal(map[string]any{
		"k":      key,
		"seq":    seq,
		"note":   "héllo \"wörld\" <&> \n ✓",
		"nested": map[string]any{"list": []any{1, 2.5, nil, true, "x"}, "empty": map[string]any{}},
	})
	return messaging.Envelope{
		ID:            messaging.NewID(),
		Channel:       channel,
		Key:           key,
		CorrelationID: messaging.NewID(),
		CausationID:   messaging.NewID(),
		OccurredAt:    time.Now().UTC().Truncate(time.Microsecond),
		Payload:       payload,
	}
}

// messages returns n messages on channel per key, numbered from 0 per key,
// interleaved: k0/0, k1/0, ..., k0/1, k1/1...
func messages(channel string, keys []string, n int) []messaging.Envelope {
	return messagesFrom(channel, keys, 0, n)
}

// messagesFrom is messages numbered from first.
func messagesFrom(channel string, keys []string, first, n int) []messaging.Envelope {
	var out []messaging.Envelope
	for i := first; i < first+n; i++ {
		for _, k := range keys {
			out = append(out, message(channel, k, i))
		}
	}
	return out
}

func keys(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("key-%d", i))
	}
	return out
}

func bodyOf(d messaging.Delivery) body {
	var b body
	json.Unmarshal(d.Payload, &b)
	return b
}

func isProbe(d messaging.Delivery) bool { return strings.HasPrefix(d.ID, "probe-") }

func probe(channel string) messaging.Envelope {
	return messaging.Envelope{
		ID:         "probe-" + messaging.NewID(),
		Channel:    channel,
		OccurredAt: time.Now().UTC(),
		Payload:    json.RawMessage(`{"probe":true}`),
	}
}

// samePayload reports how got differs from want: every field of want must
// be in got with the same value (a transport may add fields).
func samePayload(want, got []byte) string {
	var w, g map[string]any
	if err := json.Unmarshal(want, &w); err != nil {
		return fmt.Sprintf("sent payload %s is not a JSON object: %v", want, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Sprintf("payload %q is not a JSON object: %v", got, err)
	}
	for k, v := range w {
		if gv, ok := g[k]; !ok || !reflect.DeepEqual(gv, v) {
			return fmt.Sprintf("payload field %q is %v, want %v (payload %s)", k, gv, v, got)
		}
	}
	return ""
}

// --- transports and subscriptions ---

// conn is a transport under test.
type conn struct {
	messaging.Transport
	mu   sync.Mutex
	subs []*subscription
}

// open returns a new transport of f, closed at cleanup after its
// subscriptions were cancelled.
func open(t *testing.T, f Factory) *conn {
	t.Helper()
	c := &conn{Transport: f.New(t)}
	t.Cleanup(func() {
		c.mu.Lock()
		subs := slices.Clone(c.subs)
		c.mu.Unlock()
		for _, s := range subs {
			s.cancel()
		}
		returned := func(d time.Duration) bool {
			deadline := time.After(d)
			for _, s := range subs {
				select {
				case <-s.done:
				case <-deadline:
					return false
				}
			}
			return true
		}
		ok := returned(2 * time.Second)
		if err := c.Close(); err != nil {
			t.Logf("closing the transport: %v", err)
		}
		if !ok && !returned(wait) {
			t.Errorf("Subscribe did not return within %v of its context's cancellation and the transport's Close", wait)
		}
	})
	return c
}

func publish(t *testing.T, c *conn, msgs ...messaging.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Publish(ctx, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// subscription is a Subscribe running in the background.
type subscription struct {
	member, group string
	ctx           context.Context
	cancel        context.CancelFunc
	done          chan struct{}
	err           error // Subscribe's result, once done is closed
}

// subscribe runs c.Subscribe for group on channels in the background, as
// member; h (nil: accept all) sees every delivery but probes, which j
// records.
func (c *conn) subscribe(j *journal, member, group string, channels []string, h messaging.Handler) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{member: member, group: group, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	j.mu.Lock()
	j.subs = append(j.subs, s)
	j.mu.Unlock()
	handler := j.handler(member, group, h)
	go func() {
		s.err = c.Subscribe(ctx, group, channels, handler)
		close(s.done)
		j.poke()
	}()
	return s
}

// stop cancels s and waits for its Subscribe to return ctx's error.
func (s *subscription) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		if !errors.Is(s.err, context.Canceled) {
			t.Errorf("Subscribe of %s returned %v, want context.Canceled", s.member, s.err)
		}
	case <-time.After(wait):
		t.Fatalf("Subscribe of %s did not return within %v of its context's cancellation", s.member, wait)
	}
}

// journal records the deliveries of a case, across its subscriptions.
type journal struct {
	mu       sync.Mutex
	entries  []*entry          // in the order h was called
	probes   map[string]bool   // member + "\x00" + channel: a probe arrived
	inflight map[string]string // group, channel, key -> id of the message in h
	problems []string
	subs     []*subscription
	wake     chan struct{}
}

// entry is one delivery.
type entry struct {
	member, group string
	d             messaging.Delivery
	body          body
	done          bool  // h returned
	err           error // what h returned
}

func newJournal() *journal {
	return &journal{probes: map[string]bool{}, inflight: map[string]string{}, wake: make(chan struct{}, 1)}
}

func (j *journal) poke() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *journal) handler(member, group string, h messaging.Handler) messaging.Handler {
	return func(ctx context.Context, d messaging.Delivery) error {
		if isProbe(d) {
			j.mu.Lock()
			j.probes[member+"\x00"+d.Channel] = true
			j.mu.Unlock()
			j.poke()
			return nil
		}
		e := &entry{member: member, group: group, d: d, body: bodyOf(d)}
		// The key as the suite sent it, in the payload: a transport that
		// loses Key (KeyPreserved) still has its order checked.
		inflight := group + "\x00" + d.Channel + "\x00" + e.body.K
		j.mu.Lock()
		if e.body.K != "" {
			if other, busy := j.inflight[inflight]; busy {
				j.problems = append(j.problems, fmt.Sprintf("group %s: message %s (key %s, seq %d) handed to %s while message %s of the same key was in a handler",
					group, d.ID, e.body.K, e.body.Seq, member, other))
			}
			j.inflight[inflight] = d.ID
		}
		j.entries = append(j.entries, e)
		j.mu.Unlock()
		j.poke()

		var err error
		if h != nil {
			err = h(ctx, d)
		}

		j.mu.Lock()
		e.done, e.err = true, err
		if e.body.K != "" && j.inflight[inflight] == d.ID {
			delete(j.inflight, inflight)
		}
		j.mu.Unlock()
		j.poke()
		return err
	}
}

// waitFor waits until cond, called with j locked, holds; it fails the test
// after timeout, or when a Subscribe returned that was not cancelled.
func (j *journal) waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j.mu.Lock()
		ok := cond()
		var early *subscription
		for _, s := range j.subs {
			select {
			case <-s.done:
				if s.ctx.Err() == nil {
					early = s
				}
			default:
			}
		}
		summary := j.summaryLocked()
		j.mu.Unlock()
		if ok {
			return
		}
		if early != nil {
			t.Fatalf("waiting for %s: Subscribe of %s (group %s) returned %v before it was cancelled", what, early.member, early.group, early.err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("waiting for %s: not within %v; %s", what, timeout, summary)
		}
		select {
		case <-j.wake:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
}

func (j *journal) summaryLocked() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d deliveries", len(j.entries))
	const show = 20
	for i, e := range j.entries {
		if i == show {
			fmt.Fprintf(&b, "; ...")
			break
		}
		fmt.Fprintf(&b, "; %s/%s key=%s seq=%d attempt=%d done=%v err=%v", e.member, e.group, e.body.K, e.body.Seq, e.d.Attempt, e.done, e.err)
	}
	return b.String()
}

// snapshot returns the entries so far, in the order h was called.
func (j *journal) snapshot() []entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]entry, len(j.entries))
	for i, e := range j.entries {
		out[i] = *e
	}
	return out
}

// succeededLocked returns how many times h succeeded for each message id
// of group ("" for every group); j must be locked.
func (j *journal) succeededLocked(group string) map[string]int {
	n := map[string]int{}
	for _, e := range j.entries {
		if (group == "" || e.group == group) && e.done && e.err == nil {
			n[e.d.ID]++
		}
	}
	return n
}

// waitSucceeded waits until h succeeded for every message of msgs in group.
func (j *journal) waitSucceeded(t *testing.T, group string, msgs []messaging.Envelope) {
	t.Helper()
	j.waitFor(t, wait, fmt.Sprintf("group %s to take %d messages", group, len(msgs)), func() bool {
		n := j.succeededLocked(group)
		for _, m := range msgs {
			if n[m.ID] == 0 {
				return false
			}
		}
		return true
	})
}

// checkProblems fails the test if a key was in two handlers at once.
func (j *journal) checkProblems(t *testing.T) {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, p := range j.problems {
		t.Error(p)
	}
}

// checkOrder checks that, in group, each key's deliveries came in the
// order published (seq never goes back), and that each message of msgs
// was taken exactly once when once is set.
func checkOrder(t *testing.T, entries []entry, group string, msgs []messaging.Envelope, once bool) {
	t.Helper()
	want := map[string]bool{}
	for _, m := range msgs {
		want[m.ID] = true
	}
	last := map[string]int{}
	taken := map[string]int{}
	for _, e := range entries {
		if e.group != group || !want[e.d.ID] {
			continue
		}
		if prev, ok := last[e.body.K]; ok && e.body.Seq < prev {
			t.Errorf("group %s, key %s: seq %d handed (to %s, attempt %d) after seq %d", group, e.body.K, e.body.Seq, e.member, e.d.Attempt, prev)
		}
		last[e.body.K] = e.body.Seq
		if e.done && e.err == nil {
			taken[e.d.ID]++
		}
	}
	if once {
		for _, m := range msgs {
			if taken[m.ID] != 1 {
				t.Errorf("group %s: message key %s seq %d taken %d times, want once", group, m.Key, bodyOf(messaging.Delivery{Envelope: m}).Seq, taken[m.ID])
			}
		}
	}
}

// ready waits until each member has received a probe on each channel (a
// non-durable transport delivers only to subscriptions already in place);
// for a durable transport it returns at once. With tolerant set, failing
// publishes are retried (the broker is coming back).
func ready(t *testing.T, f Factory, c *conn, j *journal, channels []string, members []string, tolerant bool) {
	t.Helper()
	if f.Durable {
		return
	}
	j.mu.Lock()
	for _, m := range members {
		for _, ch := range channels {
			delete(j.probes, m+"\x00"+ch) // seen before a restart, say
		}
	}
	j.mu.Unlock()
	deadline := time.Now().Add(wait)
	var lastErr error
	for {
		for _, ch := range channels {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.Publish(ctx, probe(ch))
			cancel()
			if err != nil {
				if !tolerant {
					t.Fatalf("publishing a probe: %v", err)
				}
				lastErr = err
			}
		}
		pause := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(pause) {
			j.mu.Lock()
			all := true
			for _, m := range members {
				for _, ch := range channels {
					all = all && j.probes[m+"\x00"+ch]
				}
			}
			j.mu.Unlock()
			if all {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions %v did not receive on %v within %v (last publish error: %v)", members, channels, wait, lastErr)
		}
	}
}

// --- the cases ---

func testPublishAndReceive(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_publish")
	c.subscribe(j, "a", "g", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)

	sent := []messaging.Envelope{message(ch, "k1", 0), message(ch, "k1", 1), message(ch, "k2", 0)}
	publish(t, c, sent[:2]...)
	publish(t, c, sent[2])
	j.waitSucceeded(t, "g", sent)
	time.Sleep(quiet)

	got := j.snapshot()
	if len(got) != len(sent) {
		t.Errorf("%d deliveries, want %d", len(got), len(sent))
	}
	for _, m := range sent {
		i := slices.IndexFunc(got, func(e entry) bool { return e.d.ID == m.ID })
		if i < 0 {
			t.Errorf("message %s not delivered", m.ID)
			continue
		}
		d := got[i].d
		if d.Channel != m.Channel {
			t.Errorf("Channel %q, want %q", d.Channel, m.Channel)
		}
		if d.CorrelationID != m.CorrelationID || d.CausationID != m.CausationID {
			t.Errorf("CorrelationID, CausationID = %q, %q; want %q, %q", d.CorrelationID, d.CausationID, m.CorrelationID, m.CausationID)
		}
		if !d.OccurredAt.Equal(m.OccurredAt) {
			t.Errorf("OccurredAt %v, want %v", d.OccurredAt, m.OccurredAt)
		}
		if d.Attempt != 1 {
			t.Errorf("Attempt %d, want 1", d.Attempt)
		}
		if diff := samePayload(m.Payload, d.Payload); diff != "" {
			t.Error(diff)
		}
	}
}

func testKeyPreserved(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_key")
	c.subscribe(j, "a", "g", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)

	sent := []messaging.Envelope{message(ch, "sku-ÄB/1 x", 0), message(ch, "", 0)}
	publish(t, c, sent...)
	j.waitSucceeded(t, "g", sent)
	for _, e := range j.snapshot() {
		for _, m := range sent {
			if e.d.ID == m.ID && e.d.Key != m.Key {
				t.Errorf("Key %q, want %q", e.d.Key, m.Key)
			}
		}
	}
}

func testAckOnlyAfterSuccess(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_ack")
	failing := errors.New("not yet")
	sub := c.subscribe(j, "a", "g", []string{ch}, func(ctx context.Context, d messaging.Delivery) error {
		if bodyOf(d).Seq == 0 && d.Attempt <= 2 {
			return failing
		}
		return nil
	})
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)

	first := message(ch, "k", 0)
	publish(t, c, first)
	j.waitSucceeded(t, "g", []messaging.Envelope{first})
	time.Sleep(quiet)
	var attempts []int
	for _, e := range j.snapshot() {
		if e.d.ID == first.ID {
			attempts = append(attempts, e.d.Attempt)
		}
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("the message failing twice was handed with attempts %v, want [1 2 3]", attempts)
	}
	if !f.Durable {
		return
	}

	// The group's next subscription starts after the acknowledged message.
	sub.stop(t)
	second := message(ch, "k", 1)
	publish(t, c, second)
	c.subscribe(j, "b", "g", []string{ch}, nil)
	j.waitSucceeded(t, "g", []messaging.Envelope{second})
	time.Sleep(quiet)
	for _, e := range j.snapshot() {
		if e.member == "b" && e.d.ID != second.ID {
			t.Errorf("the group's next subscription was handed %s (seq %d, attempt %d), acknowledged before", e.d.ID, e.body.Seq, e.d.Attempt)
		}
	}
}

func testRedeliveryAfterCrash(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_crash")
	entered := make(chan struct{}, 1)
	a := c.subscribe(j, "a", "g", []string{ch}, func(ctx context.Context, d messaging.Delivery) error {
		if bodyOf(d).Seq != 0 {
			return nil
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // the member dies in the handler
		return ctx.Err()
	})
	sent := []messaging.Envelope{message(ch, "k", 0), message(ch, "k", 1)}
	publish(t, c, sent...)
	select {
	case <-entered:
	case <-time.After(wait):
		j.mu.Lock()
		defer j.mu.Unlock()
		t.Fatalf("the message was not handed within %v; %s", wait, j.summaryLocked())
	}
	a.stop(t)

	c.subscribe(j, "b", "g", []string{ch}, nil)
	j.waitSucceeded(t, "g", sent)
	var handed []entry
	for _, e := range j.snapshot() {
		switch e.member {
		case "a":
			if e.d.ID != sent[0].ID {
				t.Errorf("seq %d was handed while seq 0 of the same key was in the handler", e.body.Seq)
			}
		case "b":
			handed = append(handed, e)
		}
	}
	if len(handed) < 2 || handed[0].d.ID != sent[0].ID || handed[1].d.ID != sent[1].ID {
		t.Fatalf("the next subscription was handed %v, want seq 0 then seq 1", seqs(handed))
	}
	if handed[0].d.Attempt < 2 {
		t.Errorf("the unacknowledged message came again with Attempt %d, want 2 or more", handed[0].d.Attempt)
	}
	if handed[1].d.Attempt != 1 {
		t.Errorf("the message after it came with Attempt %d, want 1", handed[1].d.Attempt)
	}
}

func seqs(entries []entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s/%d#%d", e.body.K, e.body.Seq, e.d.Attempt))
	}
	return out
}

func testGroupKeepsPosition(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_position")
	before := messages(ch, keys(3), 2)
	publish(t, c, before...)
	a := c.subscribe(j, "a", "g", []string{ch}, nil)
	j.waitSucceeded(t, "g", before)
	a.stop(t)

	missed := messagesFrom(ch, keys(3), 2, 2)
	publish(t, c, missed...)
	c.subscribe(j, "b", "g", []string{ch}, nil)
	j.waitSucceeded(t, "g", missed)
	time.Sleep(quiet)
	var got []entry
	for _, e := range j.snapshot() {
		if e.member == "b" {
			got = append(got, e)
		}
	}
	if len(got) != len(missed) {
		t.Errorf("back, the group was handed %v; want only the %d messages it missed", seqs(got), len(missed))
	}
	checkOrder(t, j.snapshot(), "g", append(before, missed...), true)
}

func testDuplicateKeepsID(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_dup")
	c.subscribe(j, "a", "g", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)

	m := message(ch, "k", 0)
	publish(t, c, m)
	publish(t, c, m)
	j.waitSucceeded(t, "g", []messaging.Envelope{m})
	time.Sleep(2 * quiet)
	got := j.snapshot()
	if len(got) == 0 || len(got) > 2 {
		t.Fatalf("a message published twice was delivered %d times, want once or twice", len(got))
	}
	t.Logf("a message published twice was delivered %d times", len(got))
	for _, e := range got {
		if e.d.ID != m.ID {
			t.Errorf("delivered with id %q, want %q", e.d.ID, m.ID)
		}
		if diff := samePayload(m.Payload, e.d.Payload); diff != "" {
			t.Error(diff)
		}
	}
}

func testOrderPerKey(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_order")
	failing := errors.New("not yet")
	c.subscribe(j, "a", "g", []string{ch}, func(ctx context.Context, d messaging.Delivery) error {
		if bodyOf(d).Seq == 10 && d.Attempt == 1 {
			return failing // retried before the next of its key
		}
		if rand.IntN(10) == 0 {
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)

	const perKey = 50
	ks := keys(5)
	all := messages(ch, ks, perKey)
	// The first 5 of each key in one batch, interleaved; then each key from
	// its own publisher, in batches of 1 to 5.
	publish(t, c, all[:5*len(ks)]...)
	var wg sync.WaitGroup
	errs := make(chan error, len(ks))
	for ki := range ks {
		var mine []messaging.Envelope
		for i := 5 * len(ks); i < len(all); i++ {
			if i%len(ks) == ki {
				mine = append(mine, all[i])
			}
		}
		wg.Go(func() {
			for len(mine) > 0 {
				n := min(1+rand.IntN(5), len(mine))
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := c.Publish(ctx, mine[:n]...)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				mine = mine[n:]
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	j.waitSucceeded(t, "g", all)
	time.Sleep(quiet)
	checkOrder(t, j.snapshot(), "g", all, true)
	j.checkProblems(t)
	retried := 0
	for _, e := range j.snapshot() {
		if e.body.Seq == 10 && e.d.Attempt == 2 {
			retried++
		}
	}
	if retried != len(ks) {
		t.Errorf("%d of the %d failed messages were handed again with Attempt 2", retried, len(ks))
	}
}

func testOneMemberPerMessage(t *testing.T, f Factory) {
	c1, c2, j, ch := open(t, f), open(t, f), newJournal(), testenv.Name("tt_members")
	c1.subscribe(j, "a", "g", []string{ch}, nil)
	c2.subscribe(j, "b", "g", []string{ch}, nil)
	all := messages(ch, keys(10), 10)
	for i := 0; i < len(all); i += 10 {
		publish(t, c1, all[i:i+10]...)
	}
	j.waitSucceeded(t, "g", all)
	time.Sleep(2 * quiet)
	entries := j.snapshot()
	checkOrder(t, entries, "g", all, true)
	j.checkProblems(t)
	n := map[string]int{}
	for _, e := range entries {
		n[e.member]++
	}
	if len(entries) != len(all) {
		t.Errorf("%d deliveries for %d messages", len(entries), len(all))
	}
	t.Logf("member a took %d messages, b %d", n["a"], n["b"])
}

func testEveryGroupGetsEveryMessage(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_groups")
	c.subscribe(j, "a", "g1", []string{ch}, nil)
	c.subscribe(j, "b", "g2", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a", "b"}, false)

	all := messages(ch, keys(4), 5)
	publish(t, c, all...)
	j.waitSucceeded(t, "g1", all)
	j.waitSucceeded(t, "g2", all)
	time.Sleep(quiet)
	entries := j.snapshot()
	checkOrder(t, entries, "g1", all, true)
	checkOrder(t, entries, "g2", all, true)
	if len(entries) != 2*len(all) {
		t.Errorf("%d deliveries, want %d", len(entries), 2*len(all))
	}
}

func testNewGroupStartsAtOldest(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_oldest")
	all := messages(ch, keys(4), 5)
	publish(t, c, all[:10]...)
	publish(t, c, all[10:]...)
	c.subscribe(j, "a", testenv.Name("newgroup"), []string{ch}, nil)
	j.waitSucceeded(t, "", all)
	time.Sleep(quiet)
	entries := j.snapshot()
	checkOrder(t, entries, entries[0].group, all, true)
}

func testRewind(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_rewind")
	rw, ok := c.Transport.(messaging.Rewinder)
	if !ok {
		t.Skipf("%T does not implement messaging.Rewinder", c.Transport)
	}
	a := c.subscribe(j, "a", "g", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)
	all := messages(ch, keys(3), 4)
	publish(t, c, all...)
	j.waitSucceeded(t, "g", all)
	a.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := rw.Rewind(ctx, "g", []string{ch}); err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	c.subscribe(j, "b", "g", []string{ch}, nil)
	j.waitFor(t, wait, "every message again after Rewind", func() bool {
		n := map[string]bool{}
		for _, e := range j.entries {
			if e.member == "b" && e.done && e.err == nil {
				n[e.d.ID] = true
			}
		}
		for _, m := range all {
			if !n[m.ID] {
				return false
			}
		}
		return true
	})
	var again []entry
	for _, e := range j.snapshot() {
		if e.member == "b" {
			again = append(again, e)
		}
	}
	checkOrder(t, again, "g", all, true)
}

func testPublishWithoutSubscribers(t *testing.T, f Factory) {
	c := open(t, f)
	ch := testenv.Name("tt_nobody")
	publish(t, c, message(ch, "k", 0))
	publish(t, c, messages(ch, keys(3), 3)...)
	publish(t, c) // nothing at all
}

func testSubscribeReturnsWhenCancelled(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_cancel")
	s := c.subscribe(j, "a", "g", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)
	m := message(ch, "k", 0)
	publish(t, c, m)
	j.waitSucceeded(t, "g", []messaging.Envelope{m})

	start := time.Now()
	s.cancel()
	select {
	case <-s.done:
		if !errors.Is(s.err, context.Canceled) {
			t.Errorf("Subscribe returned %v, want context.Canceled", s.err)
		}
		t.Logf("Subscribe returned %v after its context was cancelled", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Errorf("Subscribe did not return within 5s of its context's cancellation")
	}
}

func testBrokerRestart(t *testing.T, f Factory) {
	if f.Restart == nil {
		t.Skip("no Factory.Restart: the broker cannot be restarted")
	}
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_restart")
	c.subscribe(j, "a", "g", []string{ch}, nil)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)
	before := messages(ch, keys(3), 2)
	publish(t, c, before...)
	j.waitSucceeded(t, "g", before)

	f.Restart(t)
	// A non-durable subscription must be back before it can receive.
	ready(t, f, c, j, []string{ch}, []string{"a"}, true)
	after := messagesFrom(ch, keys(3), 2, 2)
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Publish(ctx, after...)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish after the restart still fails after %v: %v", wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	j.waitSucceeded(t, "g", after)
	checkOrder(t, j.snapshot(), "g", after, false)
}

// poisoned is the event of PanickingHandler: its handler panics on seq 0.
type poisoned struct {
	K   string `json:"k"`
	Seq int    `json:"seq"`
}

// deadLetters keeps dead letters in memory.
type deadLetters struct {
	mu   sync.Mutex
	list []messaging.DeadLetter
}

func (d *deadLetters) AddDeadLetter(_ context.Context, l messaging.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, l)
	return nil
}

func (d *deadLetters) DeadLetters(context.Context, int) ([]messaging.DeadLetter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.list), nil
}

func testPanickingHandler(t *testing.T, f Factory) {
	c, j, ch := open(t, f), newJournal(), testenv.Name("tt_panic")
	reg := messaging.NewRegistry()
	messaging.Register(reg, ch, func(p poisoned) string { return p.K }, nil)
	bus := messaging.NewBus(testenv.Logger(t, slog.LevelError+1), nil)
	var mu sync.Mutex
	handled := map[int]int{}
	messaging.HandleIdempotentEvent(bus, "tt.poisoned", func(ctx context.Context, p poisoned) ([]messaging.Raised, error) {
		if p.Seq == 0 {
			panic(fmt.Sprintf("poisoned message %d", p.Seq))
		}
		mu.Lock()
		handled[p.Seq]++
		mu.Unlock()
		return nil, nil
	})
	dead := &deadLetters{}
	consumer := &messaging.Consumer{Name: "g", Registry: reg, Bus: bus, DeadLetters: dead, Log: testenv.Logger(t, slog.LevelError+1), MaxAttempts: 3}
	c.subscribe(j, "a", "g", []string{ch}, consumer.Handle)
	ready(t, f, c, j, []string{ch}, []string{"a"}, false)

	first, next := message(ch, "k", 0), message(ch, "k", 1)
	publish(t, c, first, next)
	j.waitSucceeded(t, "g", []messaging.Envelope{first, next})
	mu.Lock()
	got := handled[1]
	mu.Unlock()
	if got == 0 {
		t.Errorf("the message after the poisoned one was not handled")
	}
	letters, _ := dead.DeadLetters(context.Background(), 10)
	if len(letters) != 1 || letters[0].MessageID != first.ID || !strings.Contains(letters[0].Reason, "panicked: poisoned message 0") {
		t.Fatalf("dead letters %+v, want the poisoned message, its reason the panic", letters)
	}
	for _, e := range j.snapshot() {
		if e.d.ID == first.ID && e.d.Attempt > 3 {
			t.Errorf("the poisoned message was handed %d times, want at most 3", e.d.Attempt)
		}
	}
}
