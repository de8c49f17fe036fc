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
	"github.com/stockflow/stockflow/internal/secure"
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
	DefaultBatch           = 256
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
//     allow in names become '_'), filtered on the partition's subject, that
//     acknowledges all (an ack covers every message before it), starts at
//     the oldest message kept (a group new to the stream reads everything),
//     with MaxAckPending 256 (WithBatch), AckWait 30s (WithAckWait) and no
//     bound on deliveries (stockflow's Consumer dead-letters a message after
//     its own number of attempts, and then acknowledges it).
//
//   - One member of a group at a time holds a partition: it takes the
//     partition's lease, a key (LeaseKey: the consumer's name) of the
//     bucket LeaseBucket ("<stream>_leases", made at the first Subscribe),
//     by creating it, or by a compare-and-set on its revision when it is
//     free; it renews it, by a compare-and-set, every third of the lease's
//     TTL (AckWait, between 2s and 10s; WithLeaseTTL), and gives it back
//     when Subscribe stops. A lease its holder stops renewing (it died, or
//     lost the server) is taken over once its revision has not changed for
//     a TTL, as seen by the member waiting for it (each member measures on
//     its own clock: no clocks are compared). A holder that cannot renew
//     for a TTL hands nothing more and gives the partition up. Members
//     without a partition look at its lease every TTL/4 (at most every
//     second). There is no rebalancing: a partition goes to whoever asks
//     first, and a second instance of a group is a standby for the
//     partitions the first holds.
//
//     The lease is how members share the work; it is not what keeps a
//     partition's order. That rests on the consumer: its holder hands a
//     message only while every message the consumer counts pending (sent,
//     not acknowledged) is one the holder received and has not handed yet
//     (it compares its own count with the consumer's, and the consumer's
//     delivery sequence with the last it received; then it checks that the
//     deliveries it receives follow each other). Anything held elsewhere
//     (by a previous holder that stopped, or that died and whose messages
//     come back after AckWait; by a pull request abandoned; by a member
//     that still believes it holds the lease) stops it until the message
//     comes back to it: it then hands everything in the order of the
//     stream. Two members therefore never interleave a partition's
//     messages, even while two of them believe they hold its lease (the
//     one that does not stops at its next renewal).
//
//   - The holder fetches a partition with pull requests of 256 messages,
//     while it hands the messages received to h strictly one at a time, in
//     order, each once h returned nil for the one before. A message h
//     failed is handed again in place (the messages after it wait), after
//     a delay that doubles with its attempts (WithRedeliveryBackoff), with
//     Attempt incremented. A message h handled is acknowledged with the
//     ones before it: an ack goes every 32 messages, whenever the partition
//     has nothing more at hand, before a retry's delay, and every
//     AckWait/3. (An ack also sets the consumer's floor of delivery
//     sequences, below which the server ignores a message's acks, negative
//     acks and progress: an ack therefore waits while a message held was
//     delivered before the one acknowledged, and a holder that finds the
//     messages it collected delivered out of order gives them back, in
//     order, to have them delivered again in order.) Every AckWait/3 the
//     holder also tells the server that the messages it holds (the one in
//     h, and those waiting for their turn) are in progress, so that a slow
//     handler keeps them. Partitions are handled in parallel, each by its
//     own goroutine.
//
//   - Attempt counts the times a message was handed to h: the server's
//     count of deliveries, corrected with the counts the lease keeps (a
//     message fetched in a batch but never handed was delivered, a message
//     retried in place was not delivered again). A retry in place records
//     its count in the lease, so that it survives a crash.
//
//   - When Subscribe stops (its context done), the holder waits for h to
//     return, acknowledges what h handled, gives back at once, in order,
//     the messages it holds (negative acks, the message h did not handle
//     first, confirmed by the server), and gives the lease back with their
//     counts: the next holder, or the next Subscribe, gets them without
//     delay, with the right Attempt. A member that dies without a word
//     holds its partitions for the lease's TTL, and its messages come back
//     after AckWait, in order, from the first it had not acknowledged: up
//     to 32 messages it had handled come again (the inbox recognises
//     them), and the messages it had received but not handed count one
//     delivery more than they were handed.
//
//   - Consumers of an earlier version of this transport (explicit acks,
//     MaxAckPending 1) are created again when a holder takes their
//     partition: an ack policy cannot change, so the consumer is deleted
//     and created again, acknowledging all, from its first message not
//     acknowledged (messages it had sent but not had acknowledged come
//     again, counting from 1). Other settings (MaxAckPending, AckWait) are
//     updated in place. Stop every member of the earlier version before
//     starting the new one: they take no lease, and could hand a message
//     that a new member hands too (once its consumer was created again, a
//     member of the earlier version fails to update it, and fetches no
//     more).
//
//   - Rewind deletes the group's consumers: they are created again from
//     the oldest message kept, by the members holding their partitions,
//     which hand nothing more of what they had received from the consumer
//     deleted (a member on the transport that rewinds stops at once; a
//     member elsewhere as soon as the server tells it the consumer is gone,
//     so that a message or two it had received may be handed before the
//     group starts over).
//
//   - A lost connection is waited out: the client reconnects without end
//     (every half second), Publish fails meanwhile (and the relay retries),
//     fetches fail and are retried with backoff, consumers, the lease
//     bucket and the stream are created again if the broker lost them (a
//     holder whose consumer's sequence goes back, a broker that lost some
//     of its state, starts the partition over: messages it handled may be
//     handed again). Subscribe returns only when its context is done (or
//     the transport is closed).
//
//   - Known limits: nats-server 2.9 drops a message given back while the
//     only pull request waiting is one nobody listens to any more (it comes
//     back after AckWait): a holder therefore asks for the consumer's info,
//     which clears such requests, before it gives messages back; a lost
//     connection can still cause it, and a pull request abandoned can still
//     deliver a message nobody receives: the partition then waits for
//     AckWait. A handler that ignores its context and runs on after its
//     member lost the server may run beside the next holder's handler once
//     AckWait is over, as with any broker.
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

	kvMu sync.Mutex
	kv   jetstream.KeyValue // the lease bucket, once made sure of

	sessMu   sync.Mutex
	sessions map[string]map[*session]struct{} // by consumer name: the partitions held here
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
	batch           int
	leaseTTL        time.Duration
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

