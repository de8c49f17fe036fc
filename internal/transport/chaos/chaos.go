// Package chaos is an in-memory broker for tests: a messaging.Transport
// that keeps every message in the process and delivers it as a partitioned
// durable broker (Kafka, Redis Streams, NATS JetStream; see the README's
// table) is allowed to at its worst, so that tests shake out the ordering
// and delivery assumptions of the services that talk through it.
//
// What it models:
//   - A log per channel, kept for the life of the broker. A consumer group
//     keeps its position in it: a group with no running Subscribe (a
//     service that is down) falls behind and catches up when it comes back,
//     and a group new to the broker starts at the oldest message.
//   - Order per channel and key, and no more: a message is handed to a
//     group only once every earlier message of its channel and key was
//     acknowledged (its handler returned nil). Across keys and channels the
//     broker picks a random ready queue, so messages overtake each other as
//     freely as the promises allow (a real broker orders whole partitions).
//   - Members: the running Subscribe calls of a group share its queues, each
//     queue held by one member at a time (as a partition), and at most
//     Options.Concurrency queues of a group are in flight at once. A member
//     that stops leaves what it had not acknowledged to the next one.
//   - At least once, at its worst: a random delay before each delivery; a
//     failed message handed again after a short backoff, its queue held; a
//     duplicate (an acknowledgement lost: the message comes again at once);
//     a rewind (a member that crashed before committing its offsets: the
//     last few acknowledged messages of the queue come again, in order).
//     Delivery.Attempt counts the deliveries of a message to a group.
//
// Every random choice comes from one generator seeded with Options.Seed;
// goroutine scheduling still varies from run to run. Conn returns another
// transport on the same broker, as a second connection (a second instance
// of a service). Pending, Idle, WaitIdle and Stats let a test wait for the
// system to drain and see how much chaos it went through.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Options tune the chaos. A zero field takes its default; a negative
// MaxDelay, DuplicateRate, RewindRate or MaxRewind turns that chaos off.
type Options struct {
	// Seed steers every random choice; 0 picks one at random (see Seed).
	Seed uint64
	// MaxDelay bounds the random delay before each delivery (default 2ms).
	MaxDelay time.Duration
	// Concurrency bounds the deliveries in flight at once per group, each
	// on a queue of its own (default 4; 1 hands one message at a time).
	Concurrency int
	// DuplicateRate is the chance that an acknowledged message is handed
	// again at once (default 0.05).
	DuplicateRate float64
	// RewindRate is the chance that, after an acknowledgement, its queue
	// goes back by 1 to MaxRewind acknowledged messages (default 0.02).
	RewindRate float64
	// MaxRewind bounds a rewind (default 3).
	MaxRewind int
}

func (o Options) withDefaults() Options {
	for o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 2 * time.Millisecond
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.DuplicateRate == 0 {
		o.DuplicateRate = 0.05
	}
	if o.RewindRate == 0 {
		o.RewindRate = 0.02
	}
	if o.MaxRewind == 0 {
		o.MaxRewind = 3
	}
	return o
}

// Stats counts what the broker did.
type Stats struct {
	Published  int // messages stored
	Deliveries int // handler calls
	Failures   int // handler errors
	Duplicates int // acknowledged messages handed again at once
	Rewinds    int // queues rewound after an acknowledgement
	Reorders   int // first deliveries of a message published before one its group already had
}

// Transport is a connection to a chaos broker; Close closes this
// connection only.
type Transport struct {
	b     *broker
	done  chan struct{}
	close sync.Once
}

var (
	_ messaging.Transport = (*Transport)(nil)
	_ messaging.Rewinder  = (*Transport)(nil)
)

var errClosed = errors.New("chaos: transport closed")

type broker struct {
	mu      sync.Mutex
	opts    Options
	rng     *rand.Rand
	seq     uint64              // of the last message published
	queues  map[qid]*queue      // the log of each channel and key
	byChan  map[string][]*queue // in the order they appeared
	groups  []*group
	stats   Stats
	changed chan struct{} // closed and replaced when anything changed
}

type qid struct{ channel, key string }

type queue struct {
	channel string
	msgs    []stored
}

type stored struct {
	env messaging.Envelope
	seq uint64
}

type group struct {
	name     string
	channels map[string]bool // subscribed or declared
	cursors  []*cursor       // one per queue of those channels
	members  []*member       // its running Subscribe calls
	inflight int
	lastSeq  uint64 // highest seq handed a first time
}

