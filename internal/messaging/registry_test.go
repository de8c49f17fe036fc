package messaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/messaging"
)

func TestRegistryEnvelope(t *testing.T) {
	reg := newRegistry()
	tests := []struct {
		name      string
		ctx       context.Context
		msg       any
		channel   string
		key       string
		wantCorr  string // "" means: the envelope's own id
		wantCause string
	}{
		{
			name:    "no meta starts a flow",
			ctx:     context.Background(),
			msg:     orderPlaced{SKU: "LAMP", N: 1},
			channel: "order_placed",
			key:     "LAMP",
		},
		{
			name:      "joins the flow of the message being handled",
			ctx:       messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "msg-1", CorrelationID: "corr-1", CausationID: "cause-0", Consumer: "c"}),
			msg:       stockReserved{SKU: "TABLE", N: 2},
			channel:   "stock_reserved",
			key:       "TABLE",
			wantCorr:  "corr-1",
			wantCause: "msg-1",
		},
		{
			name:      "meta without correlation",
			ctx:       messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "msg-2"}),
			msg:       placeOrder{SKU: "CHAIR", Qty: 3},
			channel:   "place_order",
			key:       "CHAIR",
			wantCause: "msg-2",
		},
		{
			name:      "started flow",
			ctx:       messaging.StartFlow(context.Background(), "req-9"),
			msg:       orderShipped{SKU: "RUG"},
			channel:   "order_shipped",
			key:       "RUG",
			wantCorr:  "req-9",
			wantCause: "", // filled in below from the ctx
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			env, err := reg.Envelope(tt.ctx, tt.msg)
			after := time.Now()
			if err != nil {
				t.Fatalf("Envelope: %v", err)
			}
			if !uuidV7.MatchString(env.ID) {
				t.Errorf("ID = %q, want a UUIDv7", env.ID)
			}
			wantCorr, wantCause := tt.wantCorr, tt.wantCause
			if wantCorr == "" {
				wantCorr = env.ID
			}
			if m := messaging.MetaFrom(tt.ctx); m.MessageID != "" {
				wantCause = m.MessageID
			}
			wantPayload, _ := json.Marshal(tt.msg)
			want := messaging.Envelope{
				ID:            env.ID,
				Channel:       tt.channel,
				Key:           tt.key,
				CorrelationID: wantCorr,
				CausationID:   wantCause,
				OccurredAt:    env.OccurredAt,
				Payload:       wantPayload,
			}
			if diff := cmp.Diff(want, env); diff != "" {
				t.Errorf("Envelope (-want +got):\n%s", diff)
			}
			if env.OccurredAt.Location() != time.UTC {
				t.Errorf("OccurredAt location = %v, want UTC", env.OccurredAt.Location())
			}
			if env.OccurredAt.Before(before.Add(-time.Millisecond)) || env.OccurredAt.After(after.Add(time.Millisecond)) {
				t.Errorf("OccurredAt = %v, want within [%v, %v]", env.OccurredAt, before, after)
			}

			// Decode gives back the message.
			got, err := reg.Decode(env)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.msg, got); diff != "" {
				t.Errorf("Decode(Envelope(msg)) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegistryEnvelopeIDsDiffer(t *testing.T) {
	reg := newRegistry()
	a, _ := reg.Envelope(context.Background(), orderPlaced{SKU: "A"})
	b, _ := reg.Envelope(context.Background(), orderPlaced{SKU: "A"})
	if a.ID == b.ID {
		t.Errorf("two envelopes share id %q", a.ID)
	}
	if a.CorrelationID == b.CorrelationID {
		t.Errorf("two flows started without meta share correlation %q", a.CorrelationID)
	}
}

func TestRegistryErrors(t *testing.T) {
	reg := newRegistry()
	type unencodable struct{ F func() }
	messaging.Register(reg, "unencodable", func(unencodable) string { return "" }, nil)

	t.Run("unregistered type", func(t *testing.T) {
		_, err := reg.Envelope(context.Background(), unregistered{})
		if err == nil || !strings.Contains(err.Error(), "no channel registered") {
			t.Errorf("Envelope(unregistered) error = %v, want no channel registered", err)
		}
	})
	t.Run("pointer to a registered type", func(t *testing.T) {
		if _, err := reg.Envelope(context.Background(), &orderPlaced{}); err == nil {
			t.Errorf("Envelope(*orderPlaced) error = nil, want an error (only orderPlaced is registered)")
		}
	})
	t.Run("unencodable", func(t *testing.T) {
		_, err := reg.Envelope(context.Background(), unencodable{F: func() {}})
		if err == nil || !strings.Contains(err.Error(), "encoding") {
			t.Errorf("Envelope(unencodable) error = %v, want an encoding error", err)
		}
	})
	t.Run("unknown channel", func(t *testing.T) {
		msg, err := reg.Decode(messaging.Envelope{Channel: "nope", Payload: json.RawMessage(`{}`)})
		if err == nil || err.Error() != `unknown channel "nope"` {
			t.Errorf("Decode(unknown channel) = %v, %v; want unknown channel \"nope\"", msg, err)
		}
	})
	t.Run("malformed payload", func(t *testing.T) {
		_, err := reg.Decode(messaging.Envelope{Channel: "order_placed", Payload: json.RawMessage(`{"sku":`)})
		if err == nil {
			t.Errorf("Decode(malformed) error = nil")
		}
	})
	t.Run("wrong field type", func(t *testing.T) {
		_, err := reg.Decode(messaging.Envelope{Channel: "order_placed", Payload: json.RawMessage(`{"n":"x"}`)})
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			t.Errorf("Decode(wrong type) error = %v, want a *json.UnmarshalTypeError", err)
		}
	})
}

