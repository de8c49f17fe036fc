// Package kafka carries messages over Apache Kafka (or any broker that
// speaks its protocol: Redpanda, WarpStream, ...), with franz-go. It is a
// durable transport: it keeps every promise messaging.Subscriber lists.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/secure"
)

// Kafka is the Kafka transport.
//
// Topics. Each channel travels on its own topic, named the channel with a
// prefix ("stockflow.line_allocated"; see TopicPrefix). The transport
// creates a topic it needs and does not find, with Partitions partitions
// (default 8) and the broker's default replication factor; a topic that
// exists is used as it is.
//
// Records. A message is one record: its Key is the envelope's Key (the sku),
// so that the default partitioner (murmur2 of the key, as the Java client)
// sends every message of one key to one partition, where Kafka keeps their
// order; its Value is the payload; its headers carry id, correlation_id,
// causation_id and occurred_at (RFC 3339, nanoseconds). A record from
// outside stockflow may lack them: it is handed with no id (the consumer
// gives it one) and the record's timestamp as occurred_at.
//
// Publishing. Publish produces the messages with one idempotent producer
// (franz-go's default: acks from all in-sync replicas, sequence numbers
// that let the broker drop a retried batch it already wrote, and at most 5
// requests in flight per broker, which idempotence keeps in order), waits
// until the broker has taken every record, and returns the first error, so
// that the outbox relay sends the batch again. A retry by the relay after a
// lost reply may write a message twice; consumers recognise it by its id.
//
// Subscribing. Subscribe joins the consumer group group with a client of
// its own. A group new to the broker starts at the oldest record kept; one
// that was away resumes at its committed offsets. Each poll (at most
// MaxPollRecords records) is handled partition by partition: the partitions
// in parallel, each in its own goroutine, the records of one partition
// strictly one after another, in order. A record is handed to h until h
// returns nil, waiting between attempts (RetryBackoff); Delivery.Attempt
// counts them (a messaging.Consumer dead-letters a message after its
// MaxAttempts and then acknowledges it). h must therefore be safe to call
// concurrently for messages of different keys.
//
// Committing. Offsets are committed only for records h acknowledged, after
// each poll (and when the subscription ends or loses a partition in a
// rebalance): delivery is at least once. A member that dies, or whose ctx
// ends, while a record is in its handler has not committed it: the group
// hands it again, to that member when it comes back or to another one.
// Attempt counts deliveries made by this *Kafka; a member in another
// process starts counting again at 1.
//
// Rebalances. The group client blocks rebalances while a poll is being
// handled (kgo.BlockRebalanceOnPoll): a partition changes hands only
// between polls, once every record handled was committed, so no record is
// in two members' hands at once and no commit rewinds another member's.
// A handler that takes longer than the rebalance timeout (default 60s)
// gets its member expelled from the group; the records it had not
// committed are handed to another member.
//
// Connections. franz-go retries lost connections and requests for ever:
// Publish waits until its ctx ends (records already sent wait for their
// outcome even then: the idempotent producer must know it) and Subscribe
// keeps polling; a broker restart is waited out. Subscribe returns only when its ctx is done (or
// the transport is closed, or the client cannot be configured).
//
// Replay. Rewind commits, for the group, the oldest offset of each
// partition of the channels' topics: the group is handed everything the
// broker keeps again. The group must have no member subscribed then.
type Kafka struct {
	brokers []string
	log     *slog.Logger
	cfg     config

	client *kgo.Client  // the producer, and the admin client's
	admin  *kadm.Client // topic creation, rewind

	topicsMu sync.Mutex
	topics   map[string]bool // topics known to exist

	attemptsMu sync.Mutex
	attempts   map[recordID]int // deliveries of records not yet acknowledged

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
	subsWG sync.WaitGroup
}

// recordID names a record handed to a group.
type recordID struct {
	group     string
	topic     string
	partition int32
	offset    int64
}

type config struct {
	prefix         string
	partitions     int32
	replication    int16
	retryMin       time.Duration
	retryMax       time.Duration
	maxPollRecords int
	commitTimeout  time.Duration
	clientOpts     []kgo.Opt
}

// Option configures a Kafka transport.
type Option func(*config)

// TopicPrefix sets the prefix of topic names (default "stockflow.").
func TopicPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// Partitions sets the number of partitions of the topics the transport
// creates (default 8). It bounds how many members of a group share the
// work, and how many partitions a member handles in parallel.
func Partitions(n int32) Option { return func(c *config) { c.partitions = n } }

// ReplicationFactor sets the replication factor of the topics the
// transport creates (default -1: the broker's default).
func ReplicationFactor(n int16) Option { return func(c *config) { c.replication = n } }

