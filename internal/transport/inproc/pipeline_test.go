package inproc

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/messaging"
)

// The messages of the pipeline test.
type reserve struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

func (r reserve) Validate() error {
	if r.Qty <= 0 {
		return errors.New("qty must be positive")
	}
	return nil
}

// pipeOutbox is an in-memory relay outbox.
type pipeOutbox struct {
	mu        sync.Mutex
	msgs      []messaging.Envelope
	published map[string]bool
}

func (o *pipeOutbox) Unpublished(ctx context.Context, limit int) ([]messaging.Envelope, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []messaging.Envelope
	for _, m := range o.msgs {
		if !o.published[m.ID] && len(out) < limit {
			out = append(out, m)
		}
	}
	return out, nil
}

func (o *pipeOutbox) MarkPublished(ctx context.Context, ids []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		o.published[id] = true
	}
	return nil
}

func (o *pipeOutbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs) - len(o.published)
}

type pipeDead struct {
	mu   sync.Mutex
	list []messaging.DeadLetter
}

func (d *pipeDead) AddDeadLetter(ctx context.Context, dl messaging.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, dl)
	return nil
}

func (d *pipeDead) DeadLetters(ctx context.Context, limit int) ([]messaging.DeadLetter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.list), nil
}

// TestPipeline runs outbox -> relay -> inproc -> consumer -> bus: every
// message arrives once handled or dead-lettered, a transient failure is
// redelivered under the same id, and the relay empties the outbox.
func TestPipeline(t *testing.T) {
	reg := messaging.NewRegistry()
	messaging.Register(reg, "reserve", func(r reserve) string { return r.SKU }, nil)

	var mu sync.Mutex
	var handled []string
	attempts := map[string]int{}
	bus := messaging.NewBus(discardLogger(), nil)
	messaging.HandleCommand(bus, func(ctx context.Context, r reserve) (any, []messaging.Raised, error) {
		mu.Lock()
		defer mu.Unlock()
		id := messaging.MetaFrom(ctx).MessageID
		attempts[id]++
		if r.SKU == "FLAKY" && attempts[id] < 3 {
			return nil, nil, errors.New("database is locked")
		}
		if r.SKU == "GONE" {
			return nil, nil, messaging.Permanent(errors.New("no such sku"))
		}
		handled = append(handled, r.SKU)
		return nil, nil, nil
	})
	dead := &pipeDead{}
	consumer := &messaging.Consumer{Name: "allocation", Registry: reg, Bus: bus, DeadLetters: dead, Log: discardLogger(), MaxAttempts: 5}

	tr := New()
	tr.Retry = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { consumer.Run(ctx, tr, "reserve") })
	waitFor(t, "consumer subscribed", func() bool { return subscribers(tr, "reserve") == 1 })

	ob := &pipeOutbox{published: map[string]bool{}}
	flow := messaging.StartFlow(context.Background(), "")
	for _, r := range []reserve{{"A", 1}, {"FLAKY", 1}, {"B", 0}, {"GONE", 1}, {"C", 2}} {
		env, err := reg.Envelope(flow, r)
		if err != nil {
			t.Fatal(err)
		}
		ob.msgs = append(ob.msgs, env)
	}
	relay := messaging.NewRelay(ob, tr, discardLogger())
	relay.Poll = time.Hour
	wg.Go(func() { relay.Run(ctx) })
	relay.Notify()
	waitFor(t, "outbox emptied", func() bool { return ob.pending() == 0 })
	cancel()
	wg.Wait()

	if diff := cmp.Diff([]string{"A", "FLAKY", "C"}, handled); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}
	if got := attempts[ob.msgs[1].ID]; got != 3 {
		t.Errorf("FLAKY handled %d times under its id, want 3", got)
	}
	var reasons []string
	for _, d := range dead.list {
		reasons = append(reasons, d.MessageID+": "+d.Reason)
	}
	want := []string{ob.msgs[2].ID + ": qty must be positive", ob.msgs[3].ID + ": no such sku"}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
}
