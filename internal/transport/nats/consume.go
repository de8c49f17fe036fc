package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Bodies of the acknowledgements.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

// partition is one partition run: a (group, channel, partition) of a
// Subscribe call, which takes the partition's lease and then consumes it.
type partition struct {
	t       *JetStream
	group   string
	channel string
	p       int
	h       messaging.Handler
	name    string // the consumer's
	key     string // the lease's
	id      string // the holder's
}

// consume runs the partition until ctx is done: it waits for the lease,
// consumes while it holds it, and waits again if it loses it.
func (t *JetStream) consume(ctx context.Context, group, channel string, p int, h messaging.Handler) {
	pt := &partition{
		t: t, group: group, channel: channel, p: p, h: h,
		name: ConsumerName(group, channel, p),
		key:  LeaseKey(group, channel, p),
		id:   holderID(),
	}
	for ctx.Err() == nil {
		l := pt.acquire(ctx)
		if l == nil {
			return
		}
		pt.hold(ctx, l)
	}
}

// delivery is a message received, not yet acknowledged.
type delivery struct {
	msg   *nats.Msg
	meta  *nats.MsgMetadata
	sseq  uint64
	dseq  uint64 // the consumer's sequence of the delivery msg is
	times int    // times handed to h so far (its next Attempt is one more)
}

// session is the state of a partition while its run holds the lease.
type session struct {
	pt    *partition
	lease *lease

	wake chan struct{} // something changed: the handle loop looks again

	mu             sync.Mutex
	consumer       jetstream.Consumer
	created        time.Time      // when the consumer was created (as the server says)
	recordConsumer time.Time      // the consumer the lease record's counts refer to
	handed         map[uint64]int // counts to keep in the lease record
	queue          []*delivery    // received, not handed; by stream sequence
	current        *delivery      // in h (or waiting to be retried)
	handedUpTo     uint64         // stream sequence of the last message handled
	ackReply       string         // of the last message handled, not yet acknowledged
	ackDseq        uint64         // its delivery's consumer sequence
	unacked        int            // messages handled since the last ack
	lastDseq       uint64         // consumer sequence of the last delivery received
	received       uint64         // deliveries received
	incarnation    uint64         // times the fetch loop created the consumer
	synced         bool           // every message pending for the consumer is in queue or current
	unsyncedSince  time.Time
	stale          bool   // a Rewind deleted the consumer: hand nothing until it is created again
	gen            uint64 // counts resets: deliveries of an older gen are of a consumer gone
	req            string // subject of the current pull request
	reqN           int
	sub            *nats.Subscription // of inbox.*: what the pull requests bring
	inbox          string
	epoch          int           // of the subscription: one per incarnation of the consumer
	subEpoch       int           // of sub
	reqCount       int           // messages it brought
	reqDone        chan struct{} // closed when it ended
	reqErr         error         // why it ended, when not normally
	activity       time.Time     // last message or heartbeat of the current request
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// hold consumes the partition while l holds, until ctx is done; then it
// gives back what it holds, and the lease.
func (pt *partition) hold(ctx context.Context, l *lease) {
	t := pt.t
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &session{
		pt: pt, lease: l, wake: make(chan struct{}, 1),
		recordConsumer: l.rec.Consumer,
		handed:         map[uint64]int{},
	}
	for k, v := range l.rec.Handed {
		s.handed[k] = v
	}
	t.register(pt.name, s)
	defer t.unregister(pt.name, s)
	t.log.DebugContext(ctx, "nats partition taken", "group", pt.group, "channel", pt.channel, "partition", pt.p, "holder", pt.id)

	stopRenew, stopProgress := make(chan struct{}), make(chan struct{})
	var renewing, progressing sync.WaitGroup
	renewing.Go(func() {
		l.keep(stopRenew, func(err error) {
			if ctx.Err() == nil {
				t.log.WarnContext(ctx, "nats partition lease lost: giving the partition up", "group", pt.group, "channel", pt.channel, "partition", pt.p, "err", err)
			}
			cancel()
		})
	})
	progressing.Go(func() { s.keepInProgress(stopProgress) })
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		s.fetchLoop(hctx)
	}()

	s.handleLoop(hctx) // returns once h returned

	cancel()
	<-fetched
	s.drain()
	close(stopRenew)
	renewing.Wait()
	s.release(ctx)
	close(stopProgress)
	progressing.Wait()
}

