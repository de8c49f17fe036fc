package messaging

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
)

// Registry maps message types to the channels they travel on, and back.
type Registry struct {
	byType    map[reflect.Type]*registration
	byChannel map[string]*registration
}

type registration struct {
	channel string
	key     func(any) string
	decode  func(json.RawMessage) (any, error)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byType: map[reflect.Type]*registration{}, byChannel: map[string]*registration{}}
}

// Register makes messages of type T travel on channel as JSON, ordered by
// key. decode, when not nil, replaces json.Unmarshal for messages coming
// in (to check required fields, say).
func Register[T any](r *Registry, channel string, key func(T) string, decode func(json.RawMessage) (T, error)) {
	if decode == nil {
		decode = func(b json.RawMessage) (T, error) {
			var v T
			err := json.Unmarshal(b, &v)
			return v, err
		}
	}
	reg := &registration{
		channel: channel,
		key:     func(m any) string { return key(m.(T)) },
		decode: func(b json.RawMessage) (any, error) {
			v, err := decode(b)
			return v, err
		},
	}
	r.byType[reflect.TypeFor[T]()] = reg
	r.byChannel[channel] = reg
}

// Timer is a message that is due later than it is raised: an aggregate
// raises a timeout as any other event, and its envelope is a durable timer
// (Envelope.DeliverAt), kept in the same transaction as the change that
// raised it until Due.
type Timer interface{ Due() time.Time }

// Envelope encodes msg, raised while handling the message ctx carries, in a
// new envelope: its causation is that message and it joins its flow. A
// Timer's envelope is delivered at its Due time.
func (r *Registry) Envelope(ctx context.Context, msg any) (Envelope, error) {
	reg, ok := r.byType[reflect.TypeOf(msg)]
	if !ok {
		return Envelope{}, fmt.Errorf("messaging: no channel registered for %T", msg)
	}
	payload, err := json.Marshal(msg)
	if err != nil {
		return Envelope{}, fmt.Errorf("messaging: encoding %T: %w", msg, err)
	}
	m := MetaFrom(ctx)
	id := NewID()
	corr := m.CorrelationID
	if corr == "" {
		corr = id
	}
	return Envelope{
		ID:            id,
		Channel:       reg.channel,
		Key:           reg.key(msg),
		CorrelationID: corr,
		CausationID:   m.MessageID,
		OccurredAt:    time.Now().UTC(),
		Payload:       payload,
		DeliverAt:     due(msg),
	}, nil
}

func due(msg any) time.Time {
	if t, ok := msg.(Timer); ok {
		return t.Due().UTC()
	}
	return time.Time{}
}

// Channels returns the registered channels, sorted.
func (r *Registry) Channels() []string {
	return slices.Sorted(maps.Keys(r.byChannel))
}

// Decode returns the message env carries.
func (r *Registry) Decode(env Envelope) (any, error) {
	reg, ok := r.byChannel[env.Channel]
	if !ok {
		return nil, fmt.Errorf("unknown channel %q", env.Channel)
	}
	return reg.decode(env.Payload)
}
