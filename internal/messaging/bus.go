package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
)

// Raised is an event that an aggregate raised and a unit of work committed,
// with the envelope it was stored in (in the outbox).
type Raised struct {
	Envelope Envelope
	Event    any
}

// CommandHandler handles a command of type C. It returns the command's
// result, the events its transaction committed, and its error.
type CommandHandler[C any] func(ctx context.Context, cmd C) (result any, raised []Raised, err error)

// EventHandler handles an event of type E and returns the events its
// transaction committed.
type EventHandler[E any] func(ctx context.Context, ev E) ([]Raised, error)

// DispatchLog records which committed events the bus has handed to every
// local handler, so that events left over by a crash are handed again.
type DispatchLog interface {
	MarkDispatched(ctx context.Context, ids []string) error
}

// Bus is the message bus: each command goes to its one handler and its
// error to the caller; the events committed meanwhile go, in order, to
// every handler of their type, and so do the events those raise. A failing
// event handler is logged and the others go on.
type Bus struct {
	log      *slog.Logger
	dispatch DispatchLog
	commands map[reflect.Type]func(context.Context, any) (any, []Raised, error)
	events   map[reflect.Type][]namedHandler
	metrics  BusMetrics
	receipts bool
}

type namedHandler struct {
	name       string
	idempotent bool
	fn         func(context.Context, any) ([]Raised, error)
}

// BusMetrics observes the bus; nil methods are fine to leave out.
type BusMetrics interface {
	Handled(kind string, err error, d time.Duration)
}

// NewBus returns a bus that logs to log and records dispatched events in
// dispatch (which may be nil).
func NewBus(log *slog.Logger, dispatch DispatchLog) *Bus {
	return &Bus{
		log:      log,
		dispatch: dispatch,
		commands: map[reflect.Type]func(context.Context, any) (any, []Raised, error){},
		events:   map[reflect.Type][]namedHandler{},
	}
}

// SetReceipts makes the handlers that handle each message once record a
// receipt of it (see Receipt).
func (b *Bus) SetReceipts(on bool) { b.receipts = on }

// SetMetrics makes the bus report to m.
func (b *Bus) SetMetrics(m BusMetrics) { b.metrics = m }

// HandleCommand makes h the handler of commands of type C.
func HandleCommand[C any](b *Bus, h CommandHandler[C]) {
	t := reflect.TypeFor[C]()
	if _, dup := b.commands[t]; dup {
		panic(fmt.Sprintf("messaging: second handler for command %v", t))
	}
	b.commands[t] = func(ctx context.Context, c any) (any, []Raised, error) { return h(ctx, c.(C)) }
}

// HandleEvent adds h, named name, to the handlers of events of type E. An
// event may reach h again (redelivered, or handed again after a crash):
// h's unit of work skips it, by the inbox entry it records under name.
// Keep the name stable.
func HandleEvent[E any](b *Bus, name string, h EventHandler[E]) {
	addEventHandler(b, name, false, h)
}

// HandleIdempotentEvent adds h, named name, to the handlers of events of
// type E, as HandleEvent does, for a handler that makes handling an event
// twice harmless by itself (an upsert, say): no inbox entry is kept.
func HandleIdempotentEvent[E any](b *Bus, name string, h EventHandler[E]) {
	addEventHandler(b, name, true, h)
}

func addEventHandler[E any](b *Bus, name string, idempotent bool, h EventHandler[E]) {
	t := reflect.TypeFor[E]()
	b.events[t] = append(b.events[t], namedHandler{name, idempotent, func(ctx context.Context, e any) ([]Raised, error) {
		return h(ctx, e.(E))
	}})
}

// IsCommand reports whether msg is a command with a handler.
func (b *Bus) IsCommand(msg any) bool {
	_, ok := b.commands[reflect.TypeOf(msg)]
	return ok
}

// ErrNoHandler: a command nobody handles.
var ErrNoHandler = errors.New("messaging: no handler")

// Handle hands cmd to its handler, then the events it committed to theirs,
// and returns the command's result and error. A context that carries no
// message starts a flow.
func (b *Bus) Handle(ctx context.Context, cmd any) (any, error) {
	h, ok := b.commands[reflect.TypeOf(cmd)]
	if !ok {
		return nil, fmt.Errorf("%w for command %T", ErrNoHandler, cmd)
	}
	if MetaFrom(ctx).MessageID == "" {
		ctx = StartFlow(ctx, "")
	}
	start := time.Now()
	var res any
	var raised []Raised
	err := recovered(func() (err error) { res, raised, err = h(ctx, cmd); return err })
	b.logHandled(ctx, typeName(cmd), "", err, start)
	// The command's outcome stands, whatever becomes of its caller (an HTTP
	// client that went away): its events are handled all the same. Failures
	// were logged and are retried from the outbox.
	b.Dispatch(context.WithoutCancel(ctx), raised)
	return res, err
}

