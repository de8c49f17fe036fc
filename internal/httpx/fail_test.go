package httpx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/httpx"
)

// Fail answers every service's errors by their kind, in one style.
func TestFail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		status     int
		message    string
		retryAfter bool
	}{
		{"invalid", fail.Errorf(fail.Invalid, "qty must be a positive integer, got 0"), 400, "Qty must be a positive integer, got 0", false},
		{"not found", fail.Errorf(fail.NotFound, "no order %s", "o1"), 404, "No order o1", false},
		{"conflict", fmt.Errorf("%w for sku LAMP", fail.Outcome(fail.Conflict, "Out of stock")), 409, "Out of stock for sku LAMP", false},
		{"unavailable", fail.Wrap(fail.Unavailable, errors.New("changed concurrently")), 503, "Changed concurrently", true},
		{"internal: no details", errors.New("disk on fire"), 500, "Internal error", false},
		{"too large", fmt.Errorf("body: %w", httpx.ErrTooLarge), 413, "Body: request body larger than 1 MiB", false},
		{"cancelled", context.Canceled, 499, "Request cancelled", false},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			httpx.Fail(w, httptest.NewRequest(http.MethodGet, "/x", nil), log, tt.err)
			var body httpx.Message
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if w.Code != tt.status || body.Message != tt.message {
				t.Errorf("Fail = %d %q, want %d %q", w.Code, body.Message, tt.status, tt.message)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.retryAfter {
				t.Errorf("Retry-After set = %v, want %v", got, tt.retryAfter)
			}
		})
	}
}
