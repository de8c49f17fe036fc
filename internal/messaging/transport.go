package messaging

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// Publisher sends messages to a broker. Publish returns once the broker has
// taken every message (or, for a fire-and-forget broker, sent it); on error
// the caller sends them all again, so brokers see duplicates that consumers
// recognise by id.
type Publisher interface {
	Publish(ctx context.Context, msgs ...Envelope) error
}

// Delivery is a message handed to a subscriber.
type Delivery struct {
	Envelope
	// Attempt counts deliveries of this message to this group, from 1.
	Attempt int
}

// Handler handles a delivery. Returning nil acknowledges the message; an
// error asks the transport to deliver it again later.
type Handler func(ctx context.Context, d Delivery) error

// Subscriber delivers the messages of channels to a consumer group.
//
// What a transport promises varies (see the README's table); a durable one
// (Kafka, NATS JetStream, Redis Streams) promises this much:
//   - a group keeps its position: a group that was away gets what it
//     missed; a group new to the broker starts at the oldest message kept;
//   - each message is handed to one member of the group, and acknowledged
//     only when h returns nil; a message h failed, or that was not
//     acknowledged when its member died, is handed again (Attempt counts);
//   - messages with the same Key are handed in the order they were
//     published, one at a time;
//   - a lost connection or a broker restart is waited out, not returned.
type Subscriber interface {
	// Subscribe hands every message on channels to h, for the consumer
	// group group, until ctx is done; it then returns ctx's error.
	Subscribe(ctx context.Context, group string, channels []string, h Handler) error
}

// Rewinder is a durable transport that can hand a group every message it
// still keeps again, from the oldest (stockflow's --replay).
type Rewinder interface {
	Rewind(ctx context.Context, group string, channels []string) error
}

// Pinger is a transport that can tell whether its broker answers (the
// in-process transport has none to ask).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Transport is a broker seen from stockflow.
type Transport interface {
	Publisher
	Subscriber
	Close() error
}

// DeadLetter is a message that could not be handled, kept whole (its
// envelope: id, channel, key, correlation and causation, when it was
// raised, its payload) with the reason, how many times it was tried and
// when it first and last failed. Dead letters kept by earlier versions
// lack the envelope's other fields and the attempts (0).
//
// Its fingerprint names the cause (Fingerprint), and Group the dead
// letters of the same service, channel and cause. A message sent again
// (retried) that fails again is the same dead letter, its Failures
// raised.
type DeadLetter struct {
	ID            int64      `json:"id"`
	Consumer      string     `json:"consumer"`
	Channel       string     `json:"channel"`
	MessageID     string     `json:"message_id,omitempty"`
	Key           string     `json:"key,omitempty"`
	CorrelationID string     `json:"correlation_id,omitempty"`
	CausationID   string     `json:"causation_id,omitempty"`
	OccurredAt    *time.Time `json:"occurred_at,omitempty"`
	Payload       string     `json:"payload"`
	Reason        string     `json:"reason"`
	Attempts      int        `json:"attempts,omitempty"`
	// FirstFailedAt is when the message first failed, as far as the
	// consumer knows (it forgets across a restart); FailedAt when it was
	// given up on.
	FirstFailedAt *time.Time `json:"first_failed_at,omitempty"`
	FailedAt      time.Time  `json:"failed_at"`
	Fingerprint   string     `json:"fingerprint,omitempty"`
	// Group is computed when read (GroupID), not stored.
	Group string `json:"group,omitempty"`
	// State is DeadLetterFailed, DeadLetterRetried or DeadLetterArchived.
	State string `json:"state,omitempty"`
	// Failures counts the times the message was dead-lettered (from 1).
	Failures int `json:"failures,omitempty"`
	// Retried counts the times it was sent again, the last at RetriedAt.
	Retried    int        `json:"retried,omitempty"`
	RetriedAt  *time.Time `json:"retried_at,omitempty"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
	ArchivedBy string     `json:"archived_by,omitempty"`
}

// DeadLetterChannel is where dead letters are published, as JSON
// DeadLetter records, for whoever watches a broker rather than a database.
const DeadLetterChannel = "dead_letters"

// DeadLetterEnvelope returns the envelope that publishes d on
// DeadLetterChannel.
func DeadLetterEnvelope(d DeadLetter) Envelope {
	payload, _ := json.Marshal(d)
	return Envelope{
		ID:            NewID(),
		Channel:       DeadLetterChannel,
		Key:           d.Channel,
		CorrelationID: cmp.Or(d.CorrelationID, d.MessageID),
		CausationID:   d.MessageID,
		OccurredAt:    d.FailedAt,
		Payload:       payload,
	}
}

// DeadLetters keeps messages that could not be handled: in a table, and
// published on DeadLetterChannel through the outbox. A dead letter added
// for a message the same consumer dead-lettered before (its MessageID) is
// that dead letter failing again: it is failed again, with the new reason,
// its attempts added and its Failures raised, not a second row.
type DeadLetters interface {
	AddDeadLetter(ctx context.Context, d DeadLetter) error
	DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error)
}

// Permanent marks err as one that no retry will mend, an invalid message
// (fail.Invalid): it goes straight to the dead letters.
func Permanent(err error) error { return fail.Wrap(fail.Invalid, err) }

// IsPermanent reports whether no retry will mend err, so that the message
// goes to the dead letters at once: its kind is one a retry is refused the
// same way (fail.Retryable: invalid input, not found, conflict), and it is
// not an outcome (fail.IsSettled). This is the one mapping from an error
// to "dead letter now" for every service.
func IsPermanent(err error) bool {
	return err != nil && !fail.IsSettled(err) && !fail.Retryable(err)
}

// Backoff spaces the deliveries of a failing message: Initial before the
// second, doubling up to Max.
type Backoff struct {
	Initial, Max time.Duration
}

// DefaultBackoff is the consumers' backoff unless they name another.
var DefaultBackoff = Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second}

// Delay returns the wait before the delivery after attempt (from 1).
func (b Backoff) Delay(attempt int) time.Duration {
	if b.Initial <= 0 {
		b = DefaultBackoff
	}
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, max(b.Max, b.Initial))
}

// redeliver is a handler's request to hand its message again after a
// delay: the nack of every transport.
type redeliver struct {
	err   error
	after time.Duration
}

func (r *redeliver) Error() string { return r.err.Error() }
func (r *redeliver) Unwrap() error { return r.err }

// Redeliver returns err as a request to hand the message again after the
// delay after; nil stays nil.
func Redeliver(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &redeliver{err, after}
}

// RedeliveryDelay returns how long a transport waits before handing again
// a message its handler failed with err, at attempt: the delay the
// consumer pipeline asked for (Redeliver), else fallback's (a handler of
// the transport's own tests).
func RedeliveryDelay(err error, attempt int, fallback Backoff) time.Duration {
	var r *redeliver
	if errors.As(err, &r) {
		return r.after
	}
	return fallback.Delay(attempt)
}
