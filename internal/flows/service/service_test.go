package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/messaging"
)

// fakeStore keeps what it is given, and answers every query with all of
// it.
type fakeStore struct {
	msgs      []domain.Message
	handlings []domain.Handling
	queries   []service.Query
	err       error
}

func (s *fakeStore) Recent(context.Context, service.RecentQuery) ([]domain.Flow, error) {
	return nil, s.err
}

func (s *fakeStore) Traffic(context.Context, time.Time) ([]domain.Traffic, error) { return nil, s.err }

func (s *fakeStore) Latest(context.Context, string) (*domain.Message, error) { return nil, s.err }

func (s *fakeStore) RecordMessage(_ context.Context, m domain.Message) error {
	if s.err != nil {
		return s.err
	}
	s.msgs = append(s.msgs, m)
	return nil
}

func (s *fakeStore) RecordHandling(_ context.Context, h domain.Handling) error {
	if s.err != nil {
		return s.err
	}
	s.handlings = append(s.handlings, h)
	return nil
}

func (s *fakeStore) Messages(_ context.Context, q service.Query) ([]domain.Message, []domain.Handling, error) {
	s.queries = append(s.queries, q)
	return s.msgs, s.handlings, s.err
}

func (s *fakeStore) Prune(context.Context, time.Time) (int, error) { return 0, nil }

var producers = map[string]string{"order_placed": "orders", "allocated": "allocation", "message_receipts": ""}

// paris is a zone other than UTC: the journal keeps times in UTC.
var paris = time.FixedZone("CEST", 2*60*60)

var when = time.Date(2024, 5, 1, 14, 0, 0, 123456000, paris)

func isUTC(t *testing.T, what string, at time.Time) {
	t.Helper()
	if at.Location() != time.UTC {
		t.Errorf("%s is in %v, want UTC", what, at.Location())
	}
}

func TestMessage(t *testing.T) {
	tests := []struct {
		name    string
		meta    messaging.Meta
		payload string
		want    domain.Message
	}{
		{
			name: "a service's message",
			meta: messaging.Meta{MessageID: "m2", Channel: "allocated", Key: "o1", CorrelationID: "c1", CausationID: "m1",
				OccurredAt: when, Consumer: "flows/allocated", Replayed: true},
			payload: `{"orderid":"o1","sku":"LAMP","qty":2,"batchref":"b1"}`,
			want: domain.Message{ID: "m2", Channel: "allocated", Key: "o1", CorrelationID: "c1", CausationID: "m1",
				OccurredAt: when, Payload: json.RawMessage(`{"orderid":"o1","sku":"LAMP","qty":2,"batchref":"b1"}`),
				Producer: "allocation", Keys: domain.Keys{Order: "o1", SKU: "LAMP", Batch: "b1", Qty: 2}},
		},
		{
			name:    "a message from outside",
			meta:    messaging.Meta{MessageID: "x1", Channel: "batch_created", CorrelationID: "x1", OccurredAt: when},
			payload: `{"ref":"b1","sku":"LAMP","qty":10}`,
			want: domain.Message{ID: "x1", Channel: "batch_created", CorrelationID: "x1", OccurredAt: when,
				Payload: json.RawMessage(`{"ref":"b1","sku":"LAMP","qty":10}`), Keys: domain.Keys{Batch: "b1", SKU: "LAMP", Qty: 10}},
		},
		{
			name:    "a channel several raise",
			meta:    messaging.Meta{MessageID: "r1", Channel: "message_receipts", Key: "m1", CorrelationID: "c1", CausationID: "m1"},
			payload: `{"message_id":"m1"}`,
			want: domain.Message{ID: "r1", Channel: "message_receipts", Key: "m1", CorrelationID: "c1", CausationID: "m1",
				Payload: json.RawMessage(`{"message_id":"m1"}`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			h := service.NewHandlers(st, producers, nil)
			raised, err := h.Message(messaging.WithMeta(context.Background(), tt.meta), service.Observed{Payload: json.RawMessage(tt.payload)})
			if err != nil || raised != nil {
				t.Fatalf("Message = %v, %v; want nothing raised, no error", raised, err)
			}
			if diff := cmp.Diff([]domain.Message{tt.want}, st.msgs); diff != "" {
				t.Errorf("journaled (-want +got):\n%s", diff)
			}
			if len(st.msgs) == 1 && !tt.want.OccurredAt.IsZero() {
				isUTC(t, "OccurredAt", st.msgs[0].OccurredAt)
			}
			if len(st.handlings) != 0 {
				t.Errorf("a message journaled handlings: %+v", st.handlings)
			}
		})
	}
}

// A message no service can read (a broker carries any bytes) is journaled
// as a JSON string, as a dead letter's is: a trace answers JSON.
func TestMessageKeepsAnUnreadablePayloadAsAString(t *testing.T) {
	st := &fakeStore{}
	h := service.NewHandlers(st, producers, nil)
	ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "m1", Channel: "order_placed", CorrelationID: "m1", OccurredAt: when})
	if _, err := h.Message(ctx, service.Observed{Payload: json.RawMessage(`not json {`)}); err != nil {
		t.Fatal(err)
	}
	if len(st.msgs) != 1 {
		t.Fatalf("journaled %d messages, want 1", len(st.msgs))
	}
	if got := string(st.msgs[0].Payload); got != `"not json {"` {
		t.Errorf("payload journaled as %s, want the JSON string \"not json {\"", got)
	}
}

