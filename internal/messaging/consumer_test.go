package messaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

var errDomain = errors.New("no such batch")

// consumerFixture is a consumer named "allocation" whose bus handles
// placeOrder with handle.
type consumerFixture struct {
	c      *messaging.Consumer
	dead   *deadLetters
	calls  int
	metas  []messaging.Meta
	cmds   []placeOrder
	handle func(attempt int) error
}

func newConsumer(t *testing.T, handle func(call int) error) *consumerFixture {
	t.Helper()
	f := &consumerFixture{dead: &deadLetters{}, handle: handle}
	reg := newRegistry()
	messaging.Register(reg, "strict_order", func(c placeOrder) string { return c.SKU }, nil)
	// A channel whose decoder refuses everything.
	type refused struct{}
	messaging.Register(reg, "refused", func(refused) string { return "" }, func(json.RawMessage) (refused, error) {
		return refused{}, errors.New("sku is required")
	})
	bus := messaging.NewBus(discardLogger(), nil)
	messaging.HandleCommand(bus, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
		f.calls++
		f.metas = append(f.metas, messaging.MetaFrom(ctx))
		f.cmds = append(f.cmds, c)
		if f.handle == nil {
			return nil, nil, nil
		}
		return nil, nil, f.handle(f.calls)
	})
	f.c = &messaging.Consumer{
		Name:        "allocation",
		Registry:    reg,
		Bus:         bus,
		DeadLetters: f.dead,
		Log:         discardLogger(),
	}
	return f
}

func delivery(channel, payload string, attempt int) messaging.Delivery {
	return messaging.Delivery{
		Envelope: messaging.Envelope{
			ID:            "msg-1",
			Channel:       channel,
			Key:           "LAMP",
			CorrelationID: "corr-1",
			CausationID:   "cause-1",
			OccurredAt:    time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
			Payload:       json.RawMessage(payload),
		},
		Attempt: attempt,
	}
}

