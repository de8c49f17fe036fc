// Package fail is stockflow's one error taxonomy. Every error a service
// returns on purpose carries a Kind: what went wrong, in terms a caller
// can act on. Errors are matched with errors.Is against a Kind
// (errors.Is(err, fail.NotFound)) or against a sentinel made with New.
//
// Two mappings read the kind, once for every service: the HTTP adapter's
// (invalid input 400, not found 404, conflict 409, unavailable 503,
// internal 500; see httpx.Fail) and the consumer's (invalid input and
// requests naming what does not exist and conflicts go to the dead
// letters at once, since retrying them is refused the same way; the
// others are retried, then dead-lettered; see messaging.Consumer).
// Adding an error to a service touches neither.
//
// Pure Go: the domains use it.
package fail

import (
	"context"
	"errors"
	"fmt"
)

// Kind is what went wrong. A Kind is an error itself, so that
// errors.Is(err, fail.Conflict) reports whether err is of that kind.
type Kind uint8

const (
	// Internal: a fault of stockflow or of what it runs on; the default of
	// an error that names no kind.
	Internal Kind = iota
	// Invalid: the request or message is malformed or breaks a rule of its
	// own (an empty sku, a quantity of zero).
	Invalid
	// NotFound: the request names something that does not exist (yet).
	NotFound
	// Conflict: the state of what the request names forbids it (the order
	// is dispatched; the batch exists already; no stock is left).
	Conflict
	// Unavailable: transient; the same request may succeed later (a
	// database or broker away, a transaction that kept losing races).
	Unavailable
)

var names = [...]string{"internal", "invalid", "not found", "conflict", "unavailable"}

// String returns the kind's name.
func (k Kind) String() string {
	if int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error implements error, so that a Kind can be the target of errors.Is.
func (k Kind) Error() string { return k.String() }

// Error is an error of a kind, with a message for whoever made the
// request. It may wrap a cause.
type Error struct {
	Kind Kind
	// Settled marks an outcome rather than a failure: the request was
	// carried out and its events say how it ended (an allocation that
	// found no stock raised out_of_stock). An HTTP caller sees the kind; a
	// consumer counts the message as handled.
	Settled bool
	msg     string
	cause   error
}

func (e *Error) Error() string {
	if e.cause != nil && e.msg == "" {
		return e.cause.Error()
	}
	return e.msg
}

// Unwrap returns the cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is e's kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// New returns an error of kind with message msg: a sentinel to declare
// once (var ErrOutOfStock = fail.New(fail.Conflict, "out of stock")) and
// wrap with context (fmt.Errorf("sku %s: %w", sku, ErrOutOfStock)).
func New(kind Kind, msg string) error { return &Error{Kind: kind, msg: msg} }

// Errorf returns an error of kind with the formatted message; %w wraps a
// cause as fmt.Errorf does.
func Errorf(kind Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, msg: err.Error(), cause: errors.Unwrap(err)}
}

// Wrap gives err the kind, keeping its message and its chain; nil stays
// nil.
func Wrap(kind Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, cause: err}
}

// Outcome returns a settled error of kind (see Error.Settled).
func Outcome(kind Kind, msg string) error { return &Error{Kind: kind, Settled: true, msg: msg} }

// KindOf returns the kind of err: the first one its chain names. A
// cancelled or timed-out context is Unavailable; anything else Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var k Kind
	if errors.As(err, &k) {
		return k
	}
	for _, k := range []Kind{Invalid, NotFound, Conflict, Unavailable} {
		if errors.Is(err, k) { // an error type of its own that says its kind
			return k
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Unavailable
	}
	return Internal
}

// IsSettled reports whether err is an outcome rather than a failure.
func IsSettled(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Settled
}

// Retryable reports whether trying again what failed with err may
// succeed: its kind is Unavailable or Internal. An invalid request, one
// that names what does not exist or one that the state forbids is refused
// again, the same way, until something else changes.
func Retryable(err error) bool {
	switch KindOf(err) {
	case Invalid, NotFound, Conflict:
		return false
	}
	return true
}
