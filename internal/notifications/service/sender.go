package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/notifications/domain"
)

// Email is an e-mail as the sender hands it to a Mailer.
type Email struct {
	// ID identifies the e-mail: it is the notification's, the same at every
	// attempt, so that a Mailer can derive a Message-ID from it by which a
	// copy sent twice (by an attempt whose success was not recorded) is
	// recognised.
	ID      string
	To      []string
	Subject string
	Body    string
	// Date is when the e-mail is sent.
	Date time.Time
}

// Mailer sends e-mail (adapters/smtp; a fake in tests).
type Mailer interface {
	// Send sends e; its error wraps ErrRejected when the mail server
	// refused e for good.
	Send(ctx context.Context, e Email) error
}

// ErrRejected matches the errors of a Mailer whose server refused an
// e-mail for good (an SMTP 5xx reply): the notification is not tried
// again.
var ErrRejected = errors.New("e-mail rejected")

// Defaults of a Sender.
const (
	DefaultPoll  = 5 * time.Second
	DefaultLease = 5 * time.Minute
)

// sendBatch bounds the pending notifications one pass reads, the oldest
// first.
const sendBatch = 100

// Sender sends the pending notifications of a store through a Mailer:
// when woken after a notification is stored, and every Poll anyway; a
// failed attempt is retried after its Policy's delay. Each attempt first
// claims the notification in the store, so that two senders on one
// database (two instances of the service) do not send it both.
type Sender struct {
	// Policy bounds and spaces the attempts (default domain.DefaultRetry).
	Policy domain.RetryPolicy
	// Poll is the longest wait between two passes.
	Poll time.Duration
	// Lease is how long an attempt holds its notification: another pass
	// sends it again after that, if the attempt recorded no outcome (its
	// process died). It must exceed the Mailer's timeout.
	Lease time.Duration
	// Now tells the time (tests set it).
	Now func() time.Time

	store  docstore.Store
	mailer Mailer
	log    *slog.Logger
	wake   chan struct{}
}

// NewSender returns a sender of the notifications of store through mailer.
func NewSender(store docstore.Store, mailer Mailer, log *slog.Logger) *Sender {
	return &Sender{
		Policy: domain.DefaultRetry,
		Poll:   DefaultPoll,
		Lease:  DefaultLease,
		Now:    func() time.Time { return time.Now().UTC() },
		store:  store,
		mailer: mailer,
		log:    log,
		wake:   make(chan struct{}, 1),
	}
}

// Wake makes the running sender look for pending notifications now.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default: // a pass is due already
	}
}

// Run sends pending notifications until ctx is done, and then returns
// ctx's error.
func (s *Sender) Run(ctx context.Context) error {
	for {
		next, err := s.SendDue(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.log.WarnContext(ctx, "sending notifications", "err", err)
		}
		wait := s.Poll
		if !next.IsZero() {
			wait = max(min(wait, next.Sub(s.Now())), 0)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// SendDue makes one attempt at sending each pending notification that is
// due, and returns when the next of those that are not will be (the zero
// time if none). Failures to send are recorded in the notifications; its
// error is the store's.
func (s *Sender) SendDue(ctx context.Context) (time.Time, error) {
	docs, err := s.store.Find(ctx, docstore.Query{Kind: kind, Index: domain.StatusPending, Limit: sendBatch})
	if err != nil {
		return time.Time{}, fmt.Errorf("finding pending notifications: %w", err)
	}
	pending, err := docstore.Decode[*domain.Notification](docs)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	later := func(n *domain.Notification) {
		if n != nil && n.Status == domain.StatusPending && n.NextAttemptAt != nil && (next.IsZero() || n.NextAttemptAt.Before(next)) {
			next = *n.NextAttemptAt
		}
	}
	var errs []error
	for _, n := range pending {
		if !n.Due(s.Now()) {
			later(n)
			continue
		}
		after, err := s.send(ctx, n.ID)
		if ctx.Err() != nil {
			return next, ctx.Err()
		}
		if err != nil {
			errs = append(errs, err)
		}
		later(after)
	}
	return next, errors.Join(errs...)
}

// send makes an attempt at sending the notification id, if it is due still,
// and returns it as the attempt left it (nil when there was none).
func (s *Sender) send(ctx context.Context, id string) (*domain.Notification, error) {
	var n *domain.Notification
	claimed := false
	err := s.update(ctx, id, func(m *domain.Notification) bool {
		n, claimed = nil, false
		if !m.Due(s.Now()) {
			return false // sent or claimed meanwhile
		}
		n, claimed = m, m.Claim(s.Now().Add(s.Lease), s.Policy)
		return true
	})
	if err != nil || !claimed {
		return n, err
	}
	sendErr := s.mailer.Send(ctx, Email{ID: n.ID, To: n.To, Subject: n.Subject, Body: n.Body, Date: s.Now()})
	if sendErr != nil && ctx.Err() != nil {
		// Stopped: the lease runs out, and a later pass sends it.
		return n, ctx.Err()
	}
	// The outcome is recorded even as the sender stops.
	err = s.update(context.WithoutCancel(ctx), id, func(m *domain.Notification) bool {
		n = m
		if sendErr == nil {
			m.Sent(s.Now())
		} else {
			m.NotSent(sendErr.Error(), errors.Is(sendErr, ErrRejected), s.Now(), s.Policy)
		}
		return true
	})
	if sendErr != nil {
		s.log.WarnContext(ctx, "notification not sent", "id", id, "attempt", n.Attempts, "status", n.Status, "err", sendErr)
	}
	return n, err
}

// update applies fn to the stored notification id, and stores it if fn
// says it changed.
func (s *Sender) update(ctx context.Context, id string, fn func(*domain.Notification) bool) error {
	_, err := s.store.Transact(ctx, func(ctx context.Context, tx docstore.Tx) error {
		n, version, err := docstore.Load[*domain.Notification](ctx, tx, kind, id)
		if err != nil {
			return err
		}
		if !fn(n) {
			return nil
		}
		return docstore.Save(ctx, tx, kind, id, version, n.Status, n)
	})
	if err != nil {
		return fmt.Errorf("notification %s: %w", id, err)
	}
	return nil
}