// RetryBackoff sets the wait before handing a failed message again: min
// before the second attempt, doubling up to max (default 100ms, 5s). The
// consumer pipeline names its own delay (messaging.Redeliver); this serves
// a handler that names none.
func RetryBackoff(min, max time.Duration) Option {
	return func(c *config) { c.retryMin, c.retryMax = min, max }
}

// MaxPollRecords bounds the records handled between two commits (default
// 500).
func MaxPollRecords(n int) Option { return func(c *config) { c.maxPollRecords = n } }

// ClientOpts adds franz-go options to every client the transport makes
// (TLS, SASL, timeouts, a group's heartbeat interval, ...).
func ClientOpts(opts ...kgo.Opt) Option {
	return func(c *config) { c.clientOpts = append(c.clientOpts, opts...) }
}

// New returns a Kafka transport on the brokers (host:port each); it
// connects lazily, so a broker that is down is not an error.
func New(brokers []string, log *slog.Logger, opts ...Option) (*Kafka, error) {
	if len(brokers) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := config{
		prefix:         "stockflow.",
		partitions:     8,
		replication:    -1,
		retryMin:       100 * time.Millisecond,
		retryMax:       5 * time.Second,
		maxPollRecords: 500,
		commitTimeout:  30 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.partitions <= 0 {
		cfg.partitions = 8
	}
	if cfg.retryMin <= 0 {
		cfg.retryMin = 100 * time.Millisecond
	}
	cfg.retryMax = max(cfg.retryMax, cfg.retryMin)
	if cfg.maxPollRecords <= 0 {
		cfg.maxPollRecords = 500
	}
	k := &Kafka{
		brokers:  brokers,
		log:      log,
		cfg:      cfg,
		topics:   map[string]bool{},
		attempts: map[recordID]int{},
		subs:     map[*subscription]struct{}{},
	}
	client, err := kgo.NewClient(k.clientOpts(
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default, and what idempotence needs
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	k.client = client
	k.admin = kadm.NewClient(client)
	return k, nil
}

// clientOpts returns the options every client shares, then extra, then
// the caller's.
func (k *Kafka) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.brokers...),
		kgo.WithLogger(kgoLogger{k.log, &sync.Map{}}),
	}
	opts = append(opts, extra...)
	return append(opts, k.cfg.clientOpts...)
}

// Client returns the producer client, for tests and diagnostics.
func (k *Kafka) Client() *kgo.Client { return k.client }

// Topic returns the topic channel travels on.
func (k *Kafka) Topic(channel string) string { return k.cfg.prefix + channel }

func (k *Kafka) channelOf(topic string) string { return strings.TrimPrefix(topic, k.cfg.prefix) }

func (k *Kafka) topicsOf(channels []string) []string {
	topics := make([]string, len(channels))
	for i, c := range channels {
		topics[i] = k.Topic(c)
	}
	return topics
}

var errClosed = errors.New("kafka: transport closed")

// ensureTopics creates the topics that are not known to exist.
func (k *Kafka) ensureTopics(ctx context.Context, topics []string) error {
	var missing []string
	k.topicsMu.Lock()
	for _, t := range topics {
		if !k.topics[t] && !contains(missing, t) {
			missing = append(missing, t)
		}
	}
	k.topicsMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	// Two callers may create a topic at once: one is told it exists.
	resps, err := k.admin.CreateTopics(ctx, k.cfg.partitions, k.cfg.replication, nil, missing...)
	if err != nil {
		return fmt.Errorf("kafka: creating topics %v: %w", missing, err)
	}
	k.topicsMu.Lock()
	defer k.topicsMu.Unlock()
	var errs []error
	for _, t := range missing {
		r, ok := resps[t]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("kafka: creating topic %s: no answer", t))
		case r.Err == nil:
			k.log.InfoContext(ctx, "kafka topic created", "topic", t, "partitions", k.cfg.partitions)
			k.topics[t] = true
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			k.topics[t] = true
		default:
			errs = append(errs, fmt.Errorf("kafka: creating topic %s: %w", t, r.Err))
		}
	}
	return errors.Join(errs...)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Publish produces the messages, in order, and returns once the brokers
// have taken all of them (acks from all in-sync replicas), or with the
// first error.
func (k *Kafka) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	if len(msgs) == 0 {
		return nil
	}
	if k.isClosed() {
		return errClosed
	}
	recs := make([]*kgo.Record, len(msgs))
	topics := make([]string, 0, 1)
	for i, m := range msgs {
		recs[i] = recordOf(k.Topic(m.Channel), m)
		if !contains(topics, recs[i].Topic) {
			topics = append(topics, recs[i].Topic)
		}
	}
	if err := k.ensureTopics(ctx, topics); err != nil {
		return err
	}
	if err := k.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kafka publish: %w", err)
	}
	return nil
}

