// Package nats carries messages over NATS JetStream: a durable transport
// where a consumer group keeps its position, a message is acknowledged only
// once handled, and messages with the same key are handled in order.
package nats

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Headers that carry an envelope's fields; the payload is the message data.
const (
	HeaderMsgID         = "Nats-Msg-Id" // the envelope's ID: the broker drops a duplicate within the window
	HeaderCorrelationID = "Stockflow-Correlation-Id"
	HeaderCausationID   = "Stockflow-Causation-Id"
	HeaderKey           = "Stockflow-Key"
	HeaderOccurredAt    = "Stockflow-Occurred-At" // RFC 3339, nanoseconds
)

// Defaults of the options.
const (
	DefaultStream          = "STOCKFLOW"
	DefaultSubjectPrefix   = "stockflow"
	DefaultPartitions      = 8
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultAckWait         = 30 * time.Second
)

// JetStream is the NATS JetStream transport, a durable one (see
// messaging.Subscriber for its promises):
//
//   - One stream per stockflow namespace (STOCKFLOW, taking the subjects
//     "stockflow.>"; WithStream names another), file storage, kept for
//     MaxAge (7 days; WithMaxAge) with limits retention: consuming a message
//     does not remove it, so that a new group, or a rewound one, reads
//     everything kept. New creates the stream, or updates its settings, at
//     start (CreateOrUpdateStream); the fetch loops create it again if it
//     disappears (a broker that lost its store).
//
//   - A message goes to the subject "stockflow.<channel>.<p>", where the
//     partition p is FNV-1a(key) modulo Partitions (8; WithPartitions; an
//     empty key goes to 0): messages of one key keep their order, while the
//     partitions of a channel are consumed in parallel. The number of
//     partitions must not change while messages are kept: a key would move
//     to another partition, and its order would be lost across the change.
//
//   - The envelope's fields travel as headers: Nats-Msg-Id (the ID: the
//     stream drops a message whose id it saw within its duplicate window,
//     2 minutes, so that the outbox relay's retries are not stored twice),
//     Stockflow-Correlation-Id, Stockflow-Causation-Id, Stockflow-Key and
//     Stockflow-Occurred-At; the payload is the data. A message published
//     by someone else without Nats-Msg-Id gets an id derived from its place
//     in the stream, the same on every delivery, so that the inbox still
//     recognises a redelivery; without Stockflow-Occurred-At, it is the
//     time the stream stored it.
//
//   - Publish publishes the messages of a call asynchronously, in order on
//     one connection (so that the stream keeps their order per subject),
//     and returns once the stream acknowledged every one of them, or with
//     an error if any was not: the outbox relay then publishes them all
//     again, and the stream drops the duplicates. (A message that failed
//     while a later one of the same key was stored is stored after it on
//     the retry: publishing is ordered, but its failures are not.)
//
//   - Subscribe uses a durable pull consumer per (group, channel,
//     partition), named "<group>_<channel>_<p>" (characters NATS does not
//     allow in names become '_'), filtered on the partition's subject, with
//     explicit acks, DeliverAll (a group new to the stream starts at the
//     oldest message kept), MaxAckPending 1 (a partition's messages are
//     handed strictly in order, one at a time, whichever member of the
//     group takes them), AckWait 30s (WithAckWait) and no bound on
//     deliveries (stockflow's Consumer dead-letters a message after its own
//     number of attempts, and then acknowledges it). Each partition is
//     fetched and handled by its own goroutine: a message h handled is
//     acknowledged, and the ack confirmed by the server (double ack); one
//     that failed is negatively acknowledged with a delay that grows with
//     its attempts (WithRedeliveryBackoff), and blocks its partition until
//     it is handled. Attempt is the server's count of deliveries. While h
//     runs, the transport tells the server every AckWait/3 that the message
//     is in progress, so that a slow handler does not see it handed again.
//     Members of a group share the consumers, which hand each message to
//     one of them.
//
//   - When Subscribe stops (its context done) while h has not handled a
//     message, the message is negatively acknowledged at once, so that
//     another member, or the next Subscribe, gets it again without delay.
//     A member that dies without a word holds its message for AckWait. A
//     message the server sent just as a fetch was abandoned is handed again
//     after AckWait too.
//
//   - Rewind deletes the group's consumers: they are created again from
//     the oldest message kept.
//
//   - A lost connection is waited out: the client reconnects without end
//     (every half second), Publish fails meanwhile (and the relay retries),
//     fetches fail and are retried with backoff, consumers and the stream
//     are created again if the broker lost them. Subscribe returns only when
//     its context is done (or the transport is closed).
type JetStream struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	cfg config

	closeOnce sync.Once
	closed    chan struct{}
	connDone  chan struct{}  // closed when the connection is
	subs      sync.WaitGroup // running Subscribe calls
	subsMu    sync.Mutex     // orders subs.Add after closed's closing
}