func TestStoreErrorsReturned(t *testing.T) {
	boom := errors.New("disk full")
	h := service.NewHandlers(&fakeStore{err: boom}, producers, nil)
	ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "m1", Channel: "order_placed", CorrelationID: "m1"})
	if _, err := h.Message(ctx, service.Observed{Payload: json.RawMessage(`{}`)}); !errors.Is(err, boom) {
		t.Errorf("Message = %v, want %v", err, boom)
	}
	if _, err := h.Receipt(ctx, messaging.Receipt{MessageID: "m1", Handler: "orders.x", Outcome: "handled", At: when}); !errors.Is(err, boom) {
		t.Errorf("Receipt = %v, want %v", err, boom)
	}
	if _, err := h.DeadLetter(ctx, messaging.DeadLetter{MessageID: "m1", Consumer: "orders/x", Payload: "{}", FailedAt: when}); !errors.Is(err, boom) {
		t.Errorf("DeadLetter = %v, want %v", err, boom)
	}
}

func TestReceipt(t *testing.T) {
	tests := []struct {
		name    string
		receipt messaging.Receipt
		want    domain.Handling
	}{
		{
			name: "handled, raising",
			receipt: messaging.Receipt{MessageID: "m1", Channel: "order_placed", Handler: "allocation.reserve_cart_item",
				Outcome: messaging.OutcomeHandled, Raised: []string{"m2", "m3"}, At: when, DurationMS: 2.5},
			want: domain.Handling{MessageID: "m1", Service: "allocation", Handler: "allocation.reserve_cart_item",
				Outcome: domain.Handled, At: when, DurationMS: 2.5, Raised: []string{"m2", "m3"}},
		},
		{
			name: "a duplicate, of a consumer",
			receipt: messaging.Receipt{MessageID: "m1", Handler: "allocation/cart_item_added#LAMP",
				Outcome: messaging.OutcomeDuplicate, At: when, DurationMS: 0.125},
			want: domain.Handling{MessageID: "m1", Service: "allocation", Handler: "allocation/cart_item_added#LAMP",
				Outcome: domain.Duplicate, At: when, DurationMS: 0.125},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			h := service.NewHandlers(st, producers, nil)
			// The receipt's own envelope says nothing of the handling.
			ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "r1", Channel: messaging.ChannelReceipts,
				Key: "m1", CorrelationID: "c1", CausationID: "m1", OccurredAt: when.Add(time.Hour)})
			if _, err := h.Receipt(ctx, tt.receipt); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]domain.Handling{tt.want}, st.handlings); diff != "" {
				t.Errorf("journaled (-want +got):\n%s", diff)
			}
			if len(st.handlings) == 1 {
				isUTC(t, "At", st.handlings[0].At)
			}
			if len(st.msgs) != 0 {
				t.Errorf("a receipt journaled messages: %+v", st.msgs)
			}
		})
	}
}

