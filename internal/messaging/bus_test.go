package messaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/messaging"
)

func TestHandleCommandTwicePanics(t *testing.T) {
	b := messaging.NewBus(discardLogger(), nil)
	h := func(context.Context, placeOrder) (any, []messaging.Raised, error) { return nil, nil, nil }
	messaging.HandleCommand(b, h)
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("second HandleCommand for the same command did not panic")
		}
		if s := fmt.Sprint(r); !strings.Contains(s, "second handler") || !strings.Contains(s, "placeOrder") {
			t.Errorf("panic = %q, want it to name the second handler and the command", s)
		}
	}()
	messaging.HandleCommand(b, h)
}

func TestBusIsCommand(t *testing.T) {
	b := messaging.NewBus(discardLogger(), nil)
	messaging.HandleCommand(b, func(context.Context, placeOrder) (any, []messaging.Raised, error) { return nil, nil, nil })
	messaging.HandleEvent(b, "h", func(context.Context, orderPlaced) ([]messaging.Raised, error) { return nil, nil })
	tests := []struct {
		msg  any
		want bool
	}{
		{placeOrder{}, true},
		{&placeOrder{}, false},
		{orderPlaced{}, false},
		{unregistered{}, false},
	}
	for _, tt := range tests {
		if got := b.IsCommand(tt.msg); got != tt.want {
			t.Errorf("IsCommand(%T) = %v, want %v", tt.msg, got, tt.want)
		}
	}
}

func TestBusCommandResultAndError(t *testing.T) {
	errOut := errors.New("out of stock")
	tests := []struct {
		name    string
		res     any
		err     error
		wantRes any
	}{
		{"result", "batch-1", nil, "batch-1"},
		{"error", nil, errOut, nil},
		{"wrapped error", nil, fmt.Errorf("allocating: %w", errOut), nil},
		{"permanent error", nil, messaging.Permanent(errOut), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, rec := newRecordingLogger()
			b := messaging.NewBus(log, nil)
			var got placeOrder
			messaging.HandleCommand(b, func(_ context.Context, c placeOrder) (any, []messaging.Raised, error) {
				got = c
				return tt.res, nil, tt.err
			})
			res, err := b.Handle(context.Background(), placeOrder{SKU: "LAMP", Qty: 2})
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Errorf("Handle error = %v, want %v", err, tt.err)
			}
			if tt.err != nil && !errors.Is(err, errOut) {
				t.Errorf("Handle error %v does not wrap the handler's error", err)
			}
			if diff := cmp.Diff(tt.wantRes, res); diff != "" {
				t.Errorf("Handle result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(placeOrder{SKU: "LAMP", Qty: 2}, got); diff != "" {
				t.Errorf("handler got (-want +got):\n%s", diff)
			}
			recs := rec.find("message handled")
			if len(recs) != 1 {
				t.Fatalf("got %d 'message handled' records, want 1", len(recs))
			}
			if recs[0].Attrs["type"] != "placeOrder" {
				t.Errorf("logged type = %q, want placeOrder", recs[0].Attrs["type"])
			}
			if tt.err != nil && recs[0].Attrs["err"] == "" {
				t.Errorf("command error not logged: %+v", recs[0])
			}
		})
	}
}

func TestBusErrNoHandler(t *testing.T) {
	b := messaging.NewBus(discardLogger(), nil)
	messaging.HandleEvent(b, "h", func(context.Context, orderPlaced) ([]messaging.Raised, error) { return nil, nil })
	for _, msg := range []any{unregistered{}, orderPlaced{}, &placeOrder{}} {
		res, err := b.Handle(context.Background(), msg)
		if !errors.Is(err, messaging.ErrNoHandler) {
			t.Errorf("Handle(%T) error = %v, want ErrNoHandler", msg, err)
		}
		if res != nil {
			t.Errorf("Handle(%T) result = %v, want nil", msg, res)
		}
	}
}