// Dispatch hands committed events, and the events their handlers commit, to
// every handler of their type, in order; it then records the ones whose
// every handler succeeded in the dispatch log. A failing handler does not
// stop the others; Dispatch returns the failures, joined. The events are
// committed ones, kept in the outbox until dispatched.
func (b *Bus) Dispatch(ctx context.Context, queue []Raised) error {
	return b.dispatchEvents(ctx, queue, true)
}

// dispatchEvents dispatches queue; replayed tells whether its first
// events are handed again if their handling is lost (the events they
// raise are: they are committed).
func (b *Bus) dispatchEvents(ctx context.Context, queue []Raised, replayed bool) error {
	if len(queue) == 0 {
		return nil
	}
	var done []string
	var errs []error
	notReplayed := 0
	if !replayed {
		notReplayed = len(queue)
	}
	now := time.Now()
	for i := 0; len(queue) > 0; i++ {
		r := queue[0]
		queue = queue[1:]
		if r.Envelope.Scheduled(now) {
			continue // a timer: published when due, not handled here now
		}
		ok := true
		for _, h := range b.events[reflect.TypeOf(r.Event)] {
			consumer := h.name
			if h.idempotent {
				consumer = ""
			}
			m := metaOf(r.Envelope, consumer)
			m.Replayed = i >= notReplayed
			m.Receipts = b.receipts
			hctx := WithMeta(ctx, m)
			start := time.Now()
			var more []Raised
			err := recovered(func() (err error) { more, err = h.fn(hctx, r.Event); return err })
			b.logHandled(hctx, typeName(r.Event), h.name, err, start)
			if err != nil {
				ok = false
				errs = append(errs, fmt.Errorf("%s: %w", h.name, err))
				continue
			}
			queue = append(queue, more...)
		}
		if ok {
			done = append(done, r.Envelope.ID)
		}
	}
	if b.dispatch != nil && len(done) > 0 {
		if err := b.dispatch.MarkDispatched(context.WithoutCancel(ctx), done); err != nil {
			b.log.ErrorContext(ctx, "recording dispatched events", "err", err, "count", len(done))
		}
	}
	return errors.Join(errs...)
}

// Redispatch hands events decoded from their envelopes to their handlers:
// events a crash left undispatched. Handlers that already handled one skip
// it (the inbox).
func (b *Bus) Redispatch(ctx context.Context, reg *Registry, envs []Envelope) {
	queue := make([]Raised, 0, len(envs))
	for _, env := range envs {
		ev, err := reg.Decode(env)
		if err != nil {
			b.log.ErrorContext(ctx, "undecodable event in outbox", "id", env.ID, "channel", env.Channel, "err", err)
			continue
		}
		queue = append(queue, Raised{env, ev})
	}
	b.Dispatch(ctx, queue)
}

func (b *Bus) logHandled(ctx context.Context, kind, handler string, err error, start time.Time) {
	d := time.Since(start)
	if b.metrics != nil {
		b.metrics.Handled(kind, err, d)
	}
	// One line a message is too many to keep at full load: it is a debug
	// line, unless the handling failed or was slow.
	level := slog.LevelDebug
	var panicked *PanicError
	switch {
	case stopping(ctx, err):
		level = slog.LevelInfo // the service stops; the message comes again
	case err != nil && (handler != "" || errors.As(err, &panicked)):
		level = slog.LevelError
	case err != nil && fail.Retryable(err) && !fail.IsSettled(err):
		level = slog.LevelWarn // the command failed for a reason of stockflow's
	case d >= SlowHandling:
		level = slog.LevelWarn
	}
	if !b.log.Enabled(ctx, level) {
		return
	}
	m := MetaFrom(ctx)
	attrs := []slog.Attr{
		slog.String("type", kind),
		slog.String("message_id", m.MessageID),
		slog.String("correlation_id", m.CorrelationID),
		slog.Float64("duration_ms", ms(d)),
	}
	if d >= SlowHandling {
		attrs = append(attrs, slog.Bool("slow", true))
	}
	if handler != "" {
		attrs = append(attrs, slog.String("handler", handler))
	}
	if m.CausationID != "" {
		attrs = append(attrs, slog.String("causation_id", m.CausationID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	if panicked != nil {
		attrs = append(attrs, slog.String("stack", string(panicked.Stack)))
	}
	b.log.LogAttrs(ctx, level, "message handled", attrs...)
}

func typeName(v any) string {
	t := reflect.TypeOf(v)
	return t.Name()
}

// SlowHandling is how long handling a message may take before its line is
// logged as a warning.
const SlowHandling = 500 * time.Millisecond

// ms returns d in milliseconds, the unit of every logged duration
// (duration_ms).
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PanicError is a handler's panic, turned into its error: the message it
// was handling fails, like any failure (it is handed again, and
// dead-lettered once its attempts run out), and the process goes on.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// recovered runs fn, turning a panic into a *PanicError.
func recovered(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// stopping reports whether err is the handling's context ending: the
// service is stopping, and the message will be handed again (by the
// broker, or from the outbox); no failure of the message's.
func stopping(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