// handleLoop hands the messages to h, in order, one at a time, until ctx
// is done or the lease is lost.
func (s *session) handleLoop(ctx context.Context) {
	for {
		d, gen, ok := s.next(ctx)
		if !ok {
			return
		}
		s.handle(ctx, d, gen)
	}
}

// next waits for the next message that can be handed, and makes it the
// current one.
func (s *session) next(ctx context.Context) (*delivery, uint64, bool) {
	for {
		if ctx.Err() != nil {
			return nil, 0, false
		}
		if !s.lease.valid() {
			return nil, 0, false
		}
		s.mu.Lock()
		switch {
		case s.consumer == nil:
		case s.stale:
			// A Rewind deleted the consumer: nothing received from it
			// may be handed.
			s.resetLocked("the consumer was deleted", true)
			s.mu.Unlock()
			continue
		case !s.synced:
			s.mu.Unlock()
			s.sync(ctx)
			continue
		case len(s.queue) > 0:
			d := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.current = d
			d.times++
			gen := s.gen
			s.mu.Unlock()
			return d, gen, true
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-s.wake:
		}
	}
}

// handle hands d to h until h takes it (retrying it in place, with
// backoff), then acknowledges it. When ctx is done first, d stays current:
// release gives it back.
func (s *session) handle(ctx context.Context, d *delivery, gen uint64) {
	pt := s.pt
	t := pt.t
	env := t.envelopeOf(pt.channel, d.msg, d.meta)
	for {
		err := pt.h(ctx, messaging.Delivery{Envelope: env, Attempt: d.times})
		if err == nil {
			s.mu.Lock()
			var reply string
			if gen == s.gen {
				s.handedUpTo = d.sseq
				delete(s.handed, d.sseq)
				// The consumer acknowledges all: one ack covers every
				// message handled before. It goes every ackEvery messages,
				// and whenever the partition has nothing more at hand.
				s.ackReply, s.ackDseq = d.msg.Reply, d.dseq
				s.unacked++
				if s.unacked >= t.ackEvery() || len(s.queue) == 0 {
					reply = s.takeAckLocked()
				}
			}
			s.current = nil
			s.mu.Unlock()
			s.sendAck(reply)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.flushAck() // the messages handled before wait no more
		delay := messaging.RedeliveryDelay(err, d.times, messaging.Backoff{Initial: t.cfg.backoffBase, Max: t.cfg.backoffMax})
		t.log.DebugContext(ctx, "nats message failed, will be handed again", "channel", pt.channel, "message_id", env.ID, "attempt", d.times, "retry_in_ms", delay.Milliseconds(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		s.mu.Lock()
		if gen != s.gen {
			// The consumer was created again meanwhile: its messages
			// come again from the new one.
			s.current = nil
			s.mu.Unlock()
			return
		}
		d.times++
		s.handed[d.sseq] = d.times
		handed, created := s.handedCopyLocked(), s.created
		s.mu.Unlock()
		// Keep the count with the lease, so that it goes on after a crash.
		if err := s.lease.write(ctx, func(r *leaseRecord) { r.Consumer, r.Handed = created, handed }); err != nil {
			t.log.DebugContext(ctx, "nats attempt count not recorded", "channel", pt.channel, "message_id", env.ID, "err", err)
			if errors.Is(err, errLeaseLost) {
				d.times--
				return
			}
		}
		if ctx.Err() != nil {
			d.times-- // not handed again: release gives it back
			return
		}
	}
}

func (s *session) handedCopyLocked() map[uint64]int {
	if len(s.handed) == 0 {
		return nil
	}
	out := make(map[uint64]int, len(s.handed))
	for k, v := range s.handed {
		if k > s.handedUpTo {
			out[k] = v
		}
	}
	if len(out) > maxHanded {
		keys := make([]uint64, 0, len(out))
		for k := range out {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys[:len(keys)-maxHanded] {
			delete(out, k)
		}
	}
	return out
}

// sync checks whether every message the server counts pending for the
// consumer is one this session received (and not yet handed): only then
// can it hand them, in order, knowing that no earlier message of the
// partition is held by someone else (a previous holder, or a pull request
// abandoned). Otherwise it waits a little: the messages held elsewhere
// come back once given back, or after AckWait.
func (s *session) sync(ctx context.Context) {
	t := s.pt.t
	s.flushAck() // the server counts them pending until then
	s.mu.Lock()
	c, gen, received := s.consumer, s.gen, s.received
	s.mu.Unlock()
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := c.Info(ictx)
	cancel()
	s.mu.Lock()
	if gen != s.gen || c != s.consumer || s.synced || s.stale {
		s.mu.Unlock()
		return
	}
	// The answer tells about the deliveries received before it was asked
	// for: with more received since, ask again.
	conclusive := err == nil && received == s.received
	if conclusive {
		held := uint64(len(s.queue))
		// Messages handled whose ack waits (see takeAckLocked) are still
		// pending.
		unacked := uint64(0)
		if s.ackReply != "" {
			unacked = uint64(s.unacked)
		}
		pending := uint64(info.NumAckPending)
		switch {
		case info.Delivered.Consumer < s.lastDseq:
			s.resetLocked(fmt.Sprintf("the consumer's sequence went back from %d to %d", s.lastDseq, info.Delivered.Consumer), false)
		case held == 0 && pending == 0:
			s.synced, s.lastDseq = true, info.Delivered.Consumer
		case held+unacked == pending && info.Delivered.Consumer == s.lastDseq && (unacked > 0 || !s.inOrderLocked()):
			// Every message is here, but not delivered in the order of
			// the stream (they came back from several members):
			// acknowledging one would hide those delivered before it (see
			// takeAckLocked). Given back in order, they are delivered
			// again in order.
			t.log.DebugContext(ctx, "nats giving back what the partition holds, to have it in order", "channel", s.pt.channel, "partition", s.pt.p, "held", held)
			s.requeueLocked()
		case held == pending && info.Delivered.Consumer == s.lastDseq:
			s.synced = true
		case held+unacked > pending || time.Since(s.unsyncedSince) > 2*t.cfg.ackWait+t.leaseTTL():
			// Something held is not pending any more, or the wait lasts:
			// give everything back and collect it again.
			t.log.DebugContext(ctx, "nats giving back what the partition holds, to collect it again", "channel", s.pt.channel, "partition", s.pt.p, "held", held, "pending", pending)
			s.requeueLocked()
			s.unsyncedSince = time.Now()
		}
		if s.synced {
			s.mu.Unlock()
			if held > 0 {
				t.log.DebugContext(ctx, "nats partition in step", "channel", s.pt.channel, "partition", s.pt.p, "held", held)
			}
			return
		}
	}
	s.mu.Unlock()
	if err != nil {
		t.log.DebugContext(ctx, "nats consumer info failed", "channel", s.pt.channel, "partition", s.pt.p, "err", err)
	}
	if !conclusive && err == nil {
		return
	}
	select {
	case <-ctx.Done():
	case <-s.wake:
	case <-time.After(200 * time.Millisecond):
	}
}

// takeAckLocked returns the reply subject that acknowledges the messages
// handled, if any are not yet and it is safe.
//
// Acknowledging all through a delivery also sets the consumer's floor of
// delivery sequences: a message whose delivery is below it counts as
// acknowledged for its acks, negative acks and progress (nats-server 2.9),
// although it is still pending. An ack therefore waits while a message
// held has an earlier delivery than the message acknowledged (it was
// redelivered after it): the ack of a later message covers it.
func (s *session) takeAckLocked() string {
	if s.ackReply == "" || !s.safeAckLocked(s.ackDseq) {
		return ""
	}
	reply := s.ackReply
	s.ackReply, s.ackDseq, s.unacked = "", 0, 0
	return reply
}

// safeAckLocked reports whether acknowledging all through a delivery of
// consumer sequence dseq leaves every message held above the floor.
func (s *session) safeAckLocked(dseq uint64) bool {
	if s.current != nil && s.current.dseq < dseq {
		return false
	}
	for _, d := range s.queue {
		if d.dseq < dseq {
			return false
		}
	}
	return true
}

// inOrderLocked reports whether the messages held were delivered in the
// order of the stream.
func (s *session) inOrderLocked() bool {
	for i := 1; i < len(s.queue); i++ {
		if s.queue[i].dseq < s.queue[i-1].dseq {
			return false
		}
	}
	return true
}

// sendAck acknowledges, through reply, every message handled up to it.
func (s *session) sendAck(reply string) {
	if reply == "" {
		return
	}
	if err := s.pt.t.nc.Publish(reply, ackAck); err != nil {
		s.pt.t.log.Warn("nats ack failed: the messages will be delivered again", "channel", s.pt.channel, "partition", s.pt.p, "err", err)
	}
}

// flushAck acknowledges the messages handled.
func (s *session) flushAck() {
	s.mu.Lock()
	reply := s.takeAckLocked()
	s.mu.Unlock()
	s.sendAck(reply)
}

// mark returns the session's incarnation, before a Rewind deletes its
// consumer.
func (s *session) mark() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.incarnation
}

// invalidate tells the session that a Rewind deleted its consumer, unless
// it was created again since mark.
func (s *session) invalidate(mark uint64) {
	s.mu.Lock()
	if s.incarnation == mark {
		s.stale = true
	}
	s.mu.Unlock()
	s.signal()
}

// requeueLocked gives back every message received and not handed, in
// order, keeping their counts.
func (s *session) requeueLocked() {
	for _, d := range s.queue {
		s.handed[d.sseq] = d.times
		s.pt.t.nc.Publish(d.msg.Reply, ackNak)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
}

// resetLocked forgets the deliveries of the consumer: it was deleted or
// created again, or the server lost part of its state. With old set, what
// comes for the pull requests made before is ignored: it was sent by the
// consumer deleted.
func (s *session) resetLocked(why string, old bool) {
	s.pt.t.log.Info("nats partition starts over", "group", s.pt.group, "channel", s.pt.channel, "partition", s.pt.p, "reason", why)
	for _, d := range s.queue {
		s.pt.t.nc.Publish(d.msg.Reply, ackNak)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	s.gen++
	s.synced, s.stale = false, false
	s.unsyncedSince = time.Now()
	s.lastDseq, s.handedUpTo = 0, 0
	s.ackReply, s.ackDseq, s.unacked = "", 0, 0 // never acknowledge all with a delivery of a consumer gone
	if old {
		s.epoch++ // what comes for the pull requests made before is ignored
	}
}

// onMsg receives what the pull requests of the subscription of epoch
// bring: messages and statuses.
func (s *session) onMsg(m *nats.Msg, epoch int) {
	if m.Reply == "" {
		s.onStatus(m)
		return
	}
	t := s.pt.t
	meta, err := m.Metadata()
	if err != nil {
		t.log.Error("nats message without metadata: terminated", "subject", m.Subject, "reply", m.Reply, "err", err)
		t.nc.Publish(m.Reply, ackTerm)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch {
		return // sent by a consumer deleted since
	}
	// A message carries the subject it was published on, not the pull
	// request's: it is counted for the current one (a message for an
	// earlier request, abandoned, only makes the next come sooner).
	s.activity = time.Now()
	s.reqCount++
	if s.reqCount >= t.cfg.batch {
		s.endRequestLocked(s.req, nil)
	}
	sseq, dseq := meta.Sequence.Stream, meta.Sequence.Consumer
	s.received++
	if s.synced {
		switch {
		case dseq <= s.lastDseq:
			s.resetLocked(fmt.Sprintf("the consumer's sequence went back from %d to %d", s.lastDseq, dseq), false)
		case dseq != s.lastDseq+1:
			// Deliveries this session did not receive: a fetch abandoned,
			// or someone else fetching.
			s.synced, s.unsyncedSince = false, time.Now()
			t.log.Debug("nats deliveries missed: the partition waits until it holds every pending message", "channel", s.pt.channel, "partition", s.pt.p, "expected", s.lastDseq+1, "got", dseq)
		}
	}
	s.lastDseq = max(s.lastDseq, dseq)
	if sseq <= s.handedUpTo {
		// Handled, its ack lost: acknowledge it again, unless that would
		// hide a message held (the next ack covers it then).
		if s.safeAckLocked(dseq) {
			t.nc.Publish(m.Reply, ackAck)
		}
		return
	}
	if c := s.current; c != nil && c.sseq == sseq {
		c.msg, c.meta, c.dseq = m, meta, dseq // delivered again: acknowledge this delivery
		return
	}
	i, found := slices.BinarySearchFunc(s.queue, sseq, func(d *delivery, seq uint64) int {
		switch {
		case d.sseq < seq:
			return -1
		case d.sseq > seq:
			return 1
		}
		return 0
	})
	if found {
		s.queue[i].msg, s.queue[i].meta, s.queue[i].dseq = m, meta, dseq
		return
	}
	d := &delivery{msg: m, meta: meta, sseq: sseq, dseq: dseq, times: int(meta.NumDelivered) - 1}
	if n, ok := s.handed[sseq]; ok {
		d.times = n
	}
	s.queue = slices.Insert(s.queue, i, d)
	s.signal()
}

// onStatus handles a status of a pull request: a heartbeat, or its end.
func (s *session) onStatus(m *nats.Msg) {
	status := m.Header.Get("Status")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch status {
	case "100": // idle heartbeat
		if m.Subject == s.req {
			s.activity = time.Now()
		}
	case "404", "408": // no messages, expired
		s.endRequestLocked(m.Subject, nil)
	case "503":
		s.endRequestLocked(m.Subject, nats.ErrNoResponders)
	case "409":
		desc := m.Header.Get("Description")
		var err error = fmt.Errorf("nats: %s", desc)
		if desc == "Consumer Deleted" {
			err = jetstream.ErrConsumerDeleted
		}
		s.endRequestLocked(m.Subject, err)
	default:
		s.endRequestLocked(m.Subject, fmt.Errorf("nats: pull request status %s %s", status, m.Header.Get("Description")))
	}
}

func (s *session) endRequestLocked(subject string, err error) {
	if subject != s.req || s.reqDone == nil {
		return
	}
	s.reqErr = err
	close(s.reqDone)
	s.reqDone = nil
}

// pullRequest asks the consumer for messages.
type pullRequest struct {
	Batch     int           `json:"batch"`
	Expires   time.Duration `json:"expires,omitempty"`
	Heartbeat time.Duration `json:"idle_heartbeat,omitempty"`
}

// fetchLoop asks the consumer for messages, one pull request at a time,
// until ctx is done; what they bring arrives through onMsg.
func (s *session) fetchLoop(ctx context.Context) {
	pt := s.pt
	t := pt.t
	var c jetstream.Consumer
	var backoff time.Duration
	failing := false
	fail := func(err error) {
		c = nil // make sure of it again: it may be gone (a Rewind, a broker that lost it)
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		level := slog.LevelDebug
		if !failing {
			level = slog.LevelWarn
		}
		failing = true
		t.log.Log(ctx, level, "nats fetch failed, retrying", "group", pt.group, "channel", pt.channel, "partition", pt.p, "err", err, "retry_in_ms", backoff.Milliseconds())
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	hb := t.cfg.pollWait / 4
	if hb < 250*time.Millisecond {
		hb = 0
	}
	for ctx.Err() == nil {
		if c == nil {
			var err error
			var created bool
			if c, created, err = pt.ensureConsumer(ctx); err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				continue
			}
			s.setConsumer(c, created)
		}
		if err := s.subscribe(); err != nil {
			fail(err)
			continue
		}
		req, _ := json.Marshal(pullRequest{Batch: t.cfg.batch, Expires: t.cfg.pollWait, Heartbeat: hb})
		s.mu.Lock()
		s.reqN++
		subject := s.inbox + "." + strconv.Itoa(s.reqN)
		done := make(chan struct{})
		s.req, s.reqCount, s.reqDone, s.reqErr, s.activity = subject, 0, done, nil, time.Now()
		s.mu.Unlock()
		if err := t.nc.PublishRequest(t.apiNext(pt.name), subject, req); err != nil {
			fail(err)
			continue
		}
		err := s.waitRequest(ctx, done, hb)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fail(err)
			continue
		}
		if failing {
			failing, backoff = false, 0
			t.log.InfoContext(ctx, "nats fetching again", "group", pt.group, "channel", pt.channel, "partition", pt.p)
		}
	}
}

// subscribe makes sure the session listens for what its pull requests
// bring, on a subscription of the consumer's incarnation.
func (s *session) subscribe() error {
	s.mu.Lock()
	sub, epoch := s.sub, s.epoch
	fresh := sub == nil || s.subEpoch != epoch
	s.mu.Unlock()
	if !fresh {
		return nil
	}
	nc := s.pt.t.nc
	inbox := nc.NewInbox()
	next, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) { s.onMsg(m, epoch) })
	if err != nil {
		return err
	}
	next.SetPendingLimits(-1, -1)
	s.mu.Lock()
	s.sub, s.inbox, s.subEpoch = next, inbox, epoch
	s.mu.Unlock()
	if sub != nil {
		sub.Unsubscribe()
	}
	return nil
}

var errNoHeartbeat = errors.New("nats: no heartbeat from the pull request")

// waitRequest waits for the current pull request to end.
func (s *session) waitRequest(ctx context.Context, done <-chan struct{}, hb time.Duration) error {
	t := s.pt.t
	start := time.Now()
	check := hb
	if check == 0 {
		check = time.Second
	}
	tick := time.NewTicker(check)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			s.mu.Lock()
			err := s.reqErr
			s.mu.Unlock()
			return err
		case <-tick.C:
			s.mu.Lock()
			quiet := time.Since(s.activity)
			s.mu.Unlock()
			switch {
			case hb > 0 && quiet > 2*hb:
				return errNoHeartbeat
			case time.Since(start) > t.cfg.pollWait+max(2*hb, time.Second):
				return nil // its end was lost: ask again
			}
		}
	}
}

// setConsumer records the consumer the fetch loop reads from; a consumer
// it created (after a Rewind deleted it) starts the session over.
func (s *session) setConsumer(c jetstream.Consumer, created bool) {
	at := c.CachedInfo().Created
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.consumer == nil:
		if created || !s.recordConsumer.Equal(at) {
			clear(s.handed) // counts of a consumer gone
		}
		s.unsyncedSince = time.Now()
	case created:
		s.resetLocked("the consumer was created again", true)
		clear(s.handed)
	}
	if created {
		s.incarnation++
	}
	s.consumer, s.created = c, at
	s.signal()
}