// Header names.
const (
	hID          = "id"
	hCorrelation = "correlation_id"
	hCausation   = "causation_id"
	hOccurredAt  = "occurred_at"
)

func recordOf(topic string, m messaging.Envelope) *kgo.Record {
	r := &kgo.Record{Topic: topic, Value: m.Payload}
	if m.Key != "" {
		r.Key = []byte(m.Key)
	}
	add := func(k, v string) {
		if v != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	add(hID, m.ID)
	add(hCorrelation, m.CorrelationID)
	add(hCausation, m.CausationID)
	if !m.OccurredAt.IsZero() {
		add(hOccurredAt, m.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	return r
}

func (k *Kafka) envelopeOf(r *kgo.Record) messaging.Envelope {
	env := messaging.Envelope{
		Channel: k.channelOf(r.Topic),
		Key:     string(r.Key),
		Payload: r.Value,
	}
	for _, h := range r.Headers {
		switch h.Key {
		case hID:
			env.ID = string(h.Value)
		case hCorrelation:
			env.CorrelationID = string(h.Value)
		case hCausation:
			env.CausationID = string(h.Value)
		case hOccurredAt:
			env.OccurredAt, _ = time.Parse(time.RFC3339Nano, string(h.Value))
		}
	}
	if env.OccurredAt.IsZero() && !r.Timestamp.IsZero() {
		env.OccurredAt = r.Timestamp.UTC()
	}
	if env.ID == "" {
		// A record from outside stockflow: its place in the log is an id
		// that a redelivery keeps, so the inbox recognises it.
		env.ID = fmt.Sprintf("kafka:%s:%d:%d", r.Topic, r.Partition, r.Offset)
	}
	return env
}

// Rewind commits, for group, the oldest offset kept of every partition of
// the channels' topics, so that the group is handed every message again.
// No member of the group may be subscribed meanwhile: the broker refuses
// offsets from outside a group that has members.
func (k *Kafka) Rewind(ctx context.Context, group string, channels []string) error {
	topics := k.topicsOf(channels)
	if err := k.ensureTopics(ctx, topics); err != nil {
		return err
	}
	listed, err := k.admin.ListStartOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("kafka rewind %s: %w", group, err)
	}
	if err := listed.Error(); err != nil {
		return fmt.Errorf("kafka rewind %s: %w", group, err)
	}
	offsets := kadm.Offsets{}
	listed.Each(func(o kadm.ListedOffset) {
		offsets.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
	})
	if err := k.admin.CommitAllOffsets(ctx, group, offsets); err != nil {
		return fmt.Errorf("kafka rewind %s: %w", group, err)
	}
	k.log.InfoContext(ctx, "kafka group rewound", "group", group, "topics", topics)
	return nil
}

// Close ends the subscriptions (each commits what its handlers
// acknowledged), then closes the producer.
func (k *Kafka) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	for s := range k.subs {
		s.cancel()
	}
	k.mu.Unlock()
	k.subsWG.Wait()
	k.client.Close()
	return nil
}

func (k *Kafka) isClosed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

// attempt counts one more delivery of r to group, and returns the count.
func (k *Kafka) attempt(id recordID) int {
	k.attemptsMu.Lock()
	defer k.attemptsMu.Unlock()
	k.attempts[id]++
	return k.attempts[id]
}

// acknowledged forgets the deliveries of an acknowledged record.
func (k *Kafka) acknowledged(id recordID) {
	k.attemptsMu.Lock()
	defer k.attemptsMu.Unlock()
	delete(k.attempts, id)
}

// kgoLogger logs franz-go's messages to a slog.Logger: its warnings and
// errors as such, its info (group joins, rebalances) at debug level. A
// warning repeated within a minute (a broker that stays away, retried) is
// a debug line: an outage is not a flood.
type kgoLogger struct {
	log  *slog.Logger
	seen *sync.Map // warning -> when last logged as one
}

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var lvl slog.Level
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
		now := time.Now()
		if last, ok := l.seen.Load(msg); ok && now.Sub(last.(time.Time)) < time.Minute {
			lvl = slog.LevelDebug
		} else {
			l.seen.Store(msg, now)
		}
	default:
		lvl = slog.LevelDebug
	}
	l.log.Log(context.Background(), lvl, "kafka: "+msg, keyvals...)
}

// Ping reports whether a Kafka broker answers.
func (k *Kafka) Ping(ctx context.Context) error { return secure.Explain(k.client.Ping(ctx)) }
