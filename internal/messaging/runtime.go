package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Store is what a service's runtime needs of its store's messaging tables:
// the outbox, the dispatch log, the dead letters and the inbox's upkeep.
type Store interface {
	Outbox
	DispatchLog
	DeadLetters
	// MarkDone records that the messages were both published and
	// dispatched: they leave the outbox.
	MarkDone(ctx context.Context, ids []string) error
	// Undispatched returns events committed at least olderThan ago that
	// the bus has not handed to every local handler, and that it tried
	// fewer than maxAttempts times.
	Undispatched(ctx context.Context, olderThan time.Duration, limit, maxAttempts int) ([]Envelope, error)
	// ForgetHandled drops inbox entries older than age.
	ForgetHandled(ctx context.Context, age time.Duration) error
	// Depth returns how many messages wait in the outbox, and since when
	// the oldest waits.
	Depth(ctx context.Context) (int, time.Time, error)
}

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	// Name is the service's name: its consumer group.
	Name      string
	Registry  *Registry
	Store     Store
	Transport Transport
	Log       *slog.Logger
	// Inbound are the channels the service consumes.
	Inbound []string
	// Replay makes the consumer group read again every message the broker
	// keeps, from the oldest (a durable transport only).
	Replay bool
	// Bus is the service's bus, and Dispatched the dispatch log it records
	// dispatched events in (made with NewDispatchLog over Store).
	Bus        *Bus
	Dispatched *BufferedDispatchLog
	// Wake is rung after each commit that stored messages in the outbox
	// (the store's unit of work rings it): the relay publishes them.
	Wake Wake
	// Metrics, when set, observe the bus, relay and consumer.
	Metrics RuntimeMetrics
}

// NewDispatchLog returns the dispatch log to give a service's bus over
// store; the service's Runtime runs it.
func NewDispatchLog(store DispatchLog, log *slog.Logger) *BufferedDispatchLog {
	return NewBufferedDispatchLog(store, 50*time.Millisecond, log)
}

// Wake is a doorbell: a store rings it after a commit that stored
// messages, and the relay, listening, publishes them without waiting for
// its next poll.
type Wake chan struct{}

// NewWake returns a doorbell.
func NewWake() Wake { return make(Wake, 1) }

// Notify rings the doorbell; it never blocks.
func (w Wake) Notify() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// RuntimeMetrics observes a runtime's bus, relay and consumer.
type RuntimeMetrics interface {
	BusMetrics
	RelayMetrics
	ConsumerMetrics
}

// Runtime is the messaging side of one running service: the relay that
// publishes its outbox, the consumer of its inbound channels, the dispatch
// log of its bus, and the housekeeping that hands leftover events again.
// Every service runs one; what differs between services is their bus.
type Runtime struct {
	Relay    *Relay
	Consumer *Consumer
	// Dispatched is the dispatch log of the service's bus.
	Dispatched *BufferedDispatchLog

	cfg RuntimeConfig
	bus *Bus
}

// NewRuntime returns the runtime of a service, around its bus.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if _, ok := cfg.Transport.(Rewinder); cfg.Replay && !ok {
		return nil, fmt.Errorf("%s: --replay: the broker keeps no history to replay", cfg.Name)
	}
	if cfg.Bus == nil || cfg.Dispatched == nil {
		return nil, fmt.Errorf("%s: a runtime needs its bus and dispatch log", cfg.Name)
	}
	if cfg.Wake == nil {
		cfg.Wake = NewWake()
	}
	r := &Runtime{cfg: cfg, bus: cfg.Bus, Dispatched: cfg.Dispatched}
	r.Relay = &Relay{Outbox: relayOutbox{cfg.Store, cfg.Dispatched}, Publisher: cfg.Transport, Log: cfg.Log, wake: cfg.Wake}
	r.Consumer = &Consumer{
		Name:        cfg.Name,
		Registry:    cfg.Registry,
		Bus:         cfg.Bus,
		DeadLetters: relayedDeadLetters{cfg.Store, cfg.Wake},
		Log:         cfg.Log,
	}
	if m := cfg.Metrics; m != nil {
		cfg.Bus.SetMetrics(m)
		r.Relay.Metrics = m
		r.Consumer.Metrics = m
	}
	return r, nil
}