// keepInProgress tells the server, every AckWait/3, that the messages held
// (the one in h, and those waiting for their turn) are in progress, so that
// it does not hand them to someone else.
func (s *session) keepInProgress(stop <-chan struct{}) {
	t := s.pt.t
	tick := time.NewTicker(t.cfg.ackWait / 3)
	defer tick.Stop()
	var replies []string
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s.flushAck()
		replies = replies[:0]
		s.mu.Lock()
		if s.current != nil {
			replies = append(replies, s.current.msg.Reply)
		}
		for _, d := range s.queue {
			replies = append(replies, d.msg.Reply)
		}
		s.mu.Unlock()
		for _, r := range replies {
			t.nc.Publish(r, ackProgress)
		}
	}
}

// drain stops the pull requests' subscription once what the server sent
// to it arrived: nothing sent is left unseen.
func (s *session) drain() {
	s.mu.Lock()
	sub := s.sub
	s.mu.Unlock()
	if sub == nil {
		return
	}
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		sub.Unsubscribe()
		return
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		sub.Unsubscribe()
	}
}

// release gives back the messages held (the one h did not take, then
// those not handed: in order, so that the next holder gets them at once),
// waits for the server to have them, and gives the lease back with their
// counts.
func (s *session) release(parent context.Context) {
	t := s.pt.t
	s.mu.Lock()
	var held []*delivery
	if s.current != nil {
		held = append(held, s.current)
	}
	held = append(held, s.queue...)
	for _, d := range held {
		s.handed[d.sseq] = d.times
	}
	rec := leaseRecord{Consumer: s.created, Handed: s.handedCopyLocked()}
	s.current, s.queue = nil, nil
	// Given back first, the messages held no longer mind the ack.
	ack := s.takeAckLocked()
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
	defer cancel()
	if len(held) > 0 && s.consumer != nil {
		// The server still counts the session's last pull request as
		// waiting; asking for the consumer's info makes it drop the
		// requests nobody listens to any more. (A message given back while
		// only such a request waits is lost until AckWait, with
		// nats-server 2.9.)
		if _, err := s.consumer.Info(ctx); err != nil {
			t.log.DebugContext(ctx, "nats consumer info failed", "channel", s.pt.channel, "partition", s.pt.p, "err", err)
		}
	}
	// The last one sent waits for the server's answer: it has all of them.
	for i, d := range held {
		if i < len(held)-1 || ack != "" {
			t.nc.Publish(d.msg.Reply, ackNak)
			continue
		}
		if _, err := t.nc.RequestWithContext(ctx, d.msg.Reply, ackNak); err != nil {
			t.log.DebugContext(ctx, "nats giving messages back: no answer, they come back after AckWait", "channel", s.pt.channel, "partition", s.pt.p, "err", err)
		}
	}
	if ack != "" {
		if _, err := t.nc.RequestWithContext(ctx, ack, ackAck); err != nil {
			t.log.DebugContext(ctx, "nats ack not confirmed: the messages may be delivered again", "channel", s.pt.channel, "partition", s.pt.p, "err", err)
		}
	}
	if len(held) == 0 && ack == "" {
		t.nc.FlushWithContext(ctx) // the acks sent
	}
	s.lease.release(ctx, rec)
	if len(held) > 0 {
		t.log.DebugContext(ctx, "nats partition given back", "channel", s.pt.channel, "partition", s.pt.p, "messages_given_back", len(held))
	}
}

