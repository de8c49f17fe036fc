package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Streams is the Redis Streams transport: durable, at least once, in order
// per key. It implements messaging.Transport and messaging.Rewinder.
//
// Layout. A channel is split into Partitions streams (default 8), named
// <Prefix>:<channel>:<p> (Prefix "stockflow"), where p is the FNV-1a hash
// of the message's key modulo Partitions, and 0 for an empty key: messages
// with one key share a stream, so they keep their order. An entry has the
// fields id, key, correlation_id, causation_id, occurred_at (RFC 3339,
// nanoseconds) and payload. Every instance of a deployment must use the
// same Prefix and Partitions.
//
// Publishing. Publish adds its batch with one pipeline of XADD, each with
// MAXLEN ~ MaxLen: the retention. A partition stream keeps about MaxLen
// entries (default 1,000,000; Redis trims whole nodes, so a little more);
// a negative MaxLen keeps everything. A group that falls further behind
// than that loses the oldest entries it had not read (an entry trimmed
// while pending is acknowledged and skipped, with a warning).
//
// De-duplication. Redis does none (the IDMP option of Redis 8.6 is not
// used): a Publish that fails is sent again whole by the outbox relay, so
// a stream may hold a message twice, and a crash between handling and
// XACK hands a message again. Consumers recognise messages by their id
// field (the stockflow inbox).
//
// Groups. A consumer group is a Redis consumer group of the same name on
// every partition stream of its channels, made with XGROUP CREATE ... 0
// MKSTREAM: a group new to Redis starts at the oldest entry kept, and a
// group that was away resumes where it stopped. A group lost with its
// streams (a Redis restarted without persistence) is made again.
//
// Order. For each (channel, partition) a subscription runs one goroutine
// that reads with XREADGROUP, BatchSize entries at a time (default 256),
// and hands them to h strictly one after the other: the next entry of a
// partition is handed only once h took the one before it. When h fails,
// the same entry is handed again after a backoff (RetryBackoff, doubling up
// to MaxRetryBackoff) with Attempt incremented, never skipping ahead: the
// partition waits until h takes the entry; the stockflow Consumer
// dead-letters a message after its MaxAttempts and then returns nil, which
// lets the partition go on. Partitions are handled concurrently: h is
// called concurrently, for messages of different partitions.
//
// Acknowledgements. An entry is acknowledged (XACK) only after h returned
// nil for it, and in bulk: the entries h took are acknowledged by one XACK
// sent in the same round trip as the partition's next read, or on its own
// between two entries once the oldest of them has waited AckInterval
// (default 50ms), before the backoff of an entry h failed, and when the
// partition stops or its lease is lost. A crash may thus leave the entries
// h took in its last AckInterval (or while a slow h ran) unacknowledged:
// they are handed again, which the consumers' inbox makes harmless.
//
// Members. Several instances may subscribe with one group. Each partition
// is held by one of them at a time, through a lease: the key
// <Prefix>:lease:<group>:<channel>:<p>, taken with SET NX PX LeaseTTL
// (default 10s) and renewed every LeaseTTL/3 by a script that checks the
// owner; an instance that has not the lease asks again every second. A
// holder starts no read that could end after its lease might lapse, and
// cancels its handler's context when the lease is lost. On taking a
// partition, the holder XAUTOCLAIMs every entry pending there for other
// consumers, without waiting for them to be idle (the lease shows that
// their reader stopped), then reads its own pending entries (ID 0) before
// new ones (>): an entry that was not acknowledged when its member died or
// stopped is handed again, before anything after it. Attempt counts the
// deliveries Redis keeps in the pending list (a read of pending entries
// counts one; a retry in place records its count with XCLAIM ...
// RETRYCOUNT), so it goes on counting across crashes; entries a member
// read in a batch but had not handed when it stopped cleanly get their
// count back (after a crash, they count one more). Every ClaimInterval
// (default 15s) the holder also XAUTOCLAIMs entries that have been pending
// ClaimMinIdle (default 30s) for other consumers: strays of readers that
// did not hold the lease. A consumer is named after the host, the process
// and the subscription; consumers left without pending entries are deleted
// when a partition is taken or left.
//
// Limits of the leases: a partition goes to whoever asks first and there is
// no rebalancing, so a second instance of a group is a standby for the
// partitions the first holds (it takes them over about a second after a
// clean stop, and within LeaseTTL and a second after a crash); a handler
// that ignores its context may still be running when its lease has lapsed
// and the next holder hands the same entry (the consumers' inbox keeps
// that harmless).
//
// Failures. A lost connection or a Redis restart is waited out with
// backoff and logged once; Subscribe returns only when its context is done
// (or the transport is closed). A subscription stops within Block (default
// 1s) of its context being done: a blocked read is not interrupted; it
// then acknowledges what h took, trying for up to 2s if Redis does not
// answer (what it could not acknowledge is handed again).
//
// Rewind destroys and makes again the group, at 0, on every partition
// stream of the channels: the group is handed every entry kept again. It
// is meant for a group that is not running.
type Streams struct {
	// Partitions is the number of streams per channel (default 8).
	Partitions int
	// MaxLen is the approximate number of entries each partition stream
	// keeps (default 1,000,000; negative: no trimming).
	MaxLen int64
	// Prefix starts every key (default "stockflow").
	Prefix string
	// LeaseTTL is how long a partition's lease lasts unless renewed
	// (default 10s).
	LeaseTTL time.Duration
	// ClaimMinIdle is how long an entry stays pending for a consumer that
	// does not hold the partition before the holder takes it (default 30s).
	ClaimMinIdle time.Duration
	// ClaimInterval is how often the holder looks for such entries
	// (default ClaimMinIdle/2).
	ClaimInterval time.Duration
	// Block is how long a read waits for new entries (default 1s; at most
	// LeaseTTL/4).
	Block time.Duration
	// BatchSize is the number of entries a read takes (default 256).
	BatchSize int
	// AckInterval is how long an entry h took may wait for its XACK
	// while the partition's batch is still being handled (default 50ms):
	// acknowledgements otherwise go with the partition's next read.
	AckInterval time.Duration
	// RetryBackoff is the wait before handing a failed entry again; it
	// doubles up to MaxRetryBackoff (defaults 100ms and 10s). The consumer
	// pipeline names its own delay (messaging.Redeliver); these serve a
	// handler that names none.
	RetryBackoff, MaxRetryBackoff time.Duration

	opts     *redis.Options
	client   *redis.Client
	log      *slog.Logger
	consumer string // base of consumer names: host-pid

	closeOnce sync.Once
	closed    chan struct{}
	// failing counts the workers that cannot reach Redis, so that an
	// outage is logged once.
	failing atomic.Int32
}