func TestConsumerHandle(t *testing.T) {
	const good = `{"sku":"LAMP","qty":2}`
	transient := errors.New("database is locked")
	tests := []struct {
		name        string
		d           messaging.Delivery
		handlerErr  error
		maxAttempts int
		wantErr     error // nil: acknowledged
		wantCalls   int
		wantReason  string // "": no dead letter
	}{
		{
			name:      "handled",
			d:         delivery("place_order", good, 1),
			wantCalls: 1,
		},
		{
			name:       "malformed payload",
			d:          delivery("place_order", `{"sku":`, 1),
			wantReason: "undecodable message: unexpected end of JSON input",
		},
		{
			name:       "wrong field type",
			d:          delivery("place_order", `{"sku":"LAMP","qty":"two"}`, 1),
			wantReason: "undecodable message: json: cannot unmarshal string into Go struct field placeOrder.qty of type int",
		},
		{
			name:       "unknown channel",
			d:          delivery("nobody_knows", good, 1),
			wantReason: `undecodable message: unknown channel "nobody_knows"`,
		},
		{
			name:       "custom decoder refuses",
			d:          delivery("refused", good, 1),
			wantReason: "undecodable message: sku is required",
		},
		{
			name:       "Validate refuses",
			d:          delivery("place_order", `{"sku":"LAMP","qty":0}`, 1),
			wantReason: "qty must be positive, got 0",
		},
		{
			name:       "Validate refuses on a later attempt too",
			d:          delivery("place_order", `{"sku":"LAMP","qty":-1}`, 4),
			wantReason: "qty must be positive, got -1",
		},
		{
			name:       "Permanent error",
			d:          delivery("place_order", good, 1),
			handlerErr: messaging.Permanent(errDomain),
			wantCalls:  1,
			wantReason: "no such batch",
		},
		{
			name:       "wrapped Permanent error",
			d:          delivery("place_order", good, 2),
			handlerErr: &wrapErr{messaging.Permanent(errDomain)},
			wantCalls:  1,
			wantReason: "wrapped: no such batch",
		},
		{
			name:       "error of a kind no retry mends (not found)",
			d:          delivery("place_order", good, 1),
			handlerErr: fail.Wrap(fail.NotFound, errDomain),
			wantCalls:  1,
			wantReason: "no such batch",
		},
		{
			name:       "error of no kind: worth retrying",
			d:          delivery("place_order", good, 1),
			handlerErr: transient,
			wantCalls:  1,
			wantErr:    transient,
		},
		{
			name:        "transient, first of three",
			d:           delivery("place_order", good, 1),
			handlerErr:  transient,
			maxAttempts: 3,
			wantCalls:   1,
			wantErr:     transient,
		},
		{
			name:        "transient, second of three",
			d:           delivery("place_order", good, 2),
			handlerErr:  transient,
			maxAttempts: 3,
			wantCalls:   1,
			wantErr:     transient,
		},
		{
			name:        "transient, last of three",
			d:           delivery("place_order", good, 3),
			handlerErr:  transient,
			maxAttempts: 3,
			wantCalls:   1,
			wantReason:  "gave up after 3 attempts: database is locked",
		},
		{
			name:        "transient, beyond the last",
			d:           delivery("place_order", good, 9),
			handlerErr:  transient,
			maxAttempts: 3,
			wantCalls:   1,
			wantReason:  "gave up after 9 attempts: database is locked",
		},
		{
			name:       "transient, default max attempts, fourth",
			d:          delivery("place_order", good, 4),
			handlerErr: transient,
			wantCalls:  1,
			wantErr:    transient,
		},
		{
			name:       "transient, default max attempts, fifth",
			d:          delivery("place_order", good, 5),
			handlerErr: transient,
			wantCalls:  1,
			wantReason: "gave up after 5 attempts: database is locked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newConsumer(t, func(int) error { return tt.handlerErr })
			f.c.MaxAttempts = tt.maxAttempts
			start := time.Now()
			err := f.c.Handle(context.Background(), tt.d)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("Handle error = %v, want %v", err, tt.wantErr)
			}
			if f.calls != tt.wantCalls {
				t.Errorf("handler called %d times, want %d", f.calls, tt.wantCalls)
			}
			dead := f.dead.all()
			if tt.wantReason == "" {
				if len(dead) != 0 {
					t.Errorf("dead letters = %+v, want none", dead)
				}
				return
			}
			if len(dead) != 1 {
				t.Fatalf("got %d dead letters, want 1", len(dead))
			}
			// The whole envelope is kept, and how often it was tried.
			occurred := tt.d.OccurredAt
			want := messaging.DeadLetter{
				ID:            1,
				Consumer:      "allocation",
				Channel:       tt.d.Channel,
				MessageID:     "msg-1",
				Key:           "LAMP",
				CorrelationID: "corr-1",
				CausationID:   "cause-1",
				OccurredAt:    &occurred,
				Payload:       string(tt.d.Payload),
				Reason:        tt.wantReason,
				Attempts:      tt.d.Attempt,
			}
			if diff := cmp.Diff(want, dead[0], cmpopts.IgnoreFields(messaging.DeadLetter{}, "FailedAt", "FirstFailedAt", "Fingerprint", "Failures")); diff != "" {
				t.Errorf("dead letter (-want +got):\n%s", diff)
			}
			if first := dead[0].FirstFailedAt; first == nil || first.After(dead[0].FailedAt) {
				t.Errorf("FirstFailedAt = %v, want at or before FailedAt %v", first, dead[0].FailedAt)
			}
			if at := dead[0].FailedAt; at.Location() != time.UTC || at.Before(start.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
				t.Errorf("FailedAt = %v, want about now in UTC", at)
			}
		})
	}
}

type wrapErr struct{ err error }

func (w *wrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w *wrapErr) Unwrap() error { return w.err }