// Option configures a JetStream.
type Option func(*config)

type config struct {
	stream          string
	prefix          string
	partitions      int
	maxAge          time.Duration
	duplicates      time.Duration
	replicas        int
	ackWait         time.Duration
	backoffBase     time.Duration
	backoffMax      time.Duration
	pollWait        time.Duration
	publishTimeout  time.Duration
	name            string
	reconnectWait   time.Duration
	connectTimeout  time.Duration
	skipStreamSetup bool
}

// WithStream sets the stream's name and its subjects' prefix (the stream
// takes "<subjectPrefix>.>"): one per stockflow namespace, or per test.
func WithStream(name, subjectPrefix string) Option {
	return func(c *config) { c.stream, c.prefix = name, subjectPrefix }
}

// WithPartitions sets the number of partitions of each channel (default 8).
func WithPartitions(n int) Option { return func(c *config) { c.partitions = n } }

// WithMaxAge sets how long the stream keeps messages (default 7 days).
func WithMaxAge(d time.Duration) Option { return func(c *config) { c.maxAge = d } }

// WithDuplicateWindow sets how long the stream remembers message ids to drop
// duplicates (default 2 minutes).
func WithDuplicateWindow(d time.Duration) Option { return func(c *config) { c.duplicates = d } }

// WithReplicas sets the stream's replicas, in a cluster (default 1).
func WithReplicas(n int) Option { return func(c *config) { c.replicas = n } }

// WithAckWait sets how long a delivered message may go without news before
// the server hands it again (default 30s).
func WithAckWait(d time.Duration) Option { return func(c *config) { c.ackWait = d } }

// WithRedeliveryBackoff sets the delay before a message its handler failed
// is handed again: base after the first attempt, doubling with each attempt,
// at most max (defaults 250ms and 30s).
func WithRedeliveryBackoff(base, max time.Duration) Option {
	return func(c *config) { c.backoffBase, c.backoffMax = base, max }
}

// WithPollWait sets how long a fetch waits for a message before it asks
// again (default 5s); it bounds how long a fetch lost with the connection
// goes unnoticed.
func WithPollWait(d time.Duration) Option { return func(c *config) { c.pollWait = d } }

// WithPublishTimeout sets how long Publish waits for the stream's acks
// (default 10s), when its context does not end before.
func WithPublishTimeout(d time.Duration) Option { return func(c *config) { c.publishTimeout = d } }

// WithClientName sets the connection's name, as the server shows it.
func WithClientName(name string) Option { return func(c *config) { c.name = name } }

