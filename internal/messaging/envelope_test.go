package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/stockflow/stockflow/internal/messaging"
)

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// idMillis returns the unix milliseconds a UUIDv7 id carries.
func idMillis(t *testing.T, id string) int64 {
	t.Helper()
	hex := id[0:8] + id[9:13]
	ms, err := strconv.ParseInt(hex, 16, 64)
	if err != nil {
		t.Fatalf("id %q: timestamp %q: %v", id, hex, err)
	}
	return ms
}

func TestNewIDFormat(t *testing.T) {
	for range 1000 {
		before := time.Now().UnixMilli()
		id := messaging.NewID()
		after := time.Now().UnixMilli()

		if len(id) != 36 {
			t.Fatalf("NewID() = %q: length %d, want 36", id, len(id))
		}
		if !uuidV7.MatchString(id) {
			t.Fatalf("NewID() = %q: not a lowercase UUIDv7 (version nibble 7, variant 10xx)", id)
		}
		for _, i := range []int{8, 13, 18, 23} {
			if id[i] != '-' {
				t.Fatalf("NewID() = %q: byte %d is %q, want '-'", id, i, id[i])
			}
		}
		if id[14] != '7' {
			t.Fatalf("NewID() = %q: version nibble %q, want '7'", id, id[14])
		}
		if v := id[19]; v != '8' && v != '9' && v != 'a' && v != 'b' {
			t.Fatalf("NewID() = %q: variant nibble %q, want one of 8, 9, a, b", id, v)
		}

		// An independent parser agrees.
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("uuid.Parse(%q): %v", id, err)
		}
		if u.Version() != 7 {
			t.Fatalf("uuid.Parse(%q).Version() = %d, want 7", id, u.Version())
		}
		if u.Variant() != uuid.RFC4122 {
			t.Fatalf("uuid.Parse(%q).Variant() = %v, want RFC4122", id, u.Variant())
		}
		if u.String() != id {
			t.Fatalf("uuid round trip: %q != %q", u.String(), id)
		}

		// The timestamp is the time it was made.
		if ms := idMillis(t, id); ms < before || ms > after {
			t.Fatalf("NewID() = %q carries ms %d, want within [%d, %d]", id, ms, before, after)
		}
	}
}

func TestNewIDUnique(t *testing.T) {
	const n = 100_000
	seen := make(map[string]struct{}, n)
	for i := range n {
		id := messaging.NewID()
		if _, dup := seen[id]; dup {
			t.Fatalf("NewID() returned %q twice (after %d ids)", id, i)
		}
		seen[id] = struct{}{}
	}
}

func TestNewIDUniqueConcurrent(t *testing.T) {
	const workers, per = 8, 5000
	var mu sync.Mutex
	seen := make(map[string]struct{}, workers*per)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ids := make([]string, per)
			for i := range ids {
				ids[i] = messaging.NewID()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if _, dup := seen[id]; dup {
					t.Errorf("duplicate id %q across goroutines", id)
				}
				seen[id] = struct{}{}
			}
		})
	}
	wg.Wait()
	if len(seen) != workers*per {
		t.Errorf("got %d distinct ids, want %d", len(seen), workers*per)
	}
}

func TestNewIDSortsByMillisecond(t *testing.T) {
	// Ids made in a later millisecond sort after those of earlier ones.
	var ids []string
	for range 20 {
		ids = append(ids, messaging.NewID())
		start := time.Now().UnixMilli()
		for time.Now().UnixMilli() == start {
			time.Sleep(100 * time.Microsecond)
		}
	}
	for i := 1; i < len(ids); i++ {
		if !(ids[i-1] < ids[i]) {
			t.Errorf("id %d %q does not sort after id %d %q", i, ids[i], i-1, ids[i-1])
		}
		if idMillis(t, ids[i-1]) >= idMillis(t, ids[i]) {
			t.Errorf("id %d %q: ms %d not after %d", i, ids[i], idMillis(t, ids[i]), idMillis(t, ids[i-1]))
		}
	}

	// In a tight loop, the order of the timestamps never goes backwards, and
	// whenever the timestamp moves on, the id sorts after every earlier one.
	const n = 20_000
	tight := make([]string, n)
	for i := range tight {
		tight[i] = messaging.NewID()
	}
	maxSoFar := tight[0]
	for i := 1; i < n; i++ {
		prev, cur := idMillis(t, tight[i-1]), idMillis(t, tight[i])
		if cur < prev {
			t.Fatalf("id %d %q: ms %d before previous %d", i, tight[i], cur, prev)
		}
		if cur > prev && tight[i] <= maxSoFar {
			t.Fatalf("id %d %q made in a later ms does not sort after %q", i, tight[i], maxSoFar)
		}
		maxSoFar = max(maxSoFar, tight[i])
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	if got := messaging.MetaFrom(ctx); got != (messaging.Meta{}) {
		t.Errorf("MetaFrom(background) = %+v, want zero", got)
	}
	m := messaging.Meta{MessageID: "m", CorrelationID: "c", CausationID: "k", Consumer: "x"}
	if diff := cmp.Diff(m, messaging.MetaFrom(messaging.WithMeta(ctx, m))); diff != "" {
		t.Errorf("MetaFrom(WithMeta(m)) (-want +got):\n%s", diff)
	}
	// A nested WithMeta replaces the outer one.
	inner := messaging.Meta{MessageID: "m2"}
	if diff := cmp.Diff(inner, messaging.MetaFrom(messaging.WithMeta(messaging.WithMeta(ctx, m), inner))); diff != "" {
		t.Errorf("nested WithMeta (-want +got):\n%s", diff)
	}
}

func TestStartFlow(t *testing.T) {
	tests := []struct {
		name        string
		correlation string
	}{
		{"new flow", ""},
		{"joins a given correlation", "corr-from-outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := messaging.MetaFrom(messaging.StartFlow(context.Background(), tt.correlation))
			if !uuidV7.MatchString(m.MessageID) {
				t.Fatalf("MessageID = %q, want a UUIDv7", m.MessageID)
			}
			want := messaging.Meta{MessageID: m.MessageID, CorrelationID: tt.correlation}
			if tt.correlation == "" {
				want.CorrelationID = m.MessageID
			}
			if diff := cmp.Diff(want, m); diff != "" {
				t.Errorf("StartFlow meta (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	if messaging.Permanent(nil) != nil {
		t.Errorf("Permanent(nil) != nil")
	}
	base := errors.New("no such sku")
	p := messaging.Permanent(base)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"permanent", p, true},
		{"wrapped permanent", fmt.Errorf("handling: %w", p), true},
		{"joined permanent", errors.Join(errBoom, p), true},
		{"wraps a plain error", fmt.Errorf("x: %w", base), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messaging.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if p.Error() != base.Error() {
		t.Errorf("Permanent(err).Error() = %q, want %q", p.Error(), base.Error())
	}
	if !errors.Is(p, base) {
		t.Errorf("errors.Is(Permanent(err), err) = false")
	}
}

// Ids made one after the other sort in the order they were made, also
// within one millisecond, and stay version-7 UUIDs.
func TestNewIDIsMonotonic(t *testing.T) {
	prev := messaging.NewID()
	for range 20000 {
		id := messaging.NewID()
		if id <= prev {
			t.Fatalf("NewID() = %s after %s: not greater", id, prev)
		}
		if id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("NewID() = %s: not a version-7, variant-1 UUID", id)
		}
		prev = id
	}
}