// TestBusEventsInOrder checks that the events a command committed, and the
// events their handlers commit, go to every handler in order (breadth first:
// a queue), and that the dispatch log hears of each.
func TestBusEventsInOrder(t *testing.T) {
	reg := newRegistry()
	dl := &dispatchLog{}
	b := messaging.NewBus(discardLogger(), dl)

	var mu sync.Mutex
	var trace []string
	var envs = map[string]messaging.Envelope{} // by name, e.g. "placed1"
	note := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}

	messaging.HandleCommand(b, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
		note("cmd")
		p1 := raise(t, ctx, reg, orderPlaced{SKU: c.SKU, N: 1})
		p2 := raise(t, ctx, reg, orderPlaced{SKU: c.SKU, N: 2})
		envs["placed1"], envs["placed2"] = p1.Envelope, p2.Envelope
		return "ok", []messaging.Raised{p1, p2}, nil
	})
	messaging.HandleEvent(b, "reserve", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		note(fmt.Sprintf("reserve:placed%d", e.N))
		r := raise(t, ctx, reg, stockReserved{SKU: e.SKU, N: e.N})
		envs[fmt.Sprintf("reserved%d", e.N)] = r.Envelope
		return []messaging.Raised{r}, nil
	})
	messaging.HandleEvent(b, "audit", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		note(fmt.Sprintf("audit:placed%d", e.N))
		return nil, nil
	})
	messaging.HandleEvent(b, "ship", func(ctx context.Context, e stockReserved) ([]messaging.Raised, error) {
		note(fmt.Sprintf("ship:reserved%d", e.N))
		s := raise(t, ctx, reg, orderShipped{SKU: e.SKU, N: e.N})
		envs[fmt.Sprintf("shipped%d", e.N)] = s.Envelope
		return []messaging.Raised{s}, nil
	})
	messaging.HandleEvent(b, "notify", func(ctx context.Context, e orderShipped) ([]messaging.Raised, error) {
		note(fmt.Sprintf("notify:shipped%d", e.N))
		return nil, nil
	})

	res, err := b.Handle(context.Background(), placeOrder{SKU: "LAMP", Qty: 1})
	if err != nil || res != "ok" {
		t.Fatalf("Handle = %v, %v", res, err)
	}
	want := []string{
		"cmd",
		"reserve:placed1", "audit:placed1",
		"reserve:placed2", "audit:placed2",
		"ship:reserved1",
		"ship:reserved2",
		"notify:shipped1",
		"notify:shipped2",
	}
	if diff := cmp.Diff(want, trace); diff != "" {
		t.Errorf("handling order (-want +got):\n%s", diff)
	}
	wantIDs := []string{
		envs["placed1"].ID, envs["placed2"].ID,
		envs["reserved1"].ID, envs["reserved2"].ID,
		envs["shipped1"].ID, envs["shipped2"].ID,
	}
	if diff := cmp.Diff(wantIDs, dl.ids()); diff != "" {
		t.Errorf("dispatched ids (-want +got):\n%s", diff)
	}
	if len(dl.calls) != 1 {
		t.Errorf("MarkDispatched called %d times, want once per Dispatch", len(dl.calls))
	}

	// The whole tree is one flow; each event is caused by the one whose
	// handler raised it.
	corr := envs["placed1"].CorrelationID
	for name, env := range envs {
		if env.CorrelationID != corr {
			t.Errorf("%s correlation = %q, want %q", name, env.CorrelationID, corr)
		}
	}
	if envs["placed1"].CausationID != envs["placed2"].CausationID || envs["placed1"].CausationID == "" {
		t.Errorf("events of the command have causations %q and %q, want the command's id", envs["placed1"].CausationID, envs["placed2"].CausationID)
	}
	for _, pair := range [][2]string{{"reserved1", "placed1"}, {"reserved2", "placed2"}, {"shipped1", "reserved1"}, {"shipped2", "reserved2"}} {
		if got, want := envs[pair[0]].CausationID, envs[pair[1]].ID; got != want {
			t.Errorf("%s causation = %q, want %s's id %q", pair[0], got, pair[1], want)
		}
	}
}