// New connects to the NATS server at url (nats://host:port), and creates
// or updates the stream.
func New(url string, log *slog.Logger, opts ...Option) (*JetStream, error) {
	cfg := config{
		stream:         DefaultStream,
		prefix:         DefaultSubjectPrefix,
		partitions:     DefaultPartitions,
		maxAge:         DefaultMaxAge,
		duplicates:     DefaultDuplicateWindow,
		replicas:       1,
		ackWait:        DefaultAckWait,
		backoffBase:    250 * time.Millisecond,
		backoffMax:     30 * time.Second,
		pollWait:       5 * time.Second,
		publishTimeout: 10 * time.Second,
		name:           "stockflow",
		reconnectWait:  500 * time.Millisecond,
		connectTimeout: 2 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.stream == "" || strings.ContainsAny(cfg.stream, ".*> \t\r\n/\\"):
		return nil, fmt.Errorf("nats: invalid stream name %q", cfg.stream)
	case validSubject(cfg.prefix) != nil:
		return nil, fmt.Errorf("nats: invalid subject prefix %q", cfg.prefix)
	case cfg.partitions < 1:
		return nil, fmt.Errorf("nats: %d partitions, want at least 1", cfg.partitions)
	case cfg.ackWait < time.Second:
		return nil, fmt.Errorf("nats: AckWait %v, want at least 1s", cfg.ackWait)
	case cfg.pollWait < 100*time.Millisecond:
		return nil, fmt.Errorf("nats: poll wait %v, want at least 100ms", cfg.pollWait)
	case cfg.backoffBase <= 0 || cfg.backoffMax < cfg.backoffBase:
		return nil, fmt.Errorf("nats: redelivery backoff (%v, %v) invalid", cfg.backoffBase, cfg.backoffMax)
	}

	t := &JetStream{log: log, cfg: cfg, closed: make(chan struct{}), connDone: make(chan struct{})}
	nc, err := nats.Connect(url,
		nats.Name(cfg.name),
		nats.Timeout(cfg.connectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.reconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case <-t.closed:
			default:
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "server", c.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(t.connDone) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats error", "subject", sub.Subject, "err", err)
			} else {
				log.Warn("nats error", "err", err)
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: connecting to %s: %w", redact(url), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.publishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	t.nc, t.js = nc, js
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.ensureStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return t, nil
}

// redact hides a password in url.
func redact(url string) string {
	if i, j := strings.Index(url, "://"), strings.LastIndex(url, "@"); i >= 0 && j > i {
		return url[:i+3] + "***" + url[j:]
	}
	return url
}

// Conn returns the NATS connection.
func (t *JetStream) Conn() *nats.Conn { return t.nc }

// JetStream returns the JetStream context.
func (t *JetStream) JetStream() jetstream.JetStream { return t.js }

// Stream returns the stream's name.
func (t *JetStream) Stream() string { return t.cfg.stream }

// StreamConfig returns the stream's settings, as New creates them.
func (t *JetStream) StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        t.cfg.stream,
		Description: "stockflow messages",
		Subjects:    []string{t.cfg.prefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      t.cfg.maxAge,
		Duplicates:  t.cfg.duplicates,
		Replicas:    t.cfg.replicas,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		// MaxConsumers and MaxMsgsPerSubject unlimited too (0: the server's
		// default, no limit).
	}
}

func (t *JetStream) ensureStream(ctx context.Context) error {
	if _, err := t.js.CreateOrUpdateStream(ctx, t.StreamConfig()); err != nil {
		return fmt.Errorf("nats: creating stream %s: %w", t.cfg.stream, err)
	}
	return nil
}

// Subject returns the subject of a channel's messages with key.
func (t *JetStream) Subject(channel, key string) string {
	return t.partitionSubject(channel, Partition(key, t.cfg.partitions))
}

func (t *JetStream) partitionSubject(channel string, p int) string {
	return t.cfg.prefix + "." + channel + "." + strconv.Itoa(p)
}

// Partition returns the partition of key among n: FNV-1a (32 bits) of the
// key modulo n; an empty key is in partition 0.
func Partition(key string, n int) int {
	if key == "" || n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// validSubject checks that s is a subject of literal tokens.
func validSubject(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return errors.New("empty token")
		}
		if strings.ContainsAny(tok, "*>") || strings.IndexFunc(tok, unicode.IsSpace) >= 0 {
			return fmt.Errorf("token %q is a wildcard or holds a space", tok)
		}
	}
	return nil
}

// validChannel checks that a channel can be a part of subjects.
func validChannel(ch string) error {
	if err := validSubject(ch); err != nil {
		return fmt.Errorf("nats: channel %q cannot be a subject: %v", ch, err)
	}
	return nil
}

// Publish publishes msgs and waits until the stream acknowledged them all.
func (t *JetStream) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		if err := validChannel(m.Channel); err != nil {
			return err
		}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var errs []error
	for _, m := range msgs {
		f, err := t.js.PublishMsgAsync(t.natsMsg(m))
		if err != nil {
			// Later messages are not sent: the relay sends them all again.
			errs = append(errs, fmt.Errorf("publishing %s on %s: %w", m.ID, m.Channel, err))
			break
		}
		futures = append(futures, f)
	}
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		tm := time.NewTimer(t.cfg.publishTimeout + time.Second) // the futures time out before
		defer tm.Stop()
		timeout = tm.C
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				t.recreateStream(ctx)
			}
			errs = append(errs, fmt.Errorf("publishing %s on %s: %w", msgs[i].ID, msgs[i].Channel, err))
		case <-ctx.Done():
			return fmt.Errorf("nats publish: %w", errors.Join(append(errs, ctx.Err())...))
		case <-timeout:
			return fmt.Errorf("nats publish: %w", errors.Join(append(errs, errors.New("no ack from the stream in time"))...))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nats publish: %w", errors.Join(errs...))
	}
	return nil
}

