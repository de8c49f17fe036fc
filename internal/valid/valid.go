// Package valid checks the values every context takes from outside (ids,
// quantities), and names what is wrong with them. Pure Go: the domains use
// it.
package valid

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/stockflow/stockflow/internal/fail"
)

// MaxRefLen bounds every identifier (order id, sku, batch ref, customer).
const MaxRefLen = 255

// Ref reports what is wrong with an identifier: empty, too long, not UTF-8,
// or holding control characters.
func Ref(field, v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return fail.Errorf(fail.Invalid, "%s must not be empty", field)
	case len(v) > MaxRefLen:
		return fail.Errorf(fail.Invalid, "%s is longer than %d bytes", field, MaxRefLen)
	case !utf8.ValidString(v):
		return fail.Errorf(fail.Invalid, "%s is not valid UTF-8", field)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fail.Errorf(fail.Invalid, "%s must not contain control characters", field)
	}
	return nil
}

// Positive reports a quantity that is not above zero.
func Positive(field string, v int) error {
	if v <= 0 {
		return fail.Errorf(fail.Invalid, "%s must be a positive integer, got %d", field, v)
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
		return fail.Errorf(fail.Invalid, "%s must be an e-mail address, got %q", field, v)
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
