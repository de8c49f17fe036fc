package messaging

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// RetryOptions are how dead letters are sent again.
type RetryOptions struct {
	// DryRun says what would be sent, to whom and in which order, and
	// sends nothing.
	DryRun bool
	// Force sends again dead letters already retried or archived.
	Force bool
}

// The outcomes of a dead letter sent again.
const (
	RetryHandled  = "handled"   // the service handled it
	RetryFailed   = "failed"    // it failed again: a dead letter again, its failures raised
	RetryWouldRun = "would_run" // a dry run: it would be sent
)

// RetryResult is what became of one dead letter sent again.
type RetryResult struct {
	Service   string `json:"service"`
	ID        int64  `json:"id"`
	MessageID string `json:"message_id"`
	Channel   string `json:"channel"`
	Key       string `json:"key,omitempty"`
	Outcome   string `json:"outcome"`
	// Reason is why it failed again.
	Reason string `json:"reason,omitempty"`
	// Failures and Retried are the dead letter's counts afterwards.
	Failures int `json:"failures,omitempty"`
	Retried  int `json:"retried,omitempty"`
}

// consoleStore returns the runtime's store as the dead-letter console
// needs it.
func (r *Runtime) consoleStore() (DeadLetterStore, error) {
	s, ok := r.cfg.Store.(DeadLetterStore)
	if !ok {
		return nil, fmt.Errorf("%s: its store keeps no dead-letter console", r.cfg.Name)
	}
	return s, nil
}

// FindDeadLetters returns the service's dead letters q selects, oldest
// first.
func (r *Runtime) FindDeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, error) {
	s, err := r.consoleStore()
	if err != nil {
		return nil, err
	}
	return s.FindDeadLetters(ctx, q)
}

// RetryDeadLetters sends the dead letters ids again to the consumer of the
// service that failed them, in this process: each goes through the
// consumer's pipeline again as the message it was (its id, key,
// correlation), never through the broker, so no other consumer group sees
// it again. They are sent in the order their messages were raised (the
// order per key), each marked retried first; one that fails again is the
// same dead letter again, its failures raised. An unknown id is NotFound;
// one already retried or archived is a Conflict unless opts.Force; then
// nothing is sent.
func (r *Runtime) RetryDeadLetters(ctx context.Context, ids []int64, opts RetryOptions) ([]RetryResult, error) {
	s, err := r.consoleStore()
	if err != nil {
		return nil, err
	}
	refused := func(d DeadLetter) bool { return !opts.Force && d.State != DeadLetterFailed }
	list, err := r.selectDeadLetters(ctx, s, ids, refused, "sent again without force")
	if err != nil {
		return nil, err
	}
	for _, d := range list {
		if d.Consumer != r.Consumer.Name {
			return nil, fail.Errorf(fail.Invalid, "dead letter %d of %s failed in %s's own event handlers: it cannot be sent again yet", d.ID, r.cfg.Name, d.Consumer)
		}
	}
	SortForRetry(list)
	out := make([]RetryResult, 0, len(list))
	for _, d := range list {
		res := RetryResult{Service: r.cfg.Name, ID: d.ID, MessageID: d.MessageID, Channel: d.Channel, Key: d.Key, Outcome: RetryWouldRun,
			Failures: d.Failures, Retried: d.Retried}
		if opts.DryRun {
			out = append(out, res)
			continue
		}
		if err := s.MarkDeadLettersRetried(ctx, []int64{d.ID}, time.Now().UTC()); err != nil {
			return out, err
		}
		res.Retried++
		res.Outcome = RetryHandled
		if err := r.Consumer.Redrive(ctx, d); err != nil {
			res.Outcome, res.Reason = RetryFailed, err.Error()
			res.Failures++
		}
		out = append(out, res)
	}
	return out, nil
}

// DiscardDeadLetters archives the dead letters ids, by whom: they are
// kept, out of the failed ones (a retried one too). An unknown id is
// NotFound, and nothing is archived; archiving one archived already is a
// Conflict.
func (r *Runtime) DiscardDeadLetters(ctx context.Context, ids []int64, by string) ([]DeadLetter, error) {
	s, err := r.consoleStore()
	if err != nil {
		return nil, err
	}
	archived := func(d DeadLetter) bool { return d.State == DeadLetterArchived }
	list, err := r.selectDeadLetters(ctx, s, ids, archived, "archived again")
	if err != nil {
		return nil, err
	}
	if err := s.ArchiveDeadLetters(ctx, ids, by, time.Now().UTC()); err != nil {
		return nil, err
	}
	return s.FindDeadLetters(ctx, DeadLetterQuery{IDs: ids, Limit: len(list)})
}

// selectDeadLetters returns the dead letters ids, all of them, failing
// when one is unknown (NotFound) or refused (Conflict).
func (r *Runtime) selectDeadLetters(ctx context.Context, s DeadLetterStore, ids []int64, refused func(DeadLetter) bool, what string) ([]DeadLetter, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := s.FindDeadLetters(ctx, DeadLetterQuery{IDs: ids})
	if err != nil {
		return nil, err
	}
	if len(list) < len(ids) {
		found := map[int64]bool{}
		for _, d := range list {
			found[d.ID] = true
		}
		var missing []string
		for _, id := range ids {
			if !found[id] {
				missing = append(missing, fmt.Sprint(id))
			}
		}
		return nil, fail.Errorf(fail.NotFound, "%s has no dead letter %s", r.cfg.Name, strings.Join(missing, ", "))
	}
	var done []string
	for _, d := range list {
		if refused(d) {
			done = append(done, fmt.Sprintf("%d (%s)", d.ID, d.State))
		}
	}
	if len(done) > 0 {
		return nil, fail.Errorf(fail.Conflict, "%s: dead letter %s cannot be %s", r.cfg.Name, strings.Join(done, ", "), what)
	}
	return list, nil
}

// SortForRetry puts dead letters in the order their messages were raised,
// so that the messages of one key are sent again in their original order:
// by when raised (when failing, for those kept without it), then by id.
func SortForRetry(list []DeadLetter) {
	at := func(d DeadLetter) time.Time {
		if d.OccurredAt != nil {
			return *d.OccurredAt
		}
		if d.FirstFailedAt != nil {
			return *d.FirstFailedAt
		}
		return d.FailedAt
	}
	slices.SortStableFunc(list, func(a, b DeadLetter) int {
		return cmp.Or(at(a).Compare(at(b)), cmp.Compare(a.ID, b.ID))
	})
}