// recreateStream creates the stream again after the broker said there is
// none: it lost its store.
func (t *JetStream) recreateStream(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := t.js.Stream(ctx, t.cfg.stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := t.ensureStream(ctx); err != nil {
			t.log.Warn("nats stream missing, cannot create it", "stream", t.cfg.stream, "err", err)
		} else {
			t.log.Warn("nats stream was missing: created it again", "stream", t.cfg.stream)
		}
	}
}

func (t *JetStream) natsMsg(m messaging.Envelope) *nats.Msg {
	msg := nats.NewMsg(t.Subject(m.Channel, m.Key))
	msg.Data = m.Payload
	if m.ID != "" {
		msg.Header.Set(HeaderMsgID, m.ID)
	}
	if m.CorrelationID != "" {
		msg.Header.Set(HeaderCorrelationID, m.CorrelationID)
	}
	if m.CausationID != "" {
		msg.Header.Set(HeaderCausationID, m.CausationID)
	}
	if m.Key != "" {
		msg.Header.Set(HeaderKey, m.Key)
	}
	if !m.OccurredAt.IsZero() {
		msg.Header.Set(HeaderOccurredAt, m.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	return msg
}

// envelopeOf reads a delivered message: channel is the one its consumer
// filters on.
func (t *JetStream) envelopeOf(channel string, msg jetstream.Msg, meta *jetstream.MsgMetadata) messaging.Envelope {
	h := msg.Headers()
	env := messaging.Envelope{
		ID:            h.Get(HeaderMsgID),
		Channel:       channel,
		Key:           h.Get(HeaderKey),
		CorrelationID: h.Get(HeaderCorrelationID),
		CausationID:   h.Get(HeaderCausationID),
		Payload:       msg.Data(),
	}
	if at := h.Get(HeaderOccurredAt); at != "" {
		env.OccurredAt, _ = time.Parse(time.RFC3339Nano, at)
	}
	if meta != nil {
		if env.ID == "" {
			env.ID = storedID(meta)
		}
		if env.OccurredAt.IsZero() {
			env.OccurredAt = meta.Timestamp.UTC()
		}
	}
	return env
}

// storedID returns an id for a message stored without one: a name-based
// UUID (version 5) of its stream, sequence and time of storing, the same on
// each delivery.
func storedID(meta *jetstream.MsgMetadata) string {
	sum := sha1.Sum([]byte("nats-jetstream:" + meta.Stream + ":" +
		strconv.FormatUint(meta.Sequence.Stream, 10) + ":" + strconv.FormatInt(meta.Timestamp.UnixNano(), 10)))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// ConsumerName returns the name of the durable consumer of group on a
// channel's partition.
func ConsumerName(group, channel string, partition int) string {
	return sanitize(group) + "_" + sanitize(channel) + "_" + strconv.Itoa(partition)
}

// sanitize replaces the characters NATS does not allow in a consumer's
// name (and that would be awkward as a file name) by '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r == '~' || unicode.IsSpace(r) || !unicode.IsPrint(r):
			return '_'
		}
		return r
	}, s)
}

func (t *JetStream) consumerConfig(group, channel string, p int) jetstream.ConsumerConfig {
	name := ConsumerName(group, channel, p)
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   fmt.Sprintf("stockflow group %s, channel %s, partition %d", group, channel, p),
		FilterSubject: t.partitionSubject(channel, p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		AckWait:       t.cfg.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 1,
	}
}

var errClosed = errors.New("nats: transport closed")

