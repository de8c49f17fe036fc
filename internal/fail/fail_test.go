package fail_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stockflow/stockflow/internal/fail"
)

// decodeError is an error type of its own that says its kind through Is,
// as decode.Error does.
type decodeError struct{}

func (decodeError) Error() string        { return "bad json" }
func (decodeError) Is(target error) bool { return target == fail.Invalid }

func TestKinds(t *testing.T) {
	t.Parallel()
	sentinel := fail.New(fail.NotFound, "Unknown batch")
	outcome := fail.Outcome(fail.Conflict, "Out of stock")
	cause := errors.New("connection refused")
	tests := []struct {
		name      string
		err       error
		kind      fail.Kind
		settled   bool
		retryable bool
		text      string
	}{
		{"no kind", errors.New("disk on fire"), fail.Internal, false, true, "disk on fire"},
		{"a kind itself", fail.Conflict, fail.Conflict, false, false, "conflict"},
		{"a kind wrapped", fmt.Errorf("order o1: %w", fail.NotFound), fail.NotFound, false, false, "order o1: not found"},
		{"Errorf", fail.Errorf(fail.Invalid, "qty must be positive, got %d", 0), fail.Invalid, false, false, "qty must be positive, got 0"},
		{"Errorf with a cause", fail.Errorf(fail.Unavailable, "database: %w", cause), fail.Unavailable, false, true, "database: connection refused"},
		{"a sentinel wrapped", fmt.Errorf("%w b1", sentinel), fail.NotFound, false, false, "Unknown batch b1"},
		{"Wrap keeps the text", fail.Wrap(fail.Conflict, cause), fail.Conflict, false, false, "connection refused"},
		{"the outermost kind wins", fail.Wrap(fail.Unavailable, fmt.Errorf("x: %w", fail.NotFound)), fail.Unavailable, false, true, "x: not found"},
		{"an outcome", fmt.Errorf("%w for sku S", outcome), fail.Conflict, true, false, "Out of stock for sku S"},
		{"an error type of its own", fmt.Errorf("body: %w", decodeError{}), fail.Invalid, false, false, "body: bad json"},
		{"a joined error", errors.Join(errors.New("other"), fail.Invalid), fail.Invalid, false, false, "other\ninvalid"},
		{"a cancelled context", fmt.Errorf("query: %w", context.Canceled), fail.Unavailable, false, true, "query: context canceled"},
		{"a deadline", context.DeadlineExceeded, fail.Unavailable, false, true, "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := fail.KindOf(tt.err); got != tt.kind {
				t.Errorf("KindOf = %v, want %v", got, tt.kind)
			}
			byContext := errors.Is(tt.err, context.Canceled) || errors.Is(tt.err, context.DeadlineExceeded)
			if tt.kind != fail.Internal && !byContext && !errors.Is(tt.err, tt.kind) {
				t.Errorf("errors.Is(err, %v) = false", tt.kind)
			}
			if got := fail.IsSettled(tt.err); got != tt.settled {
				t.Errorf("IsSettled = %v, want %v", got, tt.settled)
			}
			if got := fail.Retryable(tt.err); got != tt.retryable {
				t.Errorf("Retryable = %v, want %v", got, tt.retryable)
			}
			if got := tt.err.Error(); got != tt.text {
				t.Errorf("Error() = %q, want %q", got, tt.text)
			}
		})
	}
}

func TestCauseIsKept(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection refused")
	for _, err := range []error{fail.Errorf(fail.Unavailable, "db: %w", cause), fail.Wrap(fail.Unavailable, cause)} {
		if !errors.Is(err, cause) {
			t.Errorf("errors.Is(%v, cause) = false", err)
		}
	}
	if fail.Wrap(fail.Invalid, nil) != nil {
		t.Error("Wrap(kind, nil) != nil")
	}
}

func TestKindNames(t *testing.T) {
	t.Parallel()
	for k, want := range map[fail.Kind]string{
		fail.Internal: "internal", fail.Invalid: "invalid", fail.NotFound: "not found",
		fail.Conflict: "conflict", fail.Unavailable: "unavailable", fail.Kind(42): "kind(42)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}