func TestBusFailingEventHandler(t *testing.T) {
	reg := newRegistry()
	log, rec := newRecordingLogger()
	dl := &dispatchLog{}
	b := messaging.NewBus(log, dl)

	var trace []string
	messaging.HandleEvent(b, "first", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		trace = append(trace, fmt.Sprintf("first:%d", e.N))
		return nil, nil
	})
	messaging.HandleEvent(b, "failing", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		trace = append(trace, fmt.Sprintf("failing:%d", e.N))
		if e.N == 1 {
			// Its events are not committed: the bus must not hand them on.
			return []messaging.Raised{raise(t, ctx, reg, orderShipped{SKU: "X"})}, errBoom
		}
		return nil, nil
	})
	messaging.HandleEvent(b, "last", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		trace = append(trace, fmt.Sprintf("last:%d", e.N))
		return nil, nil
	})
	messaging.HandleEvent(b, "shipped", func(ctx context.Context, e orderShipped) ([]messaging.Raised, error) {
		trace = append(trace, "shipped")
		return nil, nil
	})

	ctx := messaging.StartFlow(context.Background(), "")
	e1 := raise(t, ctx, reg, orderPlaced{SKU: "A", N: 1})
	e2 := raise(t, ctx, reg, orderPlaced{SKU: "A", N: 2})
	b.Dispatch(ctx, []messaging.Raised{e1, e2})

	want := []string{"first:1", "failing:1", "last:1", "first:2", "failing:2", "last:2"}
	if diff := cmp.Diff(want, trace); diff != "" {
		t.Errorf("handling order (-want +got):\n%s", diff)
	}
	// Only the event whose every handler succeeded is recorded.
	if diff := cmp.Diff([]string{e2.Envelope.ID}, dl.ids()); diff != "" {
		t.Errorf("dispatched ids (-want +got):\n%s", diff)
	}

	var failed []logRecord
	for _, r := range rec.find("message handled") {
		if r.Attrs["err"] != "" {
			failed = append(failed, r)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("got %d failure records, want 1: %+v", len(failed), rec.records())
	}
	f := failed[0]
	if f.Level != slog.LevelError {
		t.Errorf("failure logged at %v, want ERROR", f.Level)
	}
	wantAttrs := map[string]string{"handler": "failing", "err": "boom", "type": "orderPlaced", "message_id": e1.Envelope.ID}
	for k, v := range wantAttrs {
		if f.Attrs[k] != v {
			t.Errorf("failure record %s = %q, want %q", k, f.Attrs[k], v)
		}
	}
}

func TestBusDispatchLog(t *testing.T) {
	reg := newRegistry()
	ctx := context.Background()

	t.Run("nothing to dispatch", func(t *testing.T) {
		dl := &dispatchLog{}
		b := messaging.NewBus(discardLogger(), dl)
		b.Dispatch(ctx, nil)
		if len(dl.calls) != 0 {
			t.Errorf("MarkDispatched called for no events: %v", dl.calls)
		}
	})
	t.Run("every event failed", func(t *testing.T) {
		dl := &dispatchLog{}
		b := messaging.NewBus(discardLogger(), dl)
		messaging.HandleEvent(b, "f", func(context.Context, orderPlaced) ([]messaging.Raised, error) { return nil, errBoom })
		b.Dispatch(ctx, []messaging.Raised{raise(t, ctx, reg, orderPlaced{})})
		if len(dl.calls) != 0 {
			t.Errorf("MarkDispatched called although no event was handled: %v", dl.calls)
		}
	})
	t.Run("events nobody handles are dispatched", func(t *testing.T) {
		dl := &dispatchLog{}
		b := messaging.NewBus(discardLogger(), dl)
		e := raise(t, ctx, reg, orderShipped{})
		b.Dispatch(ctx, []messaging.Raised{e})
		if diff := cmp.Diff([]string{e.Envelope.ID}, dl.ids()); diff != "" {
			t.Errorf("dispatched (-want +got):\n%s", diff)
		}
	})
	t.Run("cancelled ctx still records", func(t *testing.T) {
		dl := &dispatchLog{}
		b := messaging.NewBus(discardLogger(), dl)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		e := raise(t, cctx, reg, orderShipped{})
		b.Dispatch(cctx, []messaging.Raised{e})
		if diff := cmp.Diff([]bool{true}, dl.ctxOK); diff != "" {
			t.Errorf("MarkDispatched ctx live (-want +got):\n%s", diff)
		}
	})
	t.Run("failing dispatch log is logged", func(t *testing.T) {
		dl := &dispatchLog{err: errBoom}
		log, rec := newRecordingLogger()
		b := messaging.NewBus(log, dl)
		b.Dispatch(ctx, []messaging.Raised{raise(t, ctx, reg, orderShipped{}), raise(t, ctx, reg, orderShipped{})})
		recs := rec.find("recording dispatched events")
		if len(recs) != 1 {
			t.Fatalf("got %d 'recording dispatched events' records, want 1", len(recs))
		}
		if recs[0].Level != slog.LevelError || recs[0].Attrs["err"] != "boom" || recs[0].Attrs["count"] != "2" {
			t.Errorf("record = %+v", recs[0])
		}
	})
	t.Run("nil dispatch log", func(t *testing.T) {
		b := messaging.NewBus(discardLogger(), nil)
		b.Dispatch(ctx, []messaging.Raised{raise(t, ctx, reg, orderShipped{})}) // must not panic
	})
}