// Subscribe hands the messages of channels to h, as group, until ctx is
// done: one goroutine per channel and partition.
func (t *JetStream) Subscribe(parent context.Context, group string, channels []string, h messaging.Handler) error {
	if group == "" {
		return errors.New("nats: subscribing without a group")
	}
	if h == nil {
		return errors.New("nats: subscribing without a handler")
	}
	for _, ch := range channels {
		if err := validChannel(ch); err != nil {
			return err
		}
	}
	t.subsMu.Lock()
	select {
	case <-t.closed:
		t.subsMu.Unlock()
		return errClosed
	case <-t.connDone:
		t.subsMu.Unlock()
		return errClosed
	default:
	}
	t.subs.Add(1)
	t.subsMu.Unlock()
	defer t.subs.Done()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		select {
		case <-t.closed:
			cancel()
		case <-t.connDone: // closed by Close, or by someone holding Conn
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, ch := range channels {
		for p := range t.cfg.partitions {
			wg.Go(func() { t.consume(ctx, group, ch, p, h) })
		}
	}
	t.log.InfoContext(ctx, "nats subscribed", "group", group, "channels", channels, "partitions", t.cfg.partitions)
	wg.Wait()
	<-ctx.Done() // without channels, nothing to wait for but this
	if err := parent.Err(); err != nil {
		return err
	}
	return errClosed
}

// partition is the state of one partition's consumer.
type partition struct {
	t        *JetStream
	group    string
	channel  string
	p        int
	h        messaging.Handler
	consumer jetstream.Consumer
	failing  bool // the last fetch failed
	backoff  time.Duration
}

// consume fetches and handles the messages of a partition, one at a time,
// until ctx is done.
func (t *JetStream) consume(ctx context.Context, group, channel string, p int, h messaging.Handler) {
	pt := &partition{t: t, group: group, channel: channel, p: p, h: h}
	for ctx.Err() == nil {
		err := pt.step(ctx)
		if err == nil || ctx.Err() != nil {
			continue
		}
		// Make sure of the consumer again: it may be gone (a Rewind, a
		// broker that lost it: the fetch then fails with "consumer
		// deleted", no responders, or no heartbeat). Creating it is
		// idempotent.
		pt.consumer = nil
		pt.backoff = min(max(2*pt.backoff, 100*time.Millisecond), 5*time.Second)
		level := slog.LevelDebug
		if !pt.failing {
			level = slog.LevelWarn
		}
		pt.failing = true
		t.log.Log(ctx, level, "nats fetch failed, retrying", "group", group, "channel", channel, "partition", p, "err", err, "retry_in", pt.backoff)
		select {
		case <-ctx.Done():
		case <-time.After(pt.backoff):
		}
	}
}

// step fetches a message, if one comes within the poll wait, and handles
// it.
func (pt *partition) step(ctx context.Context) error {
	t := pt.t
	if pt.consumer == nil {
		c, err := pt.ensureConsumer(ctx)
		if err != nil {
			return err
		}
		pt.consumer = c
	}
	fctx, cancel := context.WithTimeout(ctx, t.cfg.pollWait)
	defer cancel()
	opts := []jetstream.FetchOpt{jetstream.FetchContext(fctx)}
	if hb := t.cfg.pollWait / 4; hb >= 250*time.Millisecond {
		opts = append(opts, jetstream.FetchHeartbeat(hb))
	}
	batch, err := pt.consumer.Fetch(1, opts...)
	if err != nil {
		return err
	}
	got := false
	for msg := range batch.Messages() {
		got = true
		pt.handle(ctx, msg)
	}
	err = batch.Error()
	if err != nil && !got && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = nil // nothing came within the poll wait
	}
	if err != nil && got {
		err = nil // the fetch ended once the message came
	}
	if err == nil && pt.failing {
		pt.failing, pt.backoff = false, 0
		t.log.InfoContext(ctx, "nats fetching again", "group", pt.group, "channel", pt.channel, "partition", pt.p)
	}
	return err
}

func (pt *partition) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	t := pt.t
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := t.js.CreateOrUpdateConsumer(cctx, t.cfg.stream, t.consumerConfig(pt.group, pt.channel, pt.p))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		t.recreateStream(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", ConsumerName(pt.group, pt.channel, pt.p), err)
	}
	return c, nil
}