func TestDeadLetter(t *testing.T) {
	failed := when.Add(time.Minute)
	tests := []struct {
		name     string
		letter   messaging.DeadLetter
		wantMsg  domain.Message
		wantHand domain.Handling
	}{
		{
			name: "a readable message",
			letter: messaging.DeadLetter{ID: 7, Consumer: "allocation/order_placed", Channel: "order_placed", MessageID: "m1",
				Key: "o1", CorrelationID: "c1", CausationID: "m0", OccurredAt: &when,
				Payload: `{"orderid":"o1","customer":"c9","lines":[{"sku":"LAMP","qty":1}]}`,
				Reason:  "out of stock", Attempts: 3, FirstFailedAt: &when, FailedAt: failed},
			wantMsg: domain.Message{ID: "m1", Channel: "order_placed", Key: "o1", CorrelationID: "c1", CausationID: "m0",
				OccurredAt: when, Payload: json.RawMessage(`{"orderid":"o1","customer":"c9","lines":[{"sku":"LAMP","qty":1}]}`),
				Producer: "orders", Keys: domain.Keys{Order: "o1", Customer: "c9", SKU: "LAMP", Qty: 1}},
			wantHand: domain.Handling{MessageID: "m1", Service: "allocation", Handler: "allocation/order_placed",
				Outcome: domain.DeadLettered, At: failed, Reason: "out of stock", Attempts: 3},
		},
		{
			name: "an unreadable message, its time and flow unknown",
			letter: messaging.DeadLetter{Consumer: "warehouse/batch_created#LAMP", Channel: "batch_created", MessageID: "x1",
				Payload: `{"ref": "b1", oops`, Reason: "decoding: invalid character", Attempts: 1, FailedAt: failed},
			wantMsg: domain.Message{ID: "x1", Channel: "batch_created", CorrelationID: "x1",
				Payload: json.RawMessage(`"{\"ref\": \"b1\", oops"`)},
			wantHand: domain.Handling{MessageID: "x1", Service: "warehouse", Handler: "warehouse/batch_created#LAMP",
				Outcome: domain.DeadLettered, At: failed, Reason: "decoding: invalid character", Attempts: 1},
		},
		{
			name: "an empty payload",
			letter: messaging.DeadLetter{Consumer: "crm/order_placed", Channel: "order_placed", MessageID: "e1",
				CorrelationID: "c1", Reason: "empty", FailedAt: failed},
			wantMsg: domain.Message{ID: "e1", Channel: "order_placed", CorrelationID: "c1", Payload: json.RawMessage(`""`), Producer: "orders"},
			wantHand: domain.Handling{MessageID: "e1", Service: "crm", Handler: "crm/order_placed",
				Outcome: domain.DeadLettered, At: failed, Reason: "empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			h := service.NewHandlers(st, producers, nil)
			if _, err := h.DeadLetter(context.Background(), tt.letter); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]domain.Message{tt.wantMsg}, st.msgs); diff != "" {
				t.Errorf("message journaled (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]domain.Handling{tt.wantHand}, st.handlings); diff != "" {
				t.Errorf("handling journaled (-want +got):\n%s", diff)
			}
			for _, m := range st.msgs {
				if !json.Valid(m.Payload) {
					t.Errorf("payload journaled is not JSON: %s", m.Payload)
				}
				if !m.OccurredAt.IsZero() {
					isUTC(t, "OccurredAt", m.OccurredAt)
				}
			}
			for _, h := range st.handlings {
				isUTC(t, "At", h.At)
			}
		})
	}
}

// A dead letter of no message (a consumer's own failure) names nothing to
// journal.
func TestDeadLetterOfNoMessage(t *testing.T) {
	st := &fakeStore{}
	h := service.NewHandlers(st, producers, nil)
	_, err := h.DeadLetter(context.Background(), messaging.DeadLetter{Consumer: "orders/x", Channel: "order_placed",
		Payload: `{"orderid":"o1"}`, Reason: "?", FailedAt: when})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.msgs) != 0 || len(st.handlings) != 0 {
		t.Errorf("journaled %+v, %+v; want nothing", st.msgs, st.handlings)
	}
}

