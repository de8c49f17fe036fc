package messaging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// marksStore records the marks of the relay's outbox; the rest of Store
// is not used.
type marksStore struct {
	Store
	published, done [][]string
	fail            error
}

func (s *marksStore) MarkPublished(_ context.Context, ids []string) error {
	s.published = append(s.published, ids)
	return s.fail
}

func (s *marksStore) MarkDone(_ context.Context, ids []string) error {
	s.done = append(s.done, ids)
	return s.fail
}

// The relay records as done what the bus dispatched and the dispatch log
// holds still; the rest as published; the dispatch log then writes only
// what the relay left it.
func TestRelayOutboxMarks(t *testing.T) {
	tests := []struct {
		name                  string
		dispatched, published []string
		fail                  error
		wantPublished         [][]string
		wantDone              [][]string
		wantLeft              []string // in the dispatch log
	}{
		{"none dispatched", []string{"x"}, []string{"a", "b"}, nil, [][]string{{"a", "b"}}, nil, []string{"x"}},
		{"all dispatched", []string{"a", "x", "b"}, []string{"a", "b"}, nil, nil, [][]string{{"a", "b"}}, []string{"x"}},
		{"some dispatched", []string{"b"}, []string{"a", "b", "c"}, nil, [][]string{{"a", "c"}}, [][]string{{"b"}}, []string{}},
		{"an id dispatched twice (a recovery)", []string{"a", "a"}, []string{"a", "b"}, nil, [][]string{{"b"}}, [][]string{{"a", "a"}}, []string{}},
		{"the store fails: the dispatch log keeps them", []string{"b"}, []string{"a", "b"}, errors.New("down"), [][]string{{"a"}}, nil, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &marksStore{fail: tt.fail}
			log := NewBufferedDispatchLog(store, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
			log.MarkDispatched(context.Background(), tt.dispatched)
			err := relayOutbox{store, log}.MarkPublished(context.Background(), tt.published)
			if (err != nil) != (tt.fail != nil) {
				t.Fatalf("MarkPublished: %v, want failure %v", err, tt.fail)
			}
			if diff := cmp.Diff(tt.wantPublished, store.published); diff != "" {
				t.Errorf("marked published (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDone, store.done); diff != "" && tt.fail == nil {
				t.Errorf("marked done (-want +got):\n%s", diff)
			}
			left := log.Take(append(append([]string{}, tt.dispatched...), tt.published...))
			if left == nil {
				left = []string{}
			}
			if diff := cmp.Diff(tt.wantLeft, left); diff != "" {
				t.Errorf("left in the dispatch log (-want +got):\n%s", diff)
			}
		})
	}
}