// Recover hands the events a crash left undispatched, committed at least
// olderThan ago, to their handlers.
func (r *Runtime) Recover(ctx context.Context, olderThan time.Duration) error {
	for {
		envs, err := r.cfg.Store.Undispatched(ctx, olderThan, 256, 5)
		if err != nil {
			return err
		}
		if len(envs) == 0 {
			return nil
		}
		r.cfg.Log.InfoContext(ctx, "dispatching events left over", "service", r.cfg.Name, "count", len(envs))
		r.bus.Redispatch(ctx, r.cfg.Registry, envs)
		r.Dispatched.Flush(ctx)
		if len(envs) < 256 {
			return nil
		}
	}
}

// Run runs the relay, the consumer of the inbound channels, the dispatch
// log and the housekeeping until ctx is done.
func (r *Runtime) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s %s: %w", r.cfg.Name, name, err)
			}
		}()
	}
	run("relay", r.Relay.Run)
	if len(r.cfg.Inbound) > 0 {
		run("consumer", func(ctx context.Context) error {
			if r.cfg.Replay {
				if err := r.cfg.Transport.(Rewinder).Rewind(ctx, r.cfg.Name, r.cfg.Inbound); err != nil {
					return fmt.Errorf("replay: %w", err)
				}
				r.cfg.Log.InfoContext(ctx, "replaying the retained history", "group", r.cfg.Name, "channels", r.cfg.Inbound)
			}
			return r.Consumer.Run(ctx, r.cfg.Transport, r.cfg.Inbound...)
		})
	}
	run("dispatch log", r.Dispatched.Run)
	run("housekeeping", r.housekeeping)
	wg.Wait()
	close(errc)
	return <-errc
}

// housekeeping retries local event handlers that failed, and forgets inbox
// entries old enough that no redelivery will come.
func (r *Runtime) housekeeping(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := r.Recover(ctx, 10*time.Second); err != nil && ctx.Err() == nil {
			r.cfg.Log.WarnContext(ctx, "recovering undispatched events", "service", r.cfg.Name, "err", err)
		}
		if time.Since(last) > time.Hour {
			if err := r.cfg.Store.ForgetHandled(ctx, 7*24*time.Hour); err != nil && ctx.Err() == nil {
				r.cfg.Log.WarnContext(ctx, "pruning the inbox", "service", r.cfg.Name, "err", err)
			}
			last = time.Now()
		}
	}
}

// relayOutbox is the outbox as the runtime's relay sees it. Most messages
// it publishes, the bus has dispatched a moment before, and the dispatch
// log holds them still, unwritten: those the relay records as done, one
// write instead of a mark for each side.
type relayOutbox struct {
	Store
	dispatched *BufferedDispatchLog
}

// PromoteDue moves due timers into the outbox, when the store keeps any.
func (o relayOutbox) PromoteDue(ctx context.Context, now time.Time, limit int) (int, error) {
	if s, ok := o.Store.(Scheduler); ok {
		return s.PromoteDue(ctx, now, limit)
	}
	return 0, nil
}

func (o relayOutbox) MarkPublished(ctx context.Context, ids []string) error {
	done := o.dispatched.Take(ids)
	if len(done) == 0 {
		return o.Store.MarkPublished(ctx, ids)
	}
	taken := make(map[string]bool, len(done))
	for _, id := range done {
		taken[id] = true
	}
	var rest []string
	for _, id := range ids {
		if !taken[id] {
			rest = append(rest, id)
		}
	}
	if len(rest) > 0 {
		if err := o.Store.MarkPublished(ctx, rest); err != nil {
			o.dispatched.Put(done) // the dispatch log writes them
			return err
		}
	}
	if err := o.Store.MarkDone(ctx, done); err != nil {
		o.dispatched.Put(done)
		return err
	}
	return nil
}

// DeadLetters lists the service's latest dead letters.
func (r *Runtime) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	return r.cfg.Store.DeadLetters(ctx, limit)
}

// relayedDeadLetters wakes the relay once a dead letter is kept: its
// publication on DeadLetterChannel waits in the outbox, like any message.
type relayedDeadLetters struct {
	store DeadLetters
	wake  Wake
}

func (d relayedDeadLetters) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	return d.store.DeadLetters(ctx, limit)
}

func (d relayedDeadLetters) AddDeadLetter(ctx context.Context, dl DeadLetter) error {
	err := d.store.AddDeadLetter(ctx, dl)
	if err == nil {
		d.wake.Notify()
	}
	return err
}