// ensureConsumer makes sure of the partition's consumer, and tells whether
// it had to create it. A consumer of an earlier version of this transport
// (explicit acks, MaxAckPending 1) is created again, acknowledging all,
// from the first message it had not acknowledged: the ack policy of a
// consumer cannot change. Other settings are updated in place.
func (pt *partition) ensureConsumer(ctx context.Context) (c jetstream.Consumer, created bool, err error) {
	t := pt.t
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	want := t.consumerConfig(pt.group, pt.channel, pt.p)
	c, err = t.js.Consumer(cctx, t.cfg.stream, pt.name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		c, err = t.js.CreateConsumer(cctx, t.cfg.stream, want)
		created = true
	case errors.Is(err, jetstream.ErrStreamNotFound):
		t.recreateStream(ctx)
	case err != nil:
	case c.CachedInfo().Config.AckPolicy != want.AckPolicy:
		old := c.CachedInfo()
		if from := old.AckFloor.Stream + 1; from > 1 {
			want.DeliverPolicy, want.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
		}
		if err = t.js.DeleteConsumer(cctx, t.cfg.stream, pt.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			break
		}
		c, err = t.js.CreateConsumer(cctx, t.cfg.stream, want)
		created = true
		if err == nil {
			t.log.InfoContext(ctx, "nats consumer created again to acknowledge all, from the first message not acknowledged",
				"consumer", pt.name, "from_sequence", old.AckFloor.Stream+1, "pending_handed_again", old.NumAckPending)
		}
	default:
		cur := c.CachedInfo().Config
		if cur.MaxAckPending != want.MaxAckPending || cur.AckWait != want.AckWait || cur.Description != want.Description || cur.MaxDeliver != want.MaxDeliver {
			// Where it starts is kept (a consumer created again above
			// starts at a sequence).
			cur.MaxAckPending, cur.AckWait, cur.Description, cur.MaxDeliver = want.MaxAckPending, want.AckWait, want.Description, want.MaxDeliver
			c, err = t.js.UpdateConsumer(cctx, t.cfg.stream, cur)
		}
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		t.recreateStream(ctx)
	}
	if err != nil {
		return nil, false, fmt.Errorf("creating consumer %s: %w", pt.name, err)
	}
	return c, created, nil
}