// cursor is a group's position in a queue.
type cursor struct {
	q        *queue
	pos      int  // the next message to hand; those before are acknowledged
	busy     bool // a delivery is in flight (or waiting for its delay)
	owner    *member
	attempts []int // deliveries of each message
}

type member struct {
	ctx      context.Context
	channels []string
	h        messaging.Handler
	wg       sync.WaitGroup // its deliveries in flight
}

// New returns a transport on a new broker.
func New(opts Options) *Transport {
	opts = opts.withDefaults()
	b := &broker{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed)),
		queues:  map[qid]*queue{},
		byChan:  map[string][]*queue{},
		changed: make(chan struct{}),
	}
	return &Transport{b: b, done: make(chan struct{})}
}

// Conn returns another transport on t's broker.
func (t *Transport) Conn() *Transport { return &Transport{b: t.b, done: make(chan struct{})} }

// Seed returns the seed the broker runs with.
func (t *Transport) Seed() uint64 { return t.b.opts.Seed }

// Close closes t: later Publish and Subscribe calls on it fail, and its
// running Subscribe calls return. The broker and its other transports go on.
func (t *Transport) Close() error {
	t.close.Do(func() { close(t.done) })
	return nil
}

func (t *Transport) check(ctx context.Context) error {
	select {
	case <-t.done:
		return errClosed
	default:
		return ctx.Err()
	}
}

// Publish stores msgs and returns; they are delivered later.
func (t *Transport) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		id := qid{m.Channel, m.Key}
		q := b.queues[id]
		if q == nil {
			q = &queue{channel: m.Channel}
			b.queues[id] = q
			b.byChan[m.Channel] = append(b.byChan[m.Channel], q)
			for _, g := range b.groups {
				if g.channels[m.Channel] {
					g.cursors = append(g.cursors, &cursor{q: q})
				}
			}
		}
		m.Payload = bytes.Clone(m.Payload)
		b.seq++
		q.msgs = append(q.msgs, stored{m, b.seq})
		b.stats.Published++
	}
	for _, g := range b.groups {
		b.dispatch(g)
	}
	b.kick()
	return nil
}

// Declare makes group known on channels before it first subscribes, so
// that Pending counts what it has yet to take. (A group new to the broker
// starts at the oldest message anyway.)
func (t *Transport) Declare(group string, channels ...string) {
	t.b.mu.Lock()
	t.b.learn(t.b.group(group), channels)
	t.b.mu.Unlock()
}

// Subscribe hands the messages on channels to h, as a member of group,
// until ctx is done or t is closed; it returns once its handlers returned.
func (t *Transport) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &member{ctx: mctx, channels: slices.Clone(channels), h: h}
	b := t.b
	b.mu.Lock()
	g := b.group(group)
	b.learn(g, channels)
	g.members = append(g.members, m)
	b.dispatch(g)
	b.kick()
	b.mu.Unlock()

	err := errClosed
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.done:
	}
	cancel()
	b.mu.Lock()
	g.members = slices.DeleteFunc(g.members, func(x *member) bool { return x == m })
	b.kick()
	b.mu.Unlock()
	m.wg.Wait() // its deliveries go back to the group as they end
	return err
}

// Rewind hands group every message of channels again, from the oldest.
func (t *Transport) Rewind(ctx context.Context, group string, channels []string) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.group(group)
	b.learn(g, channels)
	for _, c := range g.cursors {
		if slices.Contains(channels, c.q.channel) {
			c.pos = 0
		}
	}
	b.dispatch(g)
	b.kick()
	return nil
}

// Pending returns how many messages group has yet to acknowledge on the
// channels it subscribed to or was declared on (in flight included).
func (t *Transport) Pending(group string) int {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	n := 0
	if g := t.b.find(group); g != nil {
		for _, c := range g.cursors {
			n += len(c.q.msgs) - c.pos
		}
	}
	return n
}

// Members returns how many Subscribe calls of group are running.
func (t *Transport) Members(group string) int {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if g := t.b.find(group); g != nil {
		return len(g.members)
	}
	return 0
}

// Idle reports whether no group with a running Subscribe has a message in
// flight or one waiting on a channel it reads.
func (t *Transport) Idle() bool {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	return t.b.idle()
}