func TestRegistryCustomDecoder(t *testing.T) {
	reg := messaging.NewRegistry()
	errNoSKU := errors.New("sku is required")
	var calls []string
	messaging.Register(reg, "order_placed", func(e orderPlaced) string { return e.SKU },
		func(b json.RawMessage) (orderPlaced, error) {
			calls = append(calls, string(b))
			var e orderPlaced
			if err := json.Unmarshal(b, &e); err != nil {
				return e, err
			}
			if e.SKU == "" {
				return e, errNoSKU
			}
			e.N *= 10 // proves this decoder, not json.Unmarshal, made the value
			return e, nil
		})

	got, err := reg.Decode(messaging.Envelope{Channel: "order_placed", Payload: json.RawMessage(`{"sku":"A","n":2}`)})
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if diff := cmp.Diff(orderPlaced{SKU: "A", N: 20}, got); diff != "" {
		t.Errorf("Decode (-want +got):\n%s", diff)
	}
	if _, err := reg.Decode(messaging.Envelope{Channel: "order_placed", Payload: json.RawMessage(`{"n":2}`)}); !errors.Is(err, errNoSKU) {
		t.Errorf("Decode without sku error = %v, want %v", err, errNoSKU)
	}
	if diff := cmp.Diff([]string{`{"sku":"A","n":2}`, `{"n":2}`}, calls); diff != "" {
		t.Errorf("decoder calls (-want +got):\n%s", diff)
	}
	// Encoding does not use the decoder.
	if _, err := reg.Envelope(context.Background(), orderPlaced{SKU: "B"}); err != nil {
		t.Fatalf("Envelope: %v", err)
	}
	if len(calls) != 2 {
		t.Errorf("Envelope called the decoder")
	}
}

type reminder struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

func (r reminder) Due() time.Time { return r.At }

func TestEnvelopeOfATimerIsDueAtItsTime(t *testing.T) {
	r := messaging.NewRegistry()
	messaging.Register(r, "reminder", func(m reminder) string { return m.ID }, nil)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	env, err := r.Envelope(context.Background(), reminder{ID: "r1", At: at})
	if err != nil {
		t.Fatal(err)
	}
	if !env.DeliverAt.Equal(at) || env.DeliverAt.Location() != time.UTC {
		t.Errorf("DeliverAt = %v, want %v in UTC", env.DeliverAt, at)
	}
	if !env.Scheduled(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Error("not scheduled before it is due")
	}
}