var errStreamsClosed = errors.New("redis streams: transport closed")

// NewStreams returns a Redis Streams transport on the Redis at url
// (redis+streams://[user:password@]host:port[/db], or rediss+streams://
// for TLS, with ca=, cert= and key= in its query: see options; redis://
// and rediss:// are accepted too).
func NewStreams(rawURL string, log *slog.Logger) (*Streams, error) {
	logClientTo(log)
	u := rawURL
	switch {
	case strings.HasPrefix(u, "redis+streams://"):
		u = "redis://" + strings.TrimPrefix(u, "redis+streams://")
	case strings.HasPrefix(u, "rediss+streams://"):
		u = "rediss://" + strings.TrimPrefix(u, "rediss+streams://")
	case strings.HasPrefix(u, "redis://"), strings.HasPrefix(u, "rediss://"):
	default:
		return nil, fmt.Errorf("redis streams: URL %q: want redis+streams://host:port[/db]", redact(rawURL))
	}
	opts, err := options(u)
	if err != nil {
		return nil, err
	}
	opts.MaxRetries = -1 // the callers retry, with backoff
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "stockflow"
	}
	return &Streams{
		opts:     opts,
		client:   redis.NewClient(opts),
		log:      log,
		consumer: host + "-" + strconv.Itoa(os.Getpid()),
		closed:   make(chan struct{}),
	}, nil
}

