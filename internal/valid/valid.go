// Package valid checks the values every context takes from outside (ids,
// quantities), and names what is wrong with them. Pure Go: the domains use
// it.
package valid

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid matches every validation failure (errors.Is).
var ErrInvalid = errors.New("invalid")

// Error says what is wrong with a command or a value.
type Error struct{ Reason string }

func (e *Error) Error() string        { return e.Reason }
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Invalid returns an Error with the formatted reason.
func Invalid(format string, args ...any) error {
	return &Error{fmt.Sprintf(format, args...)}
}

// MaxRefLen bounds every identifier (order id, sku, batch ref, customer).
const MaxRefLen = 255

// Ref reports what is wrong with an identifier: empty, too long, not UTF-8,
// or holding control characters.
func Ref(field, v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return Invalid("%s must not be empty", field)
	case len(v) > MaxRefLen:
		return Invalid("%s is longer than %d bytes", field, MaxRefLen)
	case !utf8.ValidString(v):
		return Invalid("%s is not valid UTF-8", field)
	case strings.ContainsFunc(v, unicode.IsControl):
		return Invalid("%s must not contain control characters", field)
	}
	return nil
}

// Positive reports a quantity that is not above zero.
func Positive(field string, v int) error {
	if v <= 0 {
		return Invalid("%s must be a positive integer, got %d", field, v)
	}
	return nil
}

// Email reports what is wrong with an e-mail address, loosely: an @ with
// text on both sides (user@localhost included), no spaces or list
// separators, within the bounds of Ref.
func Email(field, v string) error {
	if err := Ref(field, v); err != nil {
		return err
	}
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || strings.ContainsAny(v, " ,;<>\"") {
		return Invalid("%s must be an e-mail address, got %q", field, v)
	}
	return nil
}

// First returns the first non-nil error.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Requests that are well formed may still ask for what cannot be: these
// match the errors that say so (errors.Is), whichever context raised them.
var (
	// ErrNotFound: the request names something that does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the state of what the request names forbids it (409).
	ErrConflict = errors.New("conflict")
)

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// Conflict returns an error matching ErrConflict, with the formatted reason.
func Conflict(format string, args ...any) error {
	return &kindError{ErrConflict, fmt.Sprintf(format, args...)}
}

// NotFound returns an error matching ErrNotFound, with the formatted reason.
func NotFound(format string, args ...any) error {
	return &kindError{ErrNotFound, fmt.Sprintf(format, args...)}
}