// WaitIdle waits until Idle holds, or ctx is done. It returns at once while
// no Subscribe runs: wait for Members first.
func (t *Transport) WaitIdle(ctx context.Context) error {
	b := t.b
	for {
		b.mu.Lock()
		idle, changed := b.idle(), b.changed
		b.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Stats returns what the broker did so far.
func (t *Transport) Stats() Stats {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	return t.b.stats
}

// --- the broker; b.mu is held ---

func (b *broker) kick() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *broker) find(name string) *group {
	for _, g := range b.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

// group returns the group named name, new to the broker if need be.
func (b *broker) group(name string) *group {
	if g := b.find(name); g != nil {
		return g
	}
	g := &group{name: name, channels: map[string]bool{}}
	b.groups = append(b.groups, g)
	return g
}

// learn adds channels to g's, at their oldest message.
func (b *broker) learn(g *group, channels []string) {
	for _, ch := range channels {
		if !g.channels[ch] {
			g.channels[ch] = true
			for _, q := range b.byChan[ch] {
				g.cursors = append(g.cursors, &cursor{q: q})
			}
		}
	}
}

// readers returns g's live members that read channel.
func (g *group) readers(channel string) []*member {
	var out []*member
	for _, m := range g.members {
		if m.ctx.Err() == nil && slices.Contains(m.channels, channel) {
			out = append(out, m)
		}
	}
	return out
}

func (b *broker) idle() bool {
	for _, g := range b.groups {
		if g.inflight > 0 {
			return false
		}
		for _, c := range g.cursors {
			if c.pos < len(c.q.msgs) && len(g.readers(c.q.channel)) > 0 {
				return false
			}
		}
	}
	return true
}

// dispatch starts deliveries on random ready queues of g, up to the
// concurrency, each to the queue's member (a random one if it has none).
func (b *broker) dispatch(g *group) {
	if len(g.members) == 0 || g.inflight >= b.opts.Concurrency {
		return
	}
	readers := map[string][]*member{}
	var ready []*cursor
	for _, c := range g.cursors {
		if c.busy || c.pos >= len(c.q.msgs) {
			continue
		}
		ms, ok := readers[c.q.channel]
		if !ok {
			ms = g.readers(c.q.channel)
			readers[c.q.channel] = ms
		}
		if len(ms) > 0 {
			ready = append(ready, c)
		}
	}
	for g.inflight < b.opts.Concurrency && len(ready) > 0 {
		i := b.rng.IntN(len(ready))
		c := ready[i]
		ready[i] = ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		if ms := readers[c.q.channel]; !slices.Contains(ms, c.owner) {
			c.owner = ms[b.rng.IntN(len(ms))]
		}
		c.busy = true
		g.inflight++
		c.owner.wg.Add(1)
		go b.deliver(g, c, c.owner, b.pause(b.opts.MaxDelay))
	}
}

// pause returns a random duration from 0 to max.
func (b *broker) pause(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(b.rng.Int64N(int64(max) + 1))
}

// deliver hands c's next message to m after wait, again while h fails and
// m lives, then gives the queue back to g.
func (b *broker) deliver(g *group, c *cursor, m *member, wait time.Duration) {
	defer m.wg.Done()
	for sleep(m.ctx, wait) {
		b.mu.Lock()
		off := c.pos
		for len(c.attempts) <= off {
			c.attempts = append(c.attempts, 0)
		}
		c.attempts[off]++
		msg := c.q.msgs[off]
		d := messaging.Delivery{Envelope: msg.env, Attempt: c.attempts[off]}
		d.Payload = bytes.Clone(d.Payload)
		b.stats.Deliveries++
		if d.Attempt == 1 {
			if msg.seq < g.lastSeq {
				b.stats.Reorders++
			}
			g.lastSeq = max(g.lastSeq, msg.seq)
		}
		b.mu.Unlock()

		err := m.h(m.ctx, d)

		b.mu.Lock()
		if err == nil {
			b.ack(c, off)
			b.mu.Unlock()
			break
		}
		b.stats.Failures++
		wait = time.Millisecond + b.pause(4*time.Millisecond)
		b.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c.busy = false
	g.inflight--
	b.dispatch(g)
	b.kick()
}

// ack acknowledges c's message at off, unless the acknowledgement is lost
// (a duplicate) or the queue rewinds.
func (b *broker) ack(c *cursor, off int) {
	if c.pos != off {
		return // Rewind moved the queue meanwhile
	}
	switch {
	case b.rng.Float64() < b.opts.DuplicateRate:
		b.stats.Duplicates++
	case b.opts.MaxRewind > 0 && b.rng.Float64() < b.opts.RewindRate:
		b.stats.Rewinds++
		c.pos = max(0, off+1-(1+b.rng.IntN(b.opts.MaxRewind)))
	default:
		c.pos = off + 1
	}
}

// sleep waits d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}