// redact hides the password of a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Client returns the Redis client Publish uses.
func (s *Streams) Client() *redis.Client { return s.client }

// Close closes the client; running subscriptions stop.
func (s *Streams) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.client.Close()
}

func (s *Streams) partitions() int {
	if s.Partitions > 0 {
		return s.Partitions
	}
	return 8
}

func (s *Streams) prefix() string {
	if s.Prefix != "" {
		return s.Prefix
	}
	return "stockflow"
}

func (s *Streams) leaseTTL() time.Duration {
	if s.LeaseTTL > 0 {
		return s.LeaseTTL
	}
	return 10 * time.Second
}

func (s *Streams) claimMinIdle() time.Duration {
	if s.ClaimMinIdle > 0 {
		return s.ClaimMinIdle
	}
	return 30 * time.Second
}

func (s *Streams) claimInterval() time.Duration {
	if s.ClaimInterval > 0 {
		return s.ClaimInterval
	}
	return s.claimMinIdle() / 2
}

func (s *Streams) block() time.Duration {
	b := s.Block
	if b <= 0 {
		b = time.Second
	}
	return max(min(b, s.leaseTTL()/4), time.Millisecond)
}

func (s *Streams) batchSize() int64 {
	if s.BatchSize > 0 {
		return int64(s.BatchSize)
	}
	return 256
}

func (s *Streams) ackInterval() time.Duration {
	if s.AckInterval > 0 {
		return s.AckInterval
	}
	return 50 * time.Millisecond
}

func (s *Streams) retryBackoff() (first, most time.Duration) {
	first, most = s.RetryBackoff, s.MaxRetryBackoff
	if first <= 0 {
		first = 100 * time.Millisecond
	}
	if most <= 0 {
		most = 10 * time.Second
	}
	return first, max(first, most)
}

// Partition returns the partition of key: FNV-1a of the key modulo
// Partitions, 0 for an empty key.
func (s *Streams) Partition(key string) int {
	if key == "" {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(s.partitions()))
}

// Stream returns the name of the stream of channel's partition p.
func (s *Streams) Stream(channel string, p int) string {
	return s.prefix() + ":" + channel + ":" + strconv.Itoa(p)
}

func (s *Streams) leaseKey(group, channel string, p int) string {
	return s.prefix() + ":lease:" + group + ":" + channel + ":" + strconv.Itoa(p)
}

// Publish adds the messages to their partition streams, in order, in one
// round trip.
func (s *Streams) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	if len(msgs) == 0 {
		return nil
	}
	maxLen := s.MaxLen
	if maxLen == 0 {
		maxLen = 1_000_000
	}
	pipe := s.client.Pipeline()
	for _, m := range msgs {
		if m.Channel == "" {
			return fmt.Errorf("redis streams: message %s has no channel", m.ID)
		}
		args := &redis.XAddArgs{
			Stream: s.Stream(m.Channel, s.Partition(m.Key)),
			Values: []any{
				"id", m.ID,
				"key", m.Key,
				"correlation_id", m.CorrelationID,
				"causation_id", m.CausationID,
				"occurred_at", m.OccurredAt.UTC().Format(time.RFC3339Nano),
				"payload", string(m.Payload),
			},
		}
		if maxLen > 0 {
			args.MaxLen, args.Approx = maxLen, true
		}
		pipe.XAdd(ctx, args)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis streams publish: %w", err)
	}
	return nil
}

