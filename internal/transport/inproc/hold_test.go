package inproc_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/transport/inproc"
)

// A held transport publishes nothing until released: a group that
// subscribes meanwhile sees what was published before it did.
func TestHoldUntilEveryGroupSubscribed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := inproc.New()
	tr.Hold()
	published := make(chan error, 1)
	go func() {
		published <- tr.Publish(ctx, messaging.Envelope{ID: "m1", Channel: "batch_created"})
	}()
	select {
	case err := <-published:
		t.Fatalf("Publish returned (%v) while held", err)
	case <-time.After(50 * time.Millisecond):
	}
	var got atomic.Int32
	go tr.Subscribe(ctx, "warehouse", []string{"batch_created"}, func(context.Context, messaging.Delivery) error {
		got.Add(1)
		return nil
	})
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	if err := tr.AwaitGroups(actx, "warehouse"); err != nil {
		t.Fatal(err)
	}
	tr.Release()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if got.Load() != 1 {
		t.Fatalf("the group subscribed while held got %d messages, want 1", got.Load())
	}
	// A group that never comes: AwaitGroups gives up with ctx.
	short, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer scancel()
	if err := tr.AwaitGroups(short, "nobody"); err == nil {
		t.Fatal("AwaitGroups of a group that never subscribed returned nil")
	}
	// A held publisher whose context ends gives up.
	tr.Hold()
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer pcancel()
	if err := tr.Publish(pctx, messaging.Envelope{ID: "m2", Channel: "batch_created"}); err == nil {
		t.Fatal("a held Publish whose context ended returned nil")
	}
	tr.Release()
}
