package messaging

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// The states of a dead letter. A dead letter waits (failed) until an
// operator sends it again to the service that failed (retried) or puts it
// aside (archived); a retried message that fails again is failed again,
// the same dead letter, its Failures raised.
const (
	DeadLetterFailed   = "failed"
	DeadLetterRetried  = "retried"
	DeadLetterArchived = "archived"
)

// DeadLetterStore is the dead-letter table as the console sees it: the
// dead letters of one service, read, grouped, and marked retried or
// archived. Both stores of the messaging tables offer it.
type DeadLetterStore interface {
	DeadLetters
	// FindDeadLetters returns the dead letters q selects, oldest first,
	// each with its fingerprint (computed, for rows kept by versions that
	// did not store one).
	FindDeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, error)
	// MarkDeadLettersRetried marks the dead letters ids retried at: their
	// Retried count rises by one.
	MarkDeadLettersRetried(ctx context.Context, ids []int64, at time.Time) error
	// ArchiveDeadLetters marks the dead letters ids archived, by whom and
	// when.
	ArchiveDeadLetters(ctx context.Context, ids []int64, by string, at time.Time) error
}

// DeadLetterQuery selects dead letters. Empty fields select all; States
// empty selects the failed ones.
type DeadLetterQuery struct {
	IDs      []int64
	Consumer string
	Channel  string
	// Group is a group's id (DeadLetterGroup.ID).
	Group  string
	States []string
	// Limit bounds how many are returned (0: no bound); the newest are
	// kept.
	Limit int
}

// Selected returns the states q selects: the failed ones unless it names
// states, or ids (then any state).
func (q DeadLetterQuery) Selected() []string {
	switch {
	case len(q.States) > 0:
		return q.States
	case len(q.IDs) > 0:
		return []string{DeadLetterFailed, DeadLetterRetried, DeadLetterArchived}
	}
	return []string{DeadLetterFailed}
}

// Matches reports whether d is one q selects, but for its state and ids:
// what a store filters in Go rather than in SQL (the group, computed from
// the fingerprint).
func (q DeadLetterQuery) Matches(d DeadLetter) bool {
	return (q.Consumer == "" || d.Consumer == q.Consumer) &&
		(q.Channel == "" || d.Channel == q.Channel) &&
		(q.Group == "" || d.Group == q.Group)
}

// Finish completes the dead letters a store read for q, oldest first: it
// computes the fingerprints rows of earlier versions lack and each group,
// keeps those q's group selects, and the newest q.Limit.
func (q DeadLetterQuery) Finish(list []DeadLetter) []DeadLetter {
	out := list[:0]
	for _, d := range list {
		if d.Fingerprint == "" {
			d.Fingerprint = Fingerprint("", d.Reason)
		}
		d.Group = GroupID(d.Consumer, d.Channel, d.Fingerprint)
		if d.State == "" {
			d.State = DeadLetterFailed
		}
		if d.Failures == 0 {
			d.Failures = 1
		}
		if q.Matches(d) {
			out = append(out, d)
		}
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out
}

// DeadLetterGroup is the dead letters of one service and channel that
// failed for one reason (one fingerprint).
type DeadLetterGroup struct {
	ID          string `json:"id"`
	Consumer    string `json:"consumer"`
	Channel     string `json:"channel"`
	Fingerprint string `json:"fingerprint"`
	// Example is the reason of the latest of them, as it was.
	Example        string    `json:"example"`
	Count          int       `json:"count"`
	FirstFailureAt time.Time `json:"first_failure_at"`
	LastFailureAt  time.Time `json:"last_failure_at"`
}

// GroupDeadLetters groups list by service, channel and fingerprint, the
// largest group first.
func GroupDeadLetters(list []DeadLetter) []DeadLetterGroup {
	byID := map[string]*DeadLetterGroup{}
	var order []string
	for _, d := range list {
		id := d.Group
		if id == "" {
			id = GroupID(d.Consumer, d.Channel, cmp.Or(d.Fingerprint, Fingerprint("", d.Reason)))
		}
		first := d.FailedAt
		if d.FirstFailedAt != nil && d.FirstFailedAt.Before(first) {
			first = *d.FirstFailedAt
		}
		g, ok := byID[id]
		if !ok {
			g = &DeadLetterGroup{ID: id, Consumer: d.Consumer, Channel: d.Channel,
				Fingerprint: cmp.Or(d.Fingerprint, Fingerprint("", d.Reason)), FirstFailureAt: first}
			byID[id] = g
			order = append(order, id)
		}
		g.Count++
		if first.Before(g.FirstFailureAt) {
			g.FirstFailureAt = first
		}
		if !d.FailedAt.Before(g.LastFailureAt) {
			g.LastFailureAt = d.FailedAt
			g.Example = d.Reason
		}
	}
	out := make([]DeadLetterGroup, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	slices.SortStableFunc(out, func(a, b DeadLetterGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), b.LastFailureAt.Compare(a.LastFailureAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// GroupID names the group of a service's dead letters on channel with
// fingerprint: 12 hex digits, stable across versions and databases.
func GroupID(consumer, channel, fingerprint string) string {
	h := sha256.Sum256([]byte(consumer + "\x00" + channel + "\x00" + fingerprint))
	return hex.EncodeToString(h[:6])
}

var (
	quoted  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'|` + "`[^`]*`")
	uuid    = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	withNum = regexp.MustCompile(`[\p{L}\p{N}_.\-/#+]*\p{N}[\p{L}\p{N}_.\-/#+]*`)
	spaces  = regexp.MustCompile(`\s+`)
)

// Fingerprint returns what the reasons of one cause share: the error's
// kind (when known), then its message with quoted strings, UUIDs and
// every word that holds a digit (ids, refs, numbers) replaced by a
// placeholder. "Unknown batch b-17" and "Unknown batch b-18" share one.
func Fingerprint(kind, reason string) string {
	s := quoted.ReplaceAllString(reason, "?")
	s = uuid.ReplaceAllString(s, "<id>")
	s = withNum.ReplaceAllString(s, "#")
	s = strings.TrimSpace(spaces.ReplaceAllString(s, " "))
	if len(s) > 500 {
		s = strings.ToValidUTF8(s[:500], "")
	}
	if kind != "" {
		return kind + ": " + s
	}
	return s
}

// FingerprintOf returns the fingerprint of err, its kind first.
func FingerprintOf(err error) string {
	return Fingerprint(fail.KindOf(err).String(), err.Error())
}