// rewindScript destroys group on a stream, if there is one, and makes it
// again at 0.
var rewindScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1]) end
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return 1`)

// Rewind has group handed every entry its channels keep again, from the
// oldest: the group is made again at 0, without pending entries, on every
// partition stream.
func (s *Streams) Rewind(ctx context.Context, group string, channels []string) error {
	if group == "" {
		return errors.New("redis streams: no group")
	}
	pipe := s.client.Pipeline()
	for _, ch := range channels {
		for p := range s.partitions() {
			rewindScript.Eval(ctx, pipe, []string{s.Stream(ch, p)}, group)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis streams rewind: %w", err)
	}
	s.log.InfoContext(ctx, "redis streams group rewound", "group", group, "channels", channels)
	return nil
}

// Subscribe hands the entries of channels to h, for group, until ctx is
// done; see the type's documentation.
func (s *Streams) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	if group == "" {
		return errors.New("redis streams: no group")
	}
	select {
	case <-s.closed:
		return errStreamsClosed
	default:
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	// A client of its own, with a connection for each partition's
	// blocked read and one for its lease.
	workers := len(channels) * s.partitions()
	opts := *s.opts
	opts.PoolSize = 2*workers + 2
	client := redis.NewClient(&opts)
	defer client.Close()

	// A pipeline waits for its replies no longer than ReadTimeout: an XACK
	// goes in the round trip of a blocking read only if the read ends well
	// within it.
	rt := client.Options().ReadTimeout
	pipelined := rt <= 0 || s.block()+time.Second <= rt

	consumer := s.consumer + "-" + randomHex(4)
	s.log.InfoContext(ctx, "redis streams subscribing", "group", group, "channels", channels, "consumer", consumer, "partitions", s.partitions())
	var wg sync.WaitGroup
	for _, ch := range channels {
		for p := range s.partitions() {
			w := &worker{
				s: s, c: client, h: h,
				group: group, channel: ch, p: p, consumer: consumer,
				pipelined: pipelined,
				stream:    s.Stream(ch, p),
				lease:     lease{key: s.leaseKey(group, ch, p), token: consumer},
			}
			w.log = s.log.With("group", group, "stream", w.stream)
			wg.Go(func() { w.run(ctx) })
		}
	}
	<-ctx.Done()
	wg.Wait()
	if err := parent.Err(); err != nil {
		return err
	}
	return errStreamsClosed
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// worker hands the entries of one partition stream to h, for one group,
// while it holds the partition's lease.
type worker struct {
	s                      *Streams
	c                      *redis.Client
	h                      messaging.Handler
	log                    *slog.Logger
	group, channel, stream string
	consumer               string
	p                      int
	lease                  lease
	failing                bool // an error was logged and nothing has worked since
	backoff                time.Duration
	pipelined              bool // XACKs may share a round trip with a blocking read

	// acks are the entries h took that are not acknowledged yet, in the
	// order h took them; ackSince is when the oldest of them was taken (or
	// when acknowledging them last failed).
	acks     []string
	ackSince time.Time
}

// run takes the partition whenever it can, until ctx is done.
func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		lctx, ok := w.acquire(ctx)
		if !ok {
			return
		}
		w.own(lctx)
		w.release()
	}
}

// trouble logs err once per run of failures, and waits a backoff; it
// returns false when ctx is done meanwhile.
func (w *worker) trouble(ctx context.Context, what string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	w.backoff = min(max(2*w.backoff, 100*time.Millisecond), 2*time.Second)
	// One warning for the transport when Redis stops answering, however
	// many streams and partitions notice: the rest are debug lines.
	level := slog.LevelDebug
	if !w.failing {
		w.failing = true
		if w.s.failing.Add(1) == 1 {
			level = slog.LevelWarn
		}
	}
	w.log.Log(ctx, level, "redis streams: "+what+" failed, retrying", "err", err, "retry_in_ms", w.backoff.Milliseconds())
	return sleep(ctx, w.backoff)
}

// fine notes that Redis answers again.
func (w *worker) fine(ctx context.Context) {
	w.backoff = 0
	if w.failing {
		w.failing = false
		level := slog.LevelDebug
		if w.s.failing.Add(-1) == 0 {
			level = slog.LevelInfo // the last to recover says it, once
		}
		w.log.Log(ctx, level, "redis streams: working again")
	}
}

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

// own hands the partition's entries to h while the lease holds (lctx).
// Whatever way it stops, it acknowledges the entries h took, and gives
// back their delivery to the entries it read but did not hand.
func (w *worker) own(lctx context.Context) {
	var unhanded []redis.XMessage
	var attempts map[string]int
	defer func() { w.settle(lctx, unhanded, attempts) }()

	setup, pending := true, true
	pendingFrom := "0" // the pending entries are read after this one
	var lastClaim time.Time
	// No read may outlast the lease: a read that hands entries to this
	// consumer after the next holder took over would strand them.
	margin := w.s.block() + w.s.leaseTTL()/5
	for lctx.Err() == nil {
		if !w.lease.validFor(margin) {
			w.log.WarnContext(lctx, "redis streams: lease could not be renewed, letting the partition go")
			return
		}
		if setup {
			if err := w.setup(lctx); err != nil {
				if !w.trouble(lctx, "taking over the partition", err) {
					return
				}
				continue
			}
			setup, pending, pendingFrom, lastClaim = false, true, "0", time.Now()
		}
		var msgs []redis.XMessage
		var err error
		attempts = nil
		fromPending := pending
		switch {
		case pending:
			msgs, attempts, err = w.readPending(lctx, pendingFrom)
			if err == nil {
				if len(msgs) == 0 {
					pending = false
					continue
				}
				pendingFrom = msgs[len(msgs)-1].ID
			}
		case time.Since(lastClaim) >= w.s.claimInterval():
			var n int
			n, err = w.claim(lctx, w.s.claimMinIdle())
			if err == nil {
				lastClaim = time.Now()
				if n > 0 {
					w.log.WarnContext(lctx, "redis streams: took over entries pending for another consumer", "entries", n)
					pending, pendingFrom = true, "0"
				}
				continue
			}
		default:
			msgs, err = w.readNew(lctx)
		}
		if err != nil {
			if lctx.Err() != nil {
				return
			}
			if isNoGroup(err) {
				setup = true // Redis lost the group (a restart), or it was rewound
				w.log.DebugContext(lctx, "redis streams: group missing, making it again", "err", err)
				continue
			}
			if !w.trouble(lctx, "reading", err) {
				return
			}
			continue
		}
		w.fine(lctx)
		for i, m := range msgs {
			if fromPending && slices.Contains(w.acks, m.ID) {
				continue // taken, its XACK not through yet: not handed twice
			}
			if lctx.Err() != nil || !w.handle(lctx, m, max(attempts[m.ID], 1)) {
				unhanded = msgs[i+1:]
				return
			}
			if len(w.acks) > 0 && time.Since(w.ackSince) >= w.s.ackInterval() {
				w.flush(lctx)
			}
		}
	}
}

// took notes that h took the entry id: it is to be acknowledged.
func (w *worker) took(id string) {
	if len(w.acks) == 0 {
		w.ackSince = time.Now()
	}
	w.acks = append(w.acks, id)
}

// queueAcks adds the XACK of the entries h took to pipe; nil when there
// are none.
func (w *worker) queueAcks(ctx context.Context, pipe redis.Pipeliner) *redis.IntCmd {
	if len(w.acks) == 0 {
		return nil
	}
	return pipe.XAck(ctx, w.stream, w.group, w.acks...)
}

// acked notes how the XACK queued by queueAcks went: on success (or when
// the group, and its pending entries with it, is gone) the entries are
// acknowledged; otherwise they are acknowledged later.
func (w *worker) acked(ctx context.Context, cmd *redis.IntCmd) bool {
	if cmd == nil {
		return true
	}
	if err := cmd.Err(); err != nil && !isNoGroup(err) {
		w.ackSince = time.Now() // not before AckInterval again, or the next read
		w.log.DebugContext(ctx, "redis streams: acknowledging failed, retrying later", "entries", len(w.acks), "err", err)
		return false
	}
	w.acks = w.acks[:0]
	return true
}

// flush acknowledges the entries h took, in one round trip; those it could
// not are acknowledged later.
func (w *worker) flush(ctx context.Context) bool {
	if len(w.acks) == 0 {
		return true
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pipe := w.c.Pipeline()
	cmd := w.queueAcks(actx, pipe)
	pipe.Exec(actx)
	return w.acked(ctx, cmd)
}

// settle ends a hold on the partition: it acknowledges the entries h took
// and gives back the delivery that reading counted to the entries of a
// read that were not handed, so that the next holder hands them with the
// Attempt they would have had (after a crash, they count one more), in
// one round trip, tried again for up to 2s if Redis does not answer.
func (w *worker) settle(ctx context.Context, unhanded []redis.XMessage, attempts map[string]int) {
	if len(w.acks) == 0 && len(unhanded) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for {
		pipe := w.c.Pipeline()
		ack := w.queueAcks(ctx, pipe)
		for _, m := range unhanded {
			n := max(attempts[m.ID], 1) - 1
			pipe.Do(ctx, "XCLAIM", w.stream, w.group, w.consumer, 0, m.ID, "RETRYCOUNT", n, "JUSTID")
		}
		_, err := pipe.Exec(ctx)
		if w.acked(ctx, ack) && (err == nil || isNoGroup(err)) {
			return
		}
		if !sleep(ctx, 100*time.Millisecond) {
			if len(w.acks) > 0 {
				// Kept: acknowledged with the next read if this worker
				// takes the partition again; handed again if another does.
				w.log.WarnContext(ctx, "redis streams: could not acknowledge handled entries", "entries", len(w.acks), "err", err)
			}
			return
		}
	}
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// setup makes the group, takes over the entries other consumers left
// pending, and deletes consumers that have nothing pending.
func (w *worker) setup(ctx context.Context) error {
	err := w.c.XGroupCreateMkStream(ctx, w.stream, w.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	if err == nil {
		// A group made again (Redis lost it): the entries h took were
		// pending in the one that is gone.
		w.acks = w.acks[:0]
	}
	n, err := w.claim(ctx, 0)
	if err != nil {
		return err
	}
	if n > 0 {
		w.log.InfoContext(ctx, "redis streams: took over pending entries", "entries", n)
	}
	consumers, err := w.c.XInfoConsumers(ctx, w.stream, w.group).Result()
	if err != nil {
		return err
	}
	for _, c := range consumers {
		if c.Name != w.consumer && c.Pending == 0 {
			w.c.XGroupDelConsumer(ctx, w.stream, w.group, c.Name)
		}
	}
	return nil
}

// claim takes the entries pending for other consumers for at least
// minIdle; it returns how many it took.
func (w *worker) claim(ctx context.Context, minIdle time.Duration) (int, error) {
	n, start := 0, "0-0"
	for {
		ids, next, err := w.c.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{
			Stream: w.stream, Group: w.group, Consumer: w.consumer,
			MinIdle: minIdle, Start: start, Count: 100,
		}).Result()
		if err != nil {
			return n, err
		}
		n += len(ids)
		if next == "0-0" || next == "" {
			return n, nil
		}
		start = next
	}
}

// readPending reads this consumer's pending entries after the entry from
// ("0": from the first), with how many times each was delivered (this read
// included), in one round trip that also acknowledges the entries h took.
func (w *worker) readPending(ctx context.Context, from string) ([]redis.XMessage, map[string]int, error) {
	start := "-"
	if from != "0" {
		start = "(" + from
	}
	pipe := w.c.Pipeline()
	ack := w.queueAcks(ctx, pipe)
	read := pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: w.group, Consumer: w.consumer,
		Streams: []string{w.stream, from},
		Count:   w.s.batchSize(),
		Block:   -1,
	})
	// The same entries: the consumer's pending list after from.
	pend := pipe.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: w.stream, Group: w.group, Consumer: w.consumer,
		Start: start, End: "+", Count: w.s.batchSize(),
	})
	pipe.Exec(ctx)
	w.acked(ctx, ack)
	res, err := read.Result()
	if err != nil || len(res) == 0 || len(res[0].Messages) == 0 {
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return nil, nil, err
	}
	msgs := res[0].Messages
	p, err := pend.Result()
	if err != nil {
		// Read but not handed: they are read again, counting one more.
		return nil, nil, err
	}
	attempts := make(map[string]int, len(p))
	for _, e := range p {
		attempts[e.ID] = int(e.RetryCount)
	}
	return msgs, attempts, nil
}

// readNew reads entries never delivered to the group, waiting up to Block,
// in one round trip that also acknowledges the entries h took.
func (w *worker) readNew(ctx context.Context) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{
		Group: w.group, Consumer: w.consumer,
		Streams: []string{w.stream, ">"},
		Count:   w.s.batchSize(),
		Block:   w.s.block(),
	}
	if !w.pipelined {
		w.flush(ctx)
	}
	var res []redis.XStream
	var err error
	if len(w.acks) == 0 || !w.pipelined {
		res, err = w.c.XReadGroup(ctx, args).Result()
	} else {
		pipe := w.c.Pipeline()
		ack := w.queueAcks(ctx, pipe)
		read := pipe.XReadGroup(ctx, args)
		pipe.Exec(ctx)
		w.acked(ctx, ack)
		res, err = read.Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return res[0].Messages, nil
}

// envelope reads an entry.
func (w *worker) envelope(m redis.XMessage) messaging.Envelope {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	env := messaging.Envelope{
		ID:            str("id"),
		Channel:       w.channel,
		Key:           str("key"),
		CorrelationID: str("correlation_id"),
		CausationID:   str("causation_id"),
		Payload:       []byte(str("payload")),
	}
	if t, err := time.Parse(time.RFC3339Nano, str("occurred_at")); err == nil {
		env.OccurredAt = t
	}
	if env.ID == "" {
		// An entry from outside stockflow: its place in the stream is an id
		// that a redelivery keeps, so the inbox recognises it.
		env.ID = "redis-stream:" + w.stream + ":" + m.ID
	}
	return env
}

// handle hands m to h until h takes it, then notes it is to be
// acknowledged; it returns false when the partition must stop (the lease
// is lost, ctx is done) with m not taken.
func (w *worker) handle(ctx context.Context, m redis.XMessage, attempt int) bool {
	if len(m.Values) == 0 {
		// Trimmed (MaxLen) or deleted while pending: nothing to hand.
		w.log.WarnContext(ctx, "redis streams: a pending entry was trimmed before it was handled", "entry", m.ID)
		w.took(m.ID)
		return true
	}
	env := w.envelope(m)
	first, most := w.s.retryBackoff()
	for {
		err := w.h(ctx, messaging.Delivery{Envelope: env, Attempt: attempt})
		if err == nil {
			w.took(m.ID)
			return true
		}
		if ctx.Err() != nil {
			return false // pending: handed again to the partition's next holder
		}
		wait := messaging.RedeliveryDelay(err, attempt, messaging.Backoff{Initial: first, Max: most})
		w.log.DebugContext(ctx, "redis streams: handler failed, handing the message again", "message_id", env.ID, "attempt", attempt, "err", err, "retry_in_ms", wait.Milliseconds())
		// What h took before does not wait for this one.
		w.flush(ctx)
		if !sleep(ctx, wait) {
			return false
		}
		attempt++
		// Record the attempt in the pending list, so that a crash does not
		// start the count again.
		w.c.Do(ctx, "XCLAIM", w.stream, w.group, w.consumer, 0, m.ID, "RETRYCOUNT", attempt, "JUSTID")
	}
}

// leaseScript takes or renews a lease: 1 when the caller held it and it
// is renewed, 2 when it was free and is now the caller's, 0 when another
// holds it.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0`)