// WithBatch sets how many messages of a partition a member fetches at a
// time, and may hold unacknowledged: the consumers' MaxAckPending (default
// 256).
func WithBatch(n int) Option { return func(c *config) { c.batch = n } }

// WithLeaseTTL sets how long a partition's lease lasts unless its holder
// renews it (every third of it): how long a member that died, or lost the
// server, keeps its partitions from the others (default AckWait, at least
// 2s and at most 10s). Every member of a group should use the same.
func WithLeaseTTL(d time.Duration) Option { return func(c *config) { c.leaseTTL = d } }

// WithRedeliveryBackoff sets the delay before a message its handler failed
// is handed again: base after the first attempt, doubling with each attempt,
// at most max (defaults 250ms and 30s). The consumer pipeline names its
// own delay (messaging.Redeliver); this serves a handler that names none.
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

// New connects to the NATS server at url (nats://host:port, or
// tls://host:port; with a user, a token, a .creds file and TLS files as
// connectOptions reads them), and creates or updates the stream.
func New(url string, log *slog.Logger, opts ...Option) (*JetStream, error) {
	cfg := config{
		stream:         DefaultStream,
		prefix:         DefaultSubjectPrefix,
		partitions:     DefaultPartitions,
		maxAge:         DefaultMaxAge,
		duplicates:     DefaultDuplicateWindow,
		replicas:       1,
		ackWait:        DefaultAckWait,
		batch:          DefaultBatch,
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
	case cfg.batch < 1:
		return nil, fmt.Errorf("nats: batch %d, want at least 1", cfg.batch)
	case cfg.leaseTTL != 0 && cfg.leaseTTL < 500*time.Millisecond:
		return nil, fmt.Errorf("nats: lease TTL %v, want at least 500ms", cfg.leaseTTL)
	case cfg.pollWait < 100*time.Millisecond:
		return nil, fmt.Errorf("nats: poll wait %v, want at least 100ms", cfg.pollWait)
	case cfg.backoffBase <= 0 || cfg.backoffMax < cfg.backoffBase:
		return nil, fmt.Errorf("nats: redelivery backoff (%v, %v) invalid", cfg.backoffBase, cfg.backoffMax)
	}

	servers, secrets, err := connectOptions(url)
	if err != nil {
		return nil, err
	}
	t := &JetStream{log: log, cfg: cfg, closed: make(chan struct{}), connDone: make(chan struct{})}
	nc, err := nats.Connect(servers, append(secrets,
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
	)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", servers, secure.Explain(err)) // the error names nats already
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

// leaseTTL returns how long a lease lasts unless renewed.
func (t *JetStream) leaseTTL() time.Duration {
	if t.cfg.leaseTTL > 0 {
		return t.cfg.leaseTTL
	}
	return min(max(t.cfg.ackWait, 2*time.Second), 10*time.Second)
}

// leasePoll returns how often a member that does not hold a partition looks
// at its lease.
func (t *JetStream) leasePoll() time.Duration {
	return max(min(t.leaseTTL()/4, time.Second), 100*time.Millisecond)
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
func (t *JetStream) envelopeOf(channel string, msg *nats.Msg, meta *nats.MsgMetadata) messaging.Envelope {
	h := msg.Header
	env := messaging.Envelope{
		ID:            h.Get(HeaderMsgID),
		Channel:       channel,
		Key:           h.Get(HeaderKey),
		CorrelationID: h.Get(HeaderCorrelationID),
		CausationID:   h.Get(HeaderCausationID),
		Payload:       msg.Data,
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
func storedID(meta *nats.MsgMetadata) string {
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
		Description:   fmt.Sprintf("stockflow group %s, channel %s, partition %d (leased; batches of %d)", group, channel, p, t.cfg.batch),
		FilterSubject: t.partitionSubject(channel, p),
		AckPolicy:     jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		AckWait:       t.cfg.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: t.cfg.batch,
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
			name := ConsumerName(group, ch, p)
			marks := t.marks(name)
			err := t.js.DeleteConsumer(ctx, t.cfg.stream, name)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				errs = append(errs, err)
				continue
			}
			// This transport's members of the group hand nothing more of
			// the consumer deleted.
			invalidate(marks)
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

// Ping reports whether the NATS server answers.
func (t *JetStream) Ping(ctx context.Context) error {
	if !t.nc.IsConnected() {
		return fmt.Errorf("nats: %s", t.nc.Status())
	}
	return t.nc.FlushWithContext(ctx)
}