// register records s as the session of consumer name, for Rewind.
func (t *JetStream) register(name string, s *session) {
	t.sessMu.Lock()
	defer t.sessMu.Unlock()
	if t.sessions == nil {
		t.sessions = map[string]map[*session]struct{}{}
	}
	if t.sessions[name] == nil {
		t.sessions[name] = map[*session]struct{}{}
	}
	t.sessions[name][s] = struct{}{}
}

func (t *JetStream) unregister(name string, s *session) {
	t.sessMu.Lock()
	defer t.sessMu.Unlock()
	delete(t.sessions[name], s)
	if len(t.sessions[name]) == 0 {
		delete(t.sessions, name)
	}
}

// marks returns the incarnations of this transport's sessions of consumer
// name, before a Rewind deletes it.
func (t *JetStream) marks(name string) map[*session]uint64 {
	t.sessMu.Lock()
	defer t.sessMu.Unlock()
	m := map[*session]uint64{}
	for s := range t.sessions[name] {
		m[s] = s.mark()
	}
	return m
}

// invalidate tells the sessions marked that a Rewind deleted their
// consumer.
func invalidate(marks map[*session]uint64) {
	for s, mark := range marks {
		s.invalidate(mark)
	}
}

// ackEvery returns how many messages handled one ack covers at most.
func (t *JetStream) ackEvery() int { return max(1, min(32, t.cfg.batch/4)) }

func (t *JetStream) apiNext(consumer string) string {
	return "$JS.API.CONSUMER.MSG.NEXT." + t.cfg.stream + "." + consumer
}