// releaseScript deletes a lease if the caller holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// lease is a worker's hold on its partition.
type lease struct {
	key, token string

	mu         sync.Mutex
	validUntil time.Time
	stop       context.CancelFunc // stops the renewals
	renewing   sync.WaitGroup
}

func (l *lease) validFor(d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Until(l.validUntil) > d
}

func (l *lease) extend(from time.Time, ttl time.Duration) {
	l.mu.Lock()
	l.validUntil = from.Add(ttl)
	l.mu.Unlock()
}

// acquire waits until the worker holds its partition's lease, and keeps
// renewing it; the context it returns is done when the lease is lost or
// ctx is done. It returns false when ctx is done first.
func (w *worker) acquire(ctx context.Context) (context.Context, bool) {
	ttl := w.s.leaseTTL()
	poll := min(time.Second, ttl/3)
	waiting := false
	for {
		start := time.Now()
		r, err := leaseScript.Run(ctx, w.c, []string{w.lease.key}, w.lease.token, ttl.Milliseconds()).Int()
		if err != nil {
			if !w.trouble(ctx, "taking the partition's lease", err) {
				return nil, false
			}
			continue
		}
		w.fine(ctx)
		if r != 0 {
			w.lease.extend(start, ttl)
			break
		}
		if !waiting {
			waiting = true
			w.log.DebugContext(ctx, "redis streams: partition held by another member, waiting", "lease", w.lease.key)
		}
		if !sleep(ctx, poll) {
			return nil, false
		}
	}
	w.log.DebugContext(ctx, "redis streams: partition taken", "lease", w.lease.key)
	lctx, lost := context.WithCancelCause(ctx)
	// Renewals go on after ctx is done, until release: a handler still
	// running keeps its partition.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.lease.stop = func() { stop(); lost(nil) }
	w.lease.renewing.Add(1)
	go func() {
		defer w.lease.renewing.Done()
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			start := time.Now()
			c, cancel := context.WithTimeout(rctx, ttl/3)
			r, err := leaseScript.Run(c, w.c, []string{w.lease.key}, w.lease.token, ttl.Milliseconds()).Int()
			cancel()
			switch {
			case err != nil:
				if rctx.Err() != nil {
					return
				}
				if !w.lease.validFor(0) {
					lost(errors.New("lease lapsed: Redis could not be reached"))
					return
				}
			case r == 1:
				w.lease.extend(start, ttl)
			default:
				// 2: it had lapsed (a Redis restart): the partition must be
				// taken over again. 0: another member holds it.
				lost(fmt.Errorf("lease lost (%d)", r))
				return
			}
		}
	}()
	return lctx, true
}

// release stops renewing the lease and gives it up, and deletes this
// worker's consumer if nothing is pending for it.
func (w *worker) release() {
	w.lease.stop()
	w.lease.renewing.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if pend, err := w.c.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: w.stream, Group: w.group, Consumer: w.consumer, Start: "-", End: "+", Count: 1,
	}).Result(); err == nil && len(pend) == 0 {
		w.c.XGroupDelConsumer(ctx, w.stream, w.group, w.consumer)
	}
	if err := releaseScript.Run(ctx, w.c, []string{w.lease.key}, w.lease.token).Err(); err != nil {
		w.log.DebugContext(ctx, "redis streams: could not give up the lease; it lapses by itself", "lease", w.lease.key, "err", err)
	}
}