func TestQueryValidate(t *testing.T) {
	tests := []struct {
		name string
		q    service.Query
		ok   bool
	}{
		{"message", service.Query{Message: "m1"}, true},
		{"correlation", service.Query{Correlation: "c1"}, true},
		{"order", service.Query{Order: "o1"}, true},
		{"batch", service.Query{Batch: "b1"}, true},
		{"limit 1", service.Query{Order: "o1", Limit: 1}, true},
		{"limit 10000", service.Query{Order: "o1", Limit: 10_000}, true},
		{"longest ref", service.Query{Order: strings.Repeat("o", 255)}, true},
		{"none", service.Query{}, false},
		{"only a limit", service.Query{Limit: 5}, false},
		{"order and batch", service.Query{Order: "o1", Batch: "b1"}, false},
		{"message and correlation", service.Query{Message: "m1", Correlation: "c1"}, false},
		{"all four", service.Query{Message: "m1", Correlation: "c1", Order: "o1", Batch: "b1"}, false},
		{"blank", service.Query{Order: "   "}, false},
		{"too long", service.Query{Message: strings.Repeat("x", 256)}, false},
		{"control character", service.Query{Batch: "b\n1"}, false},
		{"not UTF-8", service.Query{Correlation: "c\xff"}, false},
		{"negative limit", service.Query{Order: "o1", Limit: -1}, false},
		{"limit over 10000", service.Query{Order: "o1", Limit: 10_001}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			if tt.ok && err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.q, err)
			}
			if !tt.ok && !errors.Is(err, fail.Invalid) {
				t.Errorf("Validate(%+v) = %v, want fail.Invalid", tt.q, err)
			}
			// Trace refuses what Validate refuses, without reading.
			st := &fakeStore{msgs: []domain.Message{{ID: "m1", CorrelationID: "c1"}}}
			_, err = service.NewHandlers(st, nil, nil).Trace(context.Background(), tt.q)
			if !tt.ok && (!errors.Is(err, fail.Invalid) || len(st.queries) != 0) {
				t.Errorf("Trace(%+v) = %v after %d reads, want fail.Invalid and none", tt.q, err, len(st.queries))
			}
			if tt.ok && err != nil {
				t.Errorf("Trace(%+v) = %v", tt.q, err)
			}
		})
	}
}

func TestTrace(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	st := &fakeStore{
		msgs: []domain.Message{
			{ID: "m2", CorrelationID: "c1", CausationID: "m1", OccurredAt: at.Add(2 * time.Millisecond)},
			{ID: "m1", CorrelationID: "c1", OccurredAt: at},
		},
		handlings: []domain.Handling{{MessageID: "m1", Handler: "allocation.allocate", Outcome: domain.Handled, At: at.Add(time.Millisecond)}},
	}
	h := service.NewHandlers(st, producers, nil)
	nodes, err := h.Trace(context.Background(), service.Query{Order: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != "m1" || len(nodes[0].Children) != 1 || nodes[0].Children[0].ID != "m2" ||
		nodes[0].Children[0].HopMS != 2 || len(nodes[0].Handlings) != 1 {
		b, _ := json.Marshal(nodes)
		t.Errorf("Trace = %s, want m1 handled once, with m2 under it 2ms later", b)
	}
	if _, err := h.Trace(context.Background(), service.Query{Batch: "b1", Limit: 7}); err != nil {
		t.Fatal(err)
	}
	want := []service.Query{{Order: "o1", Limit: service.DefaultLimit}, {Batch: "b1", Limit: 7}}
	if diff := cmp.Diff(want, st.queries); diff != "" {
		t.Errorf("queries read (-want +got):\n%s", diff)
	}
}

func TestTraceOfNothing(t *testing.T) {
	for _, q := range []service.Query{{Message: "m1"}, {Correlation: "c1"}, {Order: "o1"}, {Batch: "b1"}} {
		_, err := service.NewHandlers(&fakeStore{}, producers, nil).Trace(context.Background(), q)
		if !errors.Is(err, fail.NotFound) {
			t.Errorf("Trace(%+v) of an empty journal = %v, want fail.NotFound", q, err)
			continue
		}
		name := q.Message + q.Correlation + q.Order + q.Batch
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Trace(%+v) = %q, want it to name %s", q, err, name)
		}
	}
}

func TestTraceStoreError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := service.NewHandlers(&fakeStore{err: boom}, producers, nil).Trace(context.Background(), service.Query{Order: "o1"})
	if !errors.Is(err, boom) {
		t.Fatalf("Trace = %v, want %v", err, boom)
	}
	if errors.Is(err, fail.NotFound) || errors.Is(err, fail.Invalid) {
		t.Errorf("a store's error reads as %v", err)
	}
}

func TestRegistry(t *testing.T) {
	reg := service.Registry([]string{"order_placed", "allocated"})
	want := []string{"allocated", messaging.DeadLetterChannel, messaging.ChannelReceipts, "order_placed"}
	if diff := cmp.Diff(want, reg.Channels()); diff != "" {
		t.Errorf("channels (-want +got):\n%s", diff)
	}
	// Any payload of a followed channel is observed, as it is.
	for _, payload := range []string{`{"orderid":"o1"}`, `not json`} {
		got, err := reg.Decode(messaging.Envelope{Channel: "order_placed", Payload: json.RawMessage(payload)})
		if err != nil {
			t.Fatalf("Decode(%s): %v", payload, err)
		}
		if o, ok := got.(service.Observed); !ok || string(o.Payload) != payload {
			t.Errorf("Decode(%s) = %#v, want it Observed", payload, got)
		}
	}
}