func TestBusHandleStartsFlow(t *testing.T) {
	given := messaging.Meta{MessageID: "m-1", CorrelationID: "c-1", CausationID: "k-1", Consumer: "allocation/place_order"}
	tests := []struct {
		name string
		ctx  context.Context
		want func(got messaging.Meta) messaging.Meta
	}{
		{
			name: "no meta starts a flow",
			ctx:  context.Background(),
			want: func(got messaging.Meta) messaging.Meta {
				return messaging.Meta{MessageID: got.MessageID, CorrelationID: got.MessageID}
			},
		},
		{
			name: "meta is kept",
			ctx:  messaging.WithMeta(context.Background(), given),
			want: func(messaging.Meta) messaging.Meta { return given },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := messaging.NewBus(discardLogger(), nil)
			var got messaging.Meta
			messaging.HandleCommand(b, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
				got = messaging.MetaFrom(ctx)
				return nil, nil, nil
			})
			if _, err := b.Handle(tt.ctx, placeOrder{}); err != nil {
				t.Fatal(err)
			}
			if !uuidV7.MatchString(got.MessageID) && got.MessageID != given.MessageID {
				t.Errorf("MessageID = %q, want a UUIDv7", got.MessageID)
			}
			if diff := cmp.Diff(tt.want(got), got); diff != "" {
				t.Errorf("handler meta (-want +got):\n%s", diff)
			}
		})
	}

	// Two flows started by the bus are distinct.
	b := messaging.NewBus(discardLogger(), nil)
	var ids []string
	messaging.HandleCommand(b, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
		ids = append(ids, messaging.MetaFrom(ctx).MessageID)
		return nil, nil, nil
	})
	b.Handle(context.Background(), placeOrder{})
	b.Handle(context.Background(), placeOrder{})
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("flows started by Handle: %v, want two distinct ids", ids)
	}
}