// TestConsumerRedeliveries plays a transport: it delivers again while
// Handle fails, and stops when it acknowledges.
func TestConsumerRedeliveries(t *testing.T) {
	transient := errors.New("database is locked")
	tests := []struct {
		name         string
		failFirst    int // calls that fail transiently
		maxAttempts  int
		wantAttempts int
		wantDead     bool
	}{
		{"succeeds first time", 0, 3, 1, false},
		{"succeeds on the last attempt", 2, 3, 3, false},
		{"never succeeds", 100, 3, 3, true},
		{"never succeeds, default", 100, 0, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newConsumer(t, func(call int) error {
				if call <= tt.failFirst {
					return transient
				}
				return nil
			})
			f.c.MaxAttempts = tt.maxAttempts
			attempts := 0
			for attempt := 1; attempt <= 100; attempt++ {
				attempts = attempt
				if err := f.c.Handle(context.Background(), delivery("place_order", `{"sku":"A","qty":1}`, attempt)); err == nil {
					break
				}
			}
			if attempts != tt.wantAttempts {
				t.Errorf("acknowledged after %d deliveries, want %d", attempts, tt.wantAttempts)
			}
			if got := len(f.dead.all()) == 1; got != tt.wantDead {
				t.Errorf("dead-lettered = %v, want %v", got, tt.wantDead)
			}
			// Every delivery is handled under the same message id, so that
			// units of work recognise a redelivery.
			for i, m := range f.metas {
				if m.MessageID != "msg-1" || m.Consumer != "allocation/place_order" {
					t.Errorf("delivery %d meta = %+v", i+1, m)
				}
			}
		})
	}
}

func TestConsumerDeadLetterStoreFails(t *testing.T) {
	f := newConsumer(t, nil)
	errStore := errors.New("disk full")
	f.dead.err = errStore
	err := f.c.Handle(context.Background(), delivery("place_order", `{"sku":"A","qty":0}`, 1))
	if err == nil {
		t.Fatal("Handle acknowledged a message it could not dead-letter")
	}
	if !errors.Is(err, errStore) {
		t.Errorf("Handle error %v does not wrap the store's error", err)
	}
	if !strings.Contains(err.Error(), "keeping dead letter") || !strings.Contains(err.Error(), "qty must be positive") {
		t.Errorf("Handle error = %q, want it to say the dead letter was not kept and why", err)
	}
}

