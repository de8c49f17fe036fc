package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stockflow/stockflow/internal/messaging"
)

// subscription is one member of a consumer group.
type subscription struct {
	k      *Kafka
	group  string
	h      messaging.Handler
	cl     *kgo.Client
	ctx    context.Context // the handlers', done when the subscription ends
	cancel context.CancelFunc

	mu sync.Mutex
	// acked holds, per partition, the offset after the last record h
	// acknowledged that is not committed yet.
	acked map[string]map[int32]kgo.EpochOffset
}

// Subscribe hands every message on channels to h, for the consumer group
// group, until ctx is done; it then commits what h acknowledged, leaves the
// group and returns ctx's error. See Kafka for the guarantees.
func (k *Kafka) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &subscription{k: k, group: group, h: h, ctx: sctx, cancel: cancel, acked: map[string]map[int32]kgo.EpochOffset{}}
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return errClosed
	}
	k.subs[s] = struct{}{}
	k.subsWG.Add(1)
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.subs, s)
		k.mu.Unlock()
		k.subsWG.Done()
	}()

	var err error
	if len(channels) == 0 {
		<-sctx.Done() // nothing to hand
	} else {
		err = s.run(channels)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	return errClosed // ended by Close
}

func (s *subscription) run(channels []string) error {
	k := s.k
	topics := k.topicsOf(channels)
	// The topics must exist for the group to start at their oldest
	// record; a broker that is down is waited for.
	wait := time.Duration(0)
	for {
		err := k.ensureTopics(s.ctx, topics)
		if err == nil {
			break
		}
		if s.ctx.Err() != nil {
			return nil
		}
		level := slog.LevelDebug // one warning, then debug lines
		if wait == 0 {
			level = slog.LevelWarn
		}
		wait = min(max(2*wait, k.cfg.retryMin), k.cfg.retryMax)
		k.log.Log(s.ctx, level, "kafka topics not ready, retrying", "topics", topics, "err", err, "retry_in_ms", wait.Milliseconds())
		if !sleep(s.ctx, wait) {
			return nil
		}
	}

	cl, err := kgo.NewClient(k.clientOpts(
		kgo.ConsumerGroup(s.group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsLost(s.onLost),
		// A fetch waits this long for records of partitions that have
		// none, even when other partitions join the fetch meanwhile (after
		// a rebalance): the Java client's 500ms rather than franz-go's 5s.
		kgo.FetchMaxWait(500*time.Millisecond),
		// A member that died (SIGKILL) holds its partitions until the
		// broker gives up on it: 10s rather than franz-go's 45s, with a
		// heartbeat a second (brokers accept sessions from 6s by default).
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		// A rebalance waits this long for every member to join again: a
		// member that died meanwhile (a service killed during a restart)
		// holds the whole group until then. 15s rather than franz-go's
		// 60s: a member here revokes in a few milliseconds (its handlers
		// are done when it polls) plus its commit.
		kgo.RebalanceTimeout(15*time.Second),
	)...)
	if err != nil {
		return fmt.Errorf("kafka subscribe %s: %w", s.group, err)
	}
	s.cl = cl
	defer func() {
		// Leave the group (the revoke commits), for a bounded time: during
		// a rebalance (a member that died is waited for) the broker may
		// hold the answer for as long as a session lasts, and a service
		// stopping must not wait that long. What was not committed is
		// handed again to the next member: the inbox skips it.
		lctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		defer cancel()
		cl.AllowRebalance()
		if err := cl.LeaveGroupContext(lctx); err != nil {
			// Close would wait for the leave all the same: let it finish
			// (or the process end) on its own.
			k.log.WarnContext(s.ctx, "kafka: leaving the group did not finish in time; going on", "group", s.group, "err", err)
			go cl.Close()
			return
		}
		cl.Close()
	}()
	k.log.InfoContext(s.ctx, "kafka subscribed", "group", s.group, "topics", topics)

	idle := time.Duration(0)
	for {
		// While a commit is owed (it failed), poll for a while only, to
		// try it again even if no record comes.
		pctx, pcancel := s.ctx, context.CancelFunc(func() {})
		if s.owed() {
			pctx, pcancel = context.WithTimeout(s.ctx, k.cfg.retryMax)
		}
		fetches := cl.PollRecords(pctx, k.cfg.maxPollRecords)
		pcancel()
		if fetches.IsClientClosed() || s.ctx.Err() != nil {
			s.commit(nil)
			cl.AllowRebalance()
			return nil
		}
		var errs int
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			errs++
			k.log.WarnContext(s.ctx, "kafka fetch error", "group", s.group, "topic", topic, "partition", partition, "err", err)
		})
		s.handle(fetches)
		s.commit(nil)
		cl.AllowRebalance()
		if fetches.NumRecords() == 0 && errs > 0 {
			// franz-go retries what can be retried; do not spin on what
			// it reports.
			idle = min(max(2*idle, k.cfg.retryMin), k.cfg.retryMax)
			if !sleep(s.ctx, idle) {
				return nil
			}
		} else {
			idle = 0
		}
	}
}