func TestBusEventHandlerMeta(t *testing.T) {
	tests := []struct {
		name string
		env  messaging.Envelope
		want func(env messaging.Envelope) []messaging.Meta
	}{
		{
			name: "full envelope",
			env:  messaging.Envelope{ID: "ev-1", Channel: "order_placed", CorrelationID: "corr-1", CausationID: "cmd-1", Payload: json.RawMessage(`{}`)},
			want: func(env messaging.Envelope) []messaging.Meta {
				return []messaging.Meta{
					{MessageID: "ev-1", CorrelationID: "corr-1", CausationID: "cmd-1", Channel: "order_placed", Consumer: "alpha", Replayed: true},
					{MessageID: "ev-1", CorrelationID: "corr-1", CausationID: "cmd-1", Channel: "order_placed", Consumer: "beta", Replayed: true},
				}
			},
		},
		{
			name: "no correlation: the event starts its flow",
			env:  messaging.Envelope{ID: "ev-2", Channel: "order_placed", Payload: json.RawMessage(`{}`)},
			want: func(env messaging.Envelope) []messaging.Meta {
				return []messaging.Meta{
					{MessageID: "ev-2", CorrelationID: "ev-2", Channel: "order_placed", Consumer: "alpha", Replayed: true},
					{MessageID: "ev-2", CorrelationID: "ev-2", Channel: "order_placed", Consumer: "beta", Replayed: true},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := messaging.NewBus(discardLogger(), nil)
			var got []messaging.Meta
			for _, name := range []string{"alpha", "beta"} {
				messaging.HandleEvent(b, name, func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
					got = append(got, messaging.MetaFrom(ctx))
					return nil, nil
				})
			}
			// The ctx of the caller (a command's) must not leak into the
			// handlers' meta.
			ctx := messaging.WithMeta(context.Background(), messaging.Meta{MessageID: "cmd-x", CorrelationID: "corr-x", Consumer: "api"})
			b.Dispatch(ctx, []messaging.Raised{{Envelope: tt.env, Event: orderPlaced{}}})
			if diff := cmp.Diff(tt.want(tt.env), got); diff != "" {
				t.Errorf("handler meta (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBusCommandEventsCarryCommandMeta(t *testing.T) {
	reg := newRegistry()
	b := messaging.NewBus(discardLogger(), nil)
	var cmdMeta, evMeta messaging.Meta
	var raised messaging.Raised
	messaging.HandleCommand(b, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
		cmdMeta = messaging.MetaFrom(ctx)
		raised = raise(t, ctx, reg, orderPlaced{SKU: c.SKU})
		return nil, []messaging.Raised{raised}, nil
	})
	messaging.HandleEvent(b, "h", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		evMeta = messaging.MetaFrom(ctx)
		return nil, nil
	})
	if _, err := b.Handle(context.Background(), placeOrder{SKU: "A"}); err != nil {
		t.Fatal(err)
	}
	want := messaging.Meta{MessageID: raised.Envelope.ID, CorrelationID: cmdMeta.CorrelationID, CausationID: cmdMeta.MessageID, Channel: raised.Envelope.Channel, Key: raised.Envelope.Key, OccurredAt: raised.Envelope.OccurredAt, Consumer: "h", Replayed: true}
	if diff := cmp.Diff(want, evMeta); diff != "" {
		t.Errorf("event handler meta (-want +got):\n%s", diff)
	}
}

func TestBusRedispatch(t *testing.T) {
	reg := newRegistry()
	log, rec := newRecordingLogger()
	dl := &dispatchLog{}
	b := messaging.NewBus(log, dl)
	var got []any
	var metas []messaging.Meta
	messaging.HandleEvent(b, "placed", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) {
		got = append(got, e)
		metas = append(metas, messaging.MetaFrom(ctx))
		return nil, nil
	})
	messaging.HandleEvent(b, "reserved", func(ctx context.Context, e stockReserved) ([]messaging.Raised, error) {
		got = append(got, e)
		metas = append(metas, messaging.MetaFrom(ctx))
		return nil, nil
	})

	ctx := messaging.StartFlow(context.Background(), "")
	e1 := raise(t, ctx, reg, orderPlaced{SKU: "A", N: 1}).Envelope
	e2 := raise(t, ctx, reg, stockReserved{SKU: "A", N: 2}).Envelope
	e3 := raise(t, ctx, reg, orderPlaced{SKU: "B", N: 3}).Envelope
	unknown := messaging.Envelope{ID: "bad-1", Channel: "gone", Payload: json.RawMessage(`{}`)}
	malformed := messaging.Envelope{ID: "bad-2", Channel: "order_placed", Payload: json.RawMessage(`{"n":"x"}`)}

	b.Redispatch(context.Background(), reg, []messaging.Envelope{e1, unknown, e2, malformed, e3})

	want := []any{orderPlaced{SKU: "A", N: 1}, stockReserved{SKU: "A", N: 2}, orderPlaced{SKU: "B", N: 3}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("redispatched events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{e1.ID, e2.ID, e3.ID}, dl.ids()); diff != "" {
		t.Errorf("dispatched ids (-want +got):\n%s", diff)
	}
	for i, env := range []messaging.Envelope{e1, e2, e3} {
		wantMeta := messaging.Meta{MessageID: env.ID, CorrelationID: env.CorrelationID, CausationID: env.CausationID, Channel: env.Channel, Key: env.Key, OccurredAt: env.OccurredAt, Consumer: []string{"placed", "reserved", "placed"}[i], Replayed: true}
		if diff := cmp.Diff(wantMeta, metas[i]); diff != "" {
			t.Errorf("meta of redispatched %d (-want +got):\n%s", i, diff)
		}
	}
	bad := rec.find("undecodable event in outbox")
	if len(bad) != 2 {
		t.Fatalf("got %d 'undecodable event' records, want 2", len(bad))
	}
	for i, id := range []string{"bad-1", "bad-2"} {
		if bad[i].Attrs["id"] != id || bad[i].Level != slog.LevelError {
			t.Errorf("undecodable record %d = %+v, want id %s at ERROR", i, bad[i], id)
		}
	}

	// Nothing decodable: nothing dispatched.
	dl2 := &dispatchLog{}
	b2 := messaging.NewBus(discardLogger(), dl2)
	b2.Redispatch(context.Background(), reg, []messaging.Envelope{unknown})
	b2.Redispatch(context.Background(), reg, nil)
	if len(dl2.calls) != 0 {
		t.Errorf("MarkDispatched called with nothing dispatched: %v", dl2.calls)
	}
}

type busMetrics struct {
	mu    sync.Mutex
	kinds []string
	errs  []bool
}

func (m *busMetrics) Handled(kind string, err error, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kinds = append(m.kinds, kind)
	m.errs = append(m.errs, err != nil)
}

func TestBusMetrics(t *testing.T) {
	reg := newRegistry()
	b := messaging.NewBus(discardLogger(), nil)
	m := &busMetrics{}
	b.SetMetrics(m)
	messaging.HandleCommand(b, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
		return nil, []messaging.Raised{raise(t, ctx, reg, orderPlaced{})}, nil
	})
	messaging.HandleEvent(b, "ok", func(context.Context, orderPlaced) ([]messaging.Raised, error) { return nil, nil })
	messaging.HandleEvent(b, "bad", func(context.Context, orderPlaced) ([]messaging.Raised, error) { return nil, errBoom })
	b.Handle(context.Background(), placeOrder{})
	if diff := cmp.Diff([]string{"placeOrder", "orderPlaced", "orderPlaced"}, m.kinds); diff != "" {
		t.Errorf("metrics kinds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{false, false, true}, m.errs); diff != "" {
		t.Errorf("metrics errors (-want +got):\n%s", diff)
	}
}

func TestBusConcurrentHandle(t *testing.T) {
	reg := newRegistry()
	dl := &dispatchLog{}
	b := messaging.NewBus(discardLogger(), dl)
	var mu sync.Mutex
	handled := 0
	messaging.HandleCommand(b, func(ctx context.Context, c placeOrder) (any, []messaging.Raised, error) {
		return c.Qty, []messaging.Raised{raise(t, ctx, reg, orderPlaced{N: c.Qty})}, nil
	})
	messaging.HandleEvent(b, "count", func(context.Context, orderPlaced) ([]messaging.Raised, error) {
		mu.Lock()
		handled++
		mu.Unlock()
		return nil, nil
	})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			res, err := b.Handle(context.Background(), placeOrder{Qty: i})
			if err != nil || res != i {
				t.Errorf("Handle(%d) = %v, %v", i, res, err)
			}
		})
	}
	wg.Wait()
	if handled != 50 || len(dl.ids()) != 50 {
		t.Errorf("handled %d events, dispatched %d; want 50, 50", handled, len(dl.ids()))
	}
}