func TestConsumerDeadLetterIgnoresCancel(t *testing.T) {
	f := newConsumer(t, nil)
	var sawLive bool
	f.c.DeadLetters = deadLettersFunc(func(ctx context.Context, d messaging.DeadLetter) error {
		sawLive = ctx.Err() == nil
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.c.Handle(ctx, delivery("place_order", `{`, 1)); err != nil {
		t.Fatalf("Handle = %v", err)
	}
	if !sawLive {
		t.Errorf("dead letter stored with a cancelled ctx")
	}
}

type deadLettersFunc func(context.Context, messaging.DeadLetter) error

func (f deadLettersFunc) AddDeadLetter(ctx context.Context, d messaging.DeadLetter) error {
	return f(ctx, d)
}
func (deadLettersFunc) DeadLetters(context.Context, int) ([]messaging.DeadLetter, error) {
	return nil, nil
}

func TestConsumerMeta(t *testing.T) {
	tests := []struct {
		name string
		env  messaging.Envelope
		want func(got messaging.Meta) messaging.Meta
	}{
		{
			name: "full envelope",
			env:  messaging.Envelope{ID: "id-1", Channel: "place_order", CorrelationID: "corr", CausationID: "cause"},
			want: func(messaging.Meta) messaging.Meta {
				return messaging.Meta{MessageID: "id-1", CorrelationID: "corr", CausationID: "cause", Channel: "place_order", Consumer: "allocation/place_order"}
			},
		},
		{
			name: "no correlation: the message starts a flow",
			env:  messaging.Envelope{ID: "id-2", Channel: "strict_order"},
			want: func(messaging.Meta) messaging.Meta {
				return messaging.Meta{MessageID: "id-2", CorrelationID: "id-2", Channel: "strict_order", Consumer: "allocation/strict_order"}
			},
		},
		{
			name: "no id: the consumer gives one",
			env:  messaging.Envelope{Channel: "place_order"},
			want: func(got messaging.Meta) messaging.Meta {
				return messaging.Meta{MessageID: got.MessageID, CorrelationID: got.MessageID, Channel: "place_order", Consumer: "allocation/place_order"}
			},
		},
		{
			name: "no id, but a correlation",
			env:  messaging.Envelope{Channel: "place_order", CorrelationID: "corr"},
			want: func(got messaging.Meta) messaging.Meta {
				return messaging.Meta{MessageID: got.MessageID, CorrelationID: "corr", Channel: "place_order", Consumer: "allocation/place_order"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newConsumer(t, nil)
			env := tt.env
			env.Payload = json.RawMessage(`{"sku":"A","qty":1}`)
			ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "outer", CorrelationID: "outer", Consumer: "outer"})
			if err := f.c.Handle(ctx, messaging.Delivery{Envelope: env, Attempt: 1}); err != nil {
				t.Fatalf("Handle = %v", err)
			}
			if len(f.metas) != 1 {
				t.Fatalf("handler called %d times", len(f.metas))
			}
			got := f.metas[0]
			if !uuidV7.MatchString(got.MessageID) && got.MessageID != tt.env.ID {
				t.Errorf("MessageID = %q, want the envelope's or a new UUIDv7", got.MessageID)
			}
			if diff := cmp.Diff(tt.want(got), got); diff != "" {
				t.Errorf("handler meta (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConsumerGivesIDToDeadLetter(t *testing.T) {
	f := newConsumer(t, nil)
	d := delivery("place_order", `{"sku":"A","qty":0}`, 1)
	d.ID = ""
	if err := f.c.Handle(context.Background(), d); err != nil {
		t.Fatalf("Handle = %v", err)
	}
	dead := f.dead.all()
	if len(dead) != 1 || !uuidV7.MatchString(dead[0].MessageID) {
		t.Errorf("dead letters = %+v, want one with a new UUIDv7 message id", dead)
	}
}

func TestConsumerEvents(t *testing.T) {
	reg := newRegistry()
	dl := &dispatchLog{}
	bus := messaging.NewBus(discardLogger(), dl)
	var got []orderPlaced
	var metas []messaging.Meta
	messaging.HandleEvent(bus, "reserve", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		got = append(got, e)
		metas = append(metas, messaging.MetaFrom(ctx))
		return nil, nil
	})
	c := &messaging.Consumer{Name: "allocation", Registry: reg, Bus: bus, DeadLetters: &deadLetters{}, Log: discardLogger()}
	d := delivery("order_placed", `{"sku":"LAMP","n":3}`, 1)
	if err := c.Handle(context.Background(), d); err != nil {
		t.Fatalf("Handle = %v", err)
	}
	if diff := cmp.Diff([]orderPlaced{{SKU: "LAMP", N: 3}}, got); diff != "" {
		t.Errorf("events handled (-want +got):\n%s", diff)
	}
	// Event handlers are named by themselves in the inbox.
	want := []messaging.Meta{{MessageID: "msg-1", CorrelationID: "corr-1", CausationID: "cause-1", Channel: "order_placed", Key: "LAMP", OccurredAt: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), Consumer: "reserve"}}
	if diff := cmp.Diff(want, metas); diff != "" {
		t.Errorf("event handler meta (-want +got):\n%s", diff)
	}
}

// TestConsumerFailingEventHandler checks the consumer's promise for events:
// "a message whose handler fails otherwise is delivered again" and a
// handler's Permanent error dead-letters the message.
func TestConsumerFailingEventHandler(t *testing.T) {
	tests := []struct {
		name       string
		handlerErr error
		wantErr    bool
		wantDead   bool
	}{
		{"transient", errBoom, true, false},
		{"permanent", messaging.Permanent(errDomain), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry()
			bus := messaging.NewBus(discardLogger(), nil)
			messaging.HandleEvent(bus, "reserve", func(context.Context, orderPlaced) ([]messaging.Raised, error) {
				return nil, tt.handlerErr
			})
			dead := &deadLetters{}
			c := &messaging.Consumer{Name: "allocation", Registry: reg, Bus: bus, DeadLetters: dead, Log: discardLogger(), MaxAttempts: 3}
			err := c.Handle(context.Background(), delivery("order_placed", `{"sku":"LAMP"}`, 1))
			if (err != nil) != tt.wantErr {
				t.Errorf("Handle = %v, want error %v", err, tt.wantErr)
			}
			if got := len(dead.all()) == 1; got != tt.wantDead {
				t.Errorf("dead-lettered = %v, want %v", got, tt.wantDead)
			}
		})
	}
}

type consumerMetrics struct {
	mu       sync.Mutex
	consumed []string
	errs     []bool
	dead     []string
}

func (m *consumerMetrics) Consumed(channel string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.consumed = append(m.consumed, channel)
	m.errs = append(m.errs, err != nil)
}

func (m *consumerMetrics) DeadLettered(channel string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dead = append(m.dead, channel)
}

func TestConsumerMetrics(t *testing.T) {
	f := newConsumer(t, func(call int) error {
		if call == 2 {
			return errBoom
		}
		return nil
	})
	m := &consumerMetrics{}
	f.c.Metrics = m
	f.c.Handle(context.Background(), delivery("place_order", `{"sku":"A","qty":1}`, 1)) // ok
	f.c.Handle(context.Background(), delivery("place_order", `{"sku":"A","qty":1}`, 1)) // transient
	f.c.Handle(context.Background(), delivery("place_order", `{"sku":"A","qty":0}`, 1)) // invalid
	if diff := cmp.Diff([]string{"place_order", "place_order", "place_order"}, m.consumed); diff != "" {
		t.Errorf("consumed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{false, true, false}, m.errs); diff != "" {
		t.Errorf("consumed errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"place_order"}, m.dead); diff != "" {
		t.Errorf("dead-lettered (-want +got):\n%s", diff)
	}
}

// fakeSubscriber records a Subscribe call.
type fakeSubscriber struct {
	group    string
	channels []string
	h        messaging.Handler
}

func (s *fakeSubscriber) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	s.group, s.channels, s.h = group, channels, h
	return errBoom
}

func TestConsumerRun(t *testing.T) {
	f := newConsumer(t, nil)
	sub := &fakeSubscriber{}
	if err := f.c.Run(context.Background(), sub, "place_order", "strict_order"); !errors.Is(err, errBoom) {
		t.Errorf("Run = %v, want the subscriber's error", err)
	}
	if sub.group != "allocation" {
		t.Errorf("group = %q, want allocation", sub.group)
	}
	if diff := cmp.Diff([]string{"place_order", "strict_order"}, sub.channels); diff != "" {
		t.Errorf("channels (-want +got):\n%s", diff)
	}
	if err := sub.h(context.Background(), delivery("place_order", `{"sku":"A","qty":1}`, 1)); err != nil || f.calls != 1 {
		t.Errorf("subscribed handler = %v after %d calls, want the consumer's Handle", err, f.calls)
	}
}

// An error the consumer knows as an outcome (out of stock, say) is not a
// failure: the message is handled, neither redelivered nor dead-lettered.
func TestConsumerOutcome(t *testing.T) {
	soldOut := fail.Outcome(fail.Conflict, "out of stock")
	f := newConsumer(t, func(int) error { return errors.Join(errors.New("allocating"), soldOut) })
	if err := f.c.Handle(context.Background(), delivery("place_order", `{"sku": "LAMP", "qty": 1}`, 1)); err != nil {
		t.Fatalf("Handle = %v, want nil", err)
	}
	if f.calls != 1 || len(f.dead.all()) != 0 {
		t.Errorf("%d calls and %d dead letters, want 1 and 0", f.calls, len(f.dead.all()))
	}
}

// A failed attempt asks the transport for redelivery after the consumer's
// backoff: the one retry policy of every transport.
func TestConsumerAsksForRedeliveryAfterItsBackoff(t *testing.T) {
	transient := errors.New("database is locked")
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{3, 25 * time.Millisecond},
		{4, 25 * time.Millisecond},
	}
	for _, tt := range tests {
		f := newConsumer(t, func(int) error { return transient })
		f.c.Backoff = messaging.Backoff{Initial: 10 * time.Millisecond, Max: 25 * time.Millisecond}
		f.c.MaxAttempts = 10
		err := f.c.Handle(context.Background(), delivery("place_order", `{"sku":"LAMP","qty":2}`, tt.attempt))
		if !errors.Is(err, transient) {
			t.Fatalf("attempt %d: Handle = %v, want %v", tt.attempt, err, transient)
		}
		if got := messaging.RedeliveryDelay(err, tt.attempt, messaging.Backoff{Initial: time.Hour}); got != tt.want {
			t.Errorf("attempt %d: redelivery in %v, want %v", tt.attempt, got, tt.want)
		}
	}
	// A handler that names no delay gets the transport's own.
	if got := messaging.RedeliveryDelay(transient, 2, messaging.Backoff{Initial: time.Second, Max: time.Minute}); got != 2*time.Second {
		t.Errorf("fallback delay = %v, want 2s", got)
	}
}

// A dead letter sent again goes through the pipeline as the message it
// was, in this process: handled, it is handled once; failing again, it is
// the same dead letter, its failures raised.
func TestConsumerRedrive(t *testing.T) {
	ctx := context.Background()
	missing := fail.Errorf(fail.NotFound, "Unknown batch b-1")
	t.Run("handled", func(t *testing.T) {
		f := newConsumer(t, func(call int) error {
			if call == 1 {
				return missing
			}
			return nil
		})
		if err := f.c.Handle(ctx, delivery("strict_order", `{"sku":"LAMP","qty":2}`, 1)); err != nil {
			t.Fatalf("Handle = %v", err)
		}
		dead := f.dead.all()
		if len(dead) != 1 || dead[0].Fingerprint != "not found: Unknown batch #" {
			t.Fatalf("dead letters = %+v, want one, fingerprinted", dead)
		}
		if err := f.c.Redrive(ctx, dead[0]); err != nil {
			t.Fatalf("Redrive = %v", err)
		}
		if f.calls != 2 {
			t.Errorf("handler called %d times, want 2 (the failure, then once sent again)", f.calls)
		}
		m := f.metas[1]
		if m.MessageID != "msg-1" || m.CorrelationID != "corr-1" || m.CausationID != "cause-1" || m.Key != "LAMP" || m.Channel != "strict_order" {
			t.Errorf("sent again as %+v, want the message it was (msg-1, corr-1, cause-1, LAMP)", m)
		}
		if got := f.dead.all(); len(got) != 1 || got[0].Failures != 1 {
			t.Errorf("dead letters after a handled retry = %+v, want the one, failed once", got)
		}
	})
	t.Run("failing again", func(t *testing.T) {
		f := newConsumer(t, func(int) error { return missing })
		if err := f.c.Handle(ctx, delivery("strict_order", `{"sku":"LAMP","qty":2}`, 1)); err != nil {
			t.Fatalf("Handle = %v", err)
		}
		for i := range 2 {
			dead := f.dead.all()
			err := f.c.Redrive(ctx, dead[0])
			if !errors.Is(err, fail.NotFound) {
				t.Fatalf("Redrive #%d = %v, want the handler's error", i+1, err)
			}
		}
		dead := f.dead.all()
		if len(dead) != 1 || dead[0].Failures != 3 || dead[0].ID != 1 || dead[0].MessageID != "msg-1" || dead[0].Key != "LAMP" {
			t.Errorf("dead letters = %+v, want the same one, failed 3 times", dead)
		}
	})
	t.Run("transient failure is not retried in place", func(t *testing.T) {
		f := newConsumer(t, func(call int) error {
			if call == 1 {
				return missing
			}
			return errBoom
		})
		f.c.Handle(ctx, delivery("strict_order", `{"sku":"LAMP","qty":2}`, 1))
		if err := f.c.Redrive(ctx, f.dead.all()[0]); !errors.Is(err, errBoom) {
			t.Fatalf("Redrive = %v, want %v", err, errBoom)
		}
		if dead := f.dead.all(); f.calls != 2 || len(dead) != 1 || dead[0].Failures != 2 || dead[0].Reason != "boom" {
			t.Errorf("calls %d, dead letters %+v: want one more call, the dead letter failed again with boom", f.calls, dead)
		}
	})
}