// handle hands msg to h, then acknowledges it or asks for it again.
func (pt *partition) handle(ctx context.Context, msg jetstream.Msg) {
	t := pt.t
	meta, err := msg.Metadata()
	if err != nil {
		t.log.ErrorContext(ctx, "nats message without metadata: terminated", "subject", msg.Subject(), "err", err)
		msg.Term()
		return
	}
	d := messaging.Delivery{Envelope: t.envelopeOf(pt.channel, msg, meta), Attempt: int(meta.NumDelivered)}
	if ctx.Err() != nil {
		msg.Nak() // stopping: hand it to another member at once
		return
	}

	// Tell the server the message is being handled, so that it does not
	// hand it again to someone else after AckWait.
	stop := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() {
		tick := time.NewTicker(t.cfg.ackWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				msg.InProgress()
			}
		}
	})
	err = pt.safeHandle(ctx, d)
	close(stop)
	progress.Wait()

	switch {
	case err == nil:
		pt.ack(ctx, msg, d)
	case ctx.Err() != nil:
		if aerr := msg.Nak(); aerr != nil {
			t.log.WarnContext(ctx, "nats nak failed: the message will be delivered again after AckWait", "channel", pt.channel, "message_id", d.ID, "err", aerr)
		}
	default:
		delay := pt.redeliveryDelay(d.Attempt)
		t.log.DebugContext(ctx, "nats message failed, will be delivered again", "channel", pt.channel, "message_id", d.ID, "attempt", d.Attempt, "retry_in", delay, "err", err)
		if aerr := msg.NakWithDelay(delay); aerr != nil {
			t.log.WarnContext(ctx, "nats nak failed: the message will be delivered again after AckWait", "channel", pt.channel, "message_id", d.ID, "err", aerr)
		}
	}
}

// ack acknowledges a handled message, and waits for the server to confirm.
// When the connection is lost meanwhile, it tries again, until AckWait is
// over (the server then hands the message again: the inbox recognises it),
// Subscribe stops, or the transport closes: the partition cannot go on
// before the server counts the message acknowledged anyway.
func (pt *partition) ack(ctx context.Context, msg jetstream.Msg, d messaging.Delivery) {
	t := pt.t
	deadline := time.Now().Add(t.cfg.ackWait)
	wait := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(context.Background(), min(2*time.Second, t.cfg.ackWait))
		err := msg.DoubleAck(actx)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return
		}
		if errors.Is(err, nats.ErrNoResponders) && pt.consumerGone() {
			// Rewound meanwhile: the message will come again from the new consumer.
			t.log.InfoContext(ctx, "nats ack of a message whose consumer is gone", "channel", pt.channel, "message_id", d.ID)
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			t.log.WarnContext(ctx, "nats ack failed: the message will be delivered again", "channel", pt.channel, "message_id", d.ID, "err", err)
			return
		}
		t.log.DebugContext(ctx, "nats ack failed, trying again", "channel", pt.channel, "message_id", d.ID, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// consumerGone reports whether the server says the partition's consumer
// does not exist.
func (pt *partition) consumerGone() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := pt.t.js.Consumer(ctx, pt.t.cfg.stream, ConsumerName(pt.group, pt.channel, pt.p))
	return errors.Is(err, jetstream.ErrConsumerNotFound)
}

// safeHandle calls h, turning a panic into an error.
func (pt *partition) safeHandle(ctx context.Context, d messaging.Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
			pt.t.log.ErrorContext(ctx, "nats handler panicked", "channel", d.Channel, "message_id", d.ID, "panic", r)
		}
	}()
	return pt.h(ctx, d)
}

// redeliveryDelay returns the delay before attempt+1.
func (pt *partition) redeliveryDelay(attempt int) time.Duration {
	d := pt.t.cfg.backoffBase
	for i := 1; i < attempt && d < pt.t.cfg.backoffMax; i++ {
		d *= 2
	}
	return min(d, pt.t.cfg.backoffMax)
}

// Rewind deletes group's consumers of channels: its next Subscribe starts
// at the oldest message kept. Members of the group that are subscribed
// meanwhile create the consumers again, from the oldest message.
func (t *JetStream) Rewind(ctx context.Context, group string, channels []string) error {
	var errs []error
	for _, ch := range channels {
		if err := validChannel(ch); err != nil {
			return err
		}
		for p := range t.cfg.partitions {
			err := t.js.DeleteConsumer(ctx, t.cfg.stream, ConsumerName(group, ch, p))
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nats rewind: %w", errors.Join(errs...))
	}
	return nil
}

// Close stops the subscriptions (their Subscribe returns an error), waits
// a while for their handlers to return, lets the connection send what it
// holds, and closes it.
func (t *JetStream) Close() error {
	t.closeOnce.Do(func() {
		t.subsMu.Lock()
		close(t.closed)
		t.subsMu.Unlock()
		stopped := make(chan struct{})
		go func() { t.subs.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.log.Warn("nats closing while handlers still run")
		}
		if err := t.nc.Drain(); err != nil {
			t.nc.Close()
			return
		}
		select {
		case <-t.connDone:
		case <-time.After(5 * time.Second):
			t.nc.Close()
		}
	})
	return nil
}