// A timer not yet due is not handled by the bus that raised it: it is
// published when due, to whoever consumes its channel.
func TestBusLeavesTimersToTheRelay(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry()
	b := messaging.NewBus(discardLogger(), nil)
	var handled []int
	messaging.HandleEvent(b, "h", func(_ context.Context, e orderPlaced) ([]messaging.Raised, error) {
		handled = append(handled, e.N)
		return nil, nil
	})
	now := raise(t, ctx, reg, orderPlaced{SKU: "LAMP", N: 1})
	later := messaging.DeliverAfter(raise(t, ctx, reg, orderPlaced{SKU: "LAMP", N: 2}), time.Hour)
	past := messaging.DeliverAt(raise(t, ctx, reg, orderPlaced{SKU: "LAMP", N: 3}), time.Now().Add(-time.Second))
	if err := b.Dispatch(ctx, []messaging.Raised{now, later, past}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(handled, []int{1, 3}) {
		t.Errorf("handled %v, want 1 and 3 (2 is a timer an hour ahead)", handled)
	}
}

// levelRecorder keeps the level of each log record.
type levelRecorder struct {
	mu     sync.Mutex
	levels []slog.Level
}

func (r *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *levelRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.levels = append(r.levels, rec.Level)
	return nil
}
func (r *levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *levelRecorder) WithGroup(string) slog.Handler      { return r }

// A handling cut short because the service stops is no error of the
// message's: it is logged as information, and the message comes again.
func TestBusStoppingIsNoError(t *testing.T) {
	rec := &levelRecorder{}
	b := messaging.NewBus(slog.New(rec), nil)
	messaging.HandleEvent(b, "h", func(ctx context.Context, e orderPlaced) ([]messaging.Raised, error) { return nil, ctx.Err() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Dispatch(ctx, []messaging.Raised{{Envelope: messaging.Envelope{ID: "e1", Channel: "order_placed"}, Event: orderPlaced{}}})
	if err == nil {
		t.Fatal("the handling cut short reported no error: the message would not come again")
	}
	for _, l := range rec.levels {
		if l >= slog.LevelWarn {
			t.Errorf("logged at %s, want info", l)
		}
	}
}