// leaveTimeout bounds how long a subscription that ends waits to leave its
// group.
const leaveTimeout = 5 * time.Second

type topicPartition struct {
	topic     string
	partition int32
}

// handle hands the records of a poll to h: partitions in parallel, the
// records of each in order. It returns when every partition is done, or
// given up because the subscription ended.
func (s *subscription) handle(fetches kgo.Fetches) {
	byPartition := map[topicPartition][]*kgo.Record{}
	var order []topicPartition
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		tp := topicPartition{p.Topic, p.Partition}
		if _, ok := byPartition[tp]; !ok {
			order = append(order, tp)
		}
		byPartition[tp] = append(byPartition[tp], p.Records...)
	})
	var wg sync.WaitGroup
	for _, tp := range order {
		wg.Go(func() {
			for _, r := range byPartition[tp] {
				if !s.deliver(r) {
					return
				}
				s.ack(r)
			}
		})
	}
	wg.Wait()
}

// deliver hands r to h until h acknowledges it; it reports false if the
// subscription ended first.
func (s *subscription) deliver(r *kgo.Record) bool {
	k := s.k
	id := recordID{s.group, r.Topic, r.Partition, r.Offset}
	env := k.envelopeOf(r)
	for {
		if s.ctx.Err() != nil {
			return false
		}
		attempt := k.attempt(id)
		err := s.h(s.ctx, messaging.Delivery{Envelope: env, Attempt: attempt})
		if err == nil {
			k.acknowledged(id)
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		wait := messaging.RedeliveryDelay(err, attempt, messaging.Backoff{Initial: k.cfg.retryMin, Max: k.cfg.retryMax})
		k.log.DebugContext(s.ctx, "kafka message failed, handing it again", "group", s.group, "channel", env.Channel,
			"message_id", env.ID, "partition", r.Partition, "offset", r.Offset, "attempt", attempt, "retry_in_ms", wait.Milliseconds(), "err", err)
		if !sleep(s.ctx, wait) {
			return false
		}
	}
}

// ack notes that h acknowledged r.
func (s *subscription) ack(r *kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.acked[r.Topic]
	if ps == nil {
		ps = map[int32]kgo.EpochOffset{}
		s.acked[r.Topic] = ps
	}
	next := kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	if cur, ok := ps[r.Partition]; !ok || cur.Less(next) {
		ps[r.Partition] = next
	}
}

// owed reports whether acknowledged offsets wait for their commit.
func (s *subscription) owed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.acked {
		if len(ps) > 0 {
			return true
		}
	}
	return false
}

// commit commits the acknowledged offsets of the partitions only (of
// every partition when only is nil). An offset whose commit failed is
// kept, and committed with the next ones.
func (s *subscription) commit(only map[string][]int32) {
	s.mu.Lock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for topic, ps := range s.acked {
		for p, o := range ps {
			if only != nil && !containsPartition(only[topic], p) {
				continue
			}
			if offsets[topic] == nil {
				offsets[topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[topic][p] = o
		}
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	// Commit even when the subscription is ending: that is when it
	// matters most.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.k.cfg.commitTimeout)
	defer cancel()
	var failed error
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			failed = err
			return
		}
		for _, t := range resp.Topics {
			topic := t.Topic
			if topic == "" { // v10+ answers with topic ids
				for _, rt := range req.Topics {
					if rt.TopicID == t.TopicID {
						topic = rt.Topic
					}
				}
			}
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					failed = errors.Join(failed, fmt.Errorf("%s/%d: %w", topic, p.Partition, err))
					continue
				}
				// committed: forget it, unless h acknowledged more since
				if cur, ok := s.acked[topic][p.Partition]; ok && cur == offsets[topic][p.Partition] {
					delete(s.acked[topic], p.Partition)
				}
			}
		}
	})
	if failed != nil {
		s.k.log.WarnContext(s.ctx, "kafka commit failed; the messages will be handed again unless a later commit succeeds",
			"group", s.group, "err", failed)
	}
}

func containsPartition(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// onRevoked commits what h acknowledged of the partitions the member
// loses (with BlockRebalanceOnPoll, no handler is running then), and
// forgets them: committing them later could rewind their new owner.
func (s *subscription) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.commit(revoked)
	s.forget(revoked)
}

// onAssigned logs the partitions the member was given, under its member
// id, so that an operator can tell members apart in the broker's view.
func (s *subscription) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	member, generation := cl.GroupMetadata()
	n := 0
	for _, ps := range assigned {
		n += len(ps)
	}
	s.k.log.InfoContext(s.ctx, "kafka partitions assigned", "group", s.group, "member", member, "generation", generation, "partitions", n)
}

// onLost forgets the partitions the member lost: it is no longer in the
// group, and can commit nothing.
func (s *subscription) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.forget(lost)
}

func (s *subscription) forget(parts map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(s.acked[topic], p)
		}
	}
}

// sleep waits d; it reports false when ctx is done first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
