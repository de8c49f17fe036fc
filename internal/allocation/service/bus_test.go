package service_test

// The event handlers through the bus: the inbox, failing handlers and the
// dispatch log, and the ids that tie a flow's messages together.

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/messaging"
)

// raise wraps ev in an envelope, as if a unit of work had committed it.
func raise(t *testing.T, ctx context.Context, ev domain.Event) messaging.Raised {
	t.Helper()
	env, err := service.Messages().Envelope(ctx, ev)
	if err != nil {
		t.Fatalf("Envelope(%T): %v", ev, err)
	}
	return messaging.Raised{Envelope: env, Event: ev}
}

// Inbox

func TestEventHandledTwiceUnderSameMessageAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	ev := domain.Deallocated{OrderID: "o1", SKU: "S", Qty: 4, BatchRef: "b9", Reason: domain.ReasonBatchShrank}
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m-1", CorrelationID: "c-1", Consumer: "allocation.reallocate"})

	first, err := f.handlers.Reallocate(ctx, ev)
	if err != nil {
		t.Fatalf("first Reallocate: %v", err)
	}
	// The line is deallocated meanwhile: were the message handled again, it
	// would be allocated again.
	f.handle(t, domain.Deallocate{OrderID: "o1", SKU: "S", Qty: 4})
	committed, n := f.store.committedCount(), f.store.outboxLen()

	second, err := f.handlers.Reallocate(ctx, ev)
	if err != nil {
		t.Fatalf("second Reallocate: %v", err)
	}
	if len(first) != 1 || len(second) != 0 {
		t.Errorf("raised %d then %d events, want 1 then 0", len(first), len(second))
	}
	if got := f.store.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
	if got := f.store.outboxLen(); got != n {
		t.Errorf("outbox has %d messages, want %d", got, n)
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 10})
	if !f.store.inboxHas("allocation.reallocate", "m-1") {
		t.Error("inbox did not record the message")
	}

	// Another consumer of the same message is not fooled by the inbox.
	other := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m-1", Consumer: "someone.else"})
	if raised, err := f.handlers.Reallocate(other, ev); err != nil || len(raised) != 1 {
		t.Errorf("Reallocate as another consumer = %d events, %v; want 1, nil", len(raised), err)
	}
}

func TestReadModelEventHandledTwiceAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m-1", Consumer: "allocation.read_model.add"})
	ev := domain.Allocated{OrderID: "o1", SKU: "S", Qty: 1, BatchRef: "b1"}
	for range 2 {
		if _, err := f.handlers.AddAllocationToReadModel(ctx, ev); err != nil {
			t.Fatalf("AddAllocationToReadModel: %v", err)
		}
	}
	if got := f.store.setAllocationCalls(); got != 1 {
		t.Errorf("SetAllocation called %d times, want 1", got)
	}
	if got := f.store.committedCount(); got != 1 {
		t.Errorf("committed = %d, want 1", got)
	}
}

func TestDispatchSameEventTwiceKeepsOneRow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	// The line is allocated, its event not yet dispatched.
	_, raised, err := f.handlers.Allocate(messaging.StartFlow(t.Context(), ""), domain.Allocate{OrderID: "o1", SKU: "S", Qty: 1})
	if err != nil || len(raised) != 1 {
		t.Fatalf("Allocate: %v, %v", raised, err)
	}
	r := raised[0]

	f.bus.Dispatch(t.Context(), []messaging.Raised{r})
	f.bus.Dispatch(t.Context(), []messaging.Raised{r})

	// The read model's handlers are idempotent: they keep no inbox entry,
	// and the second handling changes nothing.
	if diff := cmp.Diff([]viewRow{{"o1", "S", "b1"}}, f.store.viewRows(), cmp.AllowUnexported(viewRow{})); diff != "" {
		t.Errorf("read model rows (-want +got):\n%s", diff)
	}
	if f.store.inboxHas("allocation.read_model.add", r.Envelope.ID) {
		t.Error("inbox recorded (allocation.read_model.add, the event's id): idempotent handlers keep none")
	}
}

// Failing event handlers

func TestFailingEventHandlerIsLoggedAndOthersGoOn(t *testing.T) {
	t.Parallel()
	f := newObservedFixture(t)
	var spied []domain.Allocated
	messaging.HandleEvent(f.bus, "test.spy", func(ctx context.Context, ev domain.Allocated) ([]messaging.Raised, error) {
		spied = append(spied, ev)
		return nil, nil
	})
	f.createBatch(t, "b1", "S", 10, noETA)
	f.store.failSetAllocations(1)

	if got := f.allocate(t, "o1", "S", 2); got != "b1" {
		t.Fatalf("Allocate = %q, want b1: an event handler's failure is not the command's", got)
	}

	want := domain.Allocated{OrderID: "o1", SKU: "S", Qty: 2, BatchRef: "b1"}
	if diff := cmp.Diff([]domain.Allocated{want}, spied, ignoreVersions); diff != "" {
		t.Errorf("the handler after the failing one got (-want +got):\n%s", diff)
	}
	assertView(t, f.store, "o1", nil)

	errs := f.logs.errorRecords()
	if len(errs) != 1 {
		t.Fatalf("logged %d errors, want 1: %v", len(errs), errs)
	}
	if errs[0]["handler"] != "allocation.read_model.add" || errs[0]["err"] != errReadModelDown.Error() || errs[0]["type"] != "Allocated" {
		t.Errorf("error logged = %v", errs[0])
	}

	raised := f.store.raised()
	allocated := raised[len(raised)-1]
	if _, ok := allocated.Event.(domain.Allocated); !ok {
		t.Fatalf("last event in the outbox is %T", allocated.Event)
	}
	if slices.Contains(f.dispatch.marked(), allocated.Envelope.ID) {
		t.Error("the event whose handler failed was marked dispatched")
	}
	if created := raised[0].Envelope.ID; !slices.Contains(f.dispatch.marked(), created) {
		t.Error("BatchCreated, whose handlers (none) all succeeded, was not marked dispatched")
	}

	// Redispatched later (what the service does with undispatched events),
	// it reaches the read model.
	f.bus.Redispatch(t.Context(), service.Messages(), []messaging.Envelope{allocated.Envelope})
	assertView(t, f.store, "o1", []service.AllocationView{{SKU: "S", BatchRef: "b1"}})
	if !slices.Contains(f.dispatch.marked(), allocated.Envelope.ID) {
		t.Error("the redispatched event was not marked dispatched")
	}
}

func TestFailingEventHandlerDoesNotStopTheQueue(t *testing.T) {
	t.Parallel()
	f := newObservedFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	f.allocate(t, "o1", "S", 3)
	f.allocate(t, "o2", "S", 3)
	n := f.store.outboxLen()
	f.store.failSetAllocations(1) // the first reallocation's row

	f.handle(t, domain.ChangeBatchQuantity{Ref: "b1", Qty: 0})

	raised := f.store.raised()[n:]
	var kinds []string
	for _, r := range raised {
		kinds = append(kinds, r.Envelope.Channel)
	}
	wantKinds := []string{
		service.ChannelBatchQuantityChanged,
		service.ChannelLineDeallocated, service.ChannelLineDeallocated,
		service.ChannelLineAllocated, service.ChannelLineAllocated,
	}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Fatalf("outbox (-want +got):\n%s", diff)
	}
	// o1, the oldest, was reallocated first; its row failed, o2's did not.
	assertView(t, f.store, "o1", nil)
	assertView(t, f.store, "o2", []service.AllocationView{{SKU: "S", BatchRef: "b2"}})

	marked := f.dispatch.marked()
	for i, r := range raised {
		failed := i == 3
		if got := slices.Contains(marked, r.Envelope.ID); got == failed {
			t.Errorf("%s %v: marked dispatched = %v, want %v", r.Envelope.Channel, r.Event, got, !failed)
		}
	}
	if errs := f.logs.errorRecords(); len(errs) != 1 {
		t.Errorf("logged %d errors, want 1: %v", len(errs), errs)
	}
}

// Correlation

func TestEventsCarryTheCommandsFlow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := messaging.StartFlow(t.Context(), "corr-1")
	cmdID := messaging.MetaFrom(ctx).MessageID

	if _, err := f.bus.Handle(ctx, domain.CreateBatch{Ref: "b1", SKU: "S", Qty: 10}); err != nil {
		t.Fatal(err)
	}
	raised := f.store.raised()
	if len(raised) != 1 {
		t.Fatalf("outbox has %d messages, want 1", len(raised))
	}
	env := raised[0].Envelope
	if env.CorrelationID != "corr-1" || env.CausationID != cmdID {
		t.Errorf("BatchCreated: correlation %q, causation %q; want corr-1, %s", env.CorrelationID, env.CausationID, cmdID)
	}

	// A command handled with no flow in its context starts one.
	if _, err := f.bus.Handle(t.Context(), domain.Allocate{OrderID: "o1", SKU: "S", Qty: 1}); err != nil {
		t.Fatal(err)
	}
	env = f.store.raised()[1].Envelope
	if env.CausationID == "" || env.CorrelationID != env.CausationID {
		t.Errorf("Allocated of a new flow: correlation %q, causation %q; want both the command's id", env.CorrelationID, env.CausationID)
	}
}

func TestReallocationCarriesTheFlow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	f.allocate(t, "o1", "S", 5)
	n := f.store.outboxLen()

	ctx := messaging.StartFlow(t.Context(), "corr-2")
	cmdID := messaging.MetaFrom(ctx).MessageID
	if _, err := f.bus.Handle(ctx, domain.ChangeBatchQuantity{Ref: "b1", Qty: 1}); err != nil {
		t.Fatal(err)
	}

	// The line moves in the change itself: the three events are the
	// command's, at one version, the deallocation before the allocation.
	raised := f.store.raised()[n:]
	if len(raised) != 3 {
		t.Fatalf("outbox got %d messages, want 3 (changed, deallocated, allocated)", len(raised))
	}
	dealloc, ok1 := raised[1].Event.(domain.Deallocated)
	alloc, ok2 := raised[2].Event.(domain.Allocated)
	if !ok1 || !ok2 {
		t.Fatalf("events %T, %T; want Deallocated then Allocated", raised[1].Event, raised[2].Event)
	}
	if alloc.BatchRef != "b2" || dealloc.Version != alloc.Version {
		t.Errorf("deallocated %+v, allocated %+v: want b2, at the same version", dealloc, alloc)
	}
	for i, r := range raised {
		if r.Envelope.CorrelationID != "corr-2" || r.Envelope.CausationID != cmdID {
			t.Errorf("event %d: correlation %q, causation %q; want corr-2, %s", i, r.Envelope.CorrelationID, r.Envelope.CausationID, cmdID)
		}
	}
	// No handler reallocates it again; the read model's, idempotent, keep
	// no inbox entries.
	for _, k := range []inboxKey{
		{"allocation.reallocate", raised[1].Envelope.ID},
		{"allocation.read_model.remove", raised[1].Envelope.ID},
		{"allocation.read_model.add", raised[2].Envelope.ID},
	} {
		if f.store.inboxHas(k.consumer, k.messageID) {
			t.Errorf("inbox has %+v", k)
		}
	}
}

// A Deallocated of an earlier version (no version), left in the outbox,
// is still allocated again by the handler, in a flow of its own.
func TestLegacyDeallocationIsReallocated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.createBatch(t, "b2", "S", 10, tomorrow)
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "old-1", CorrelationID: "corr-old", Consumer: "allocation.reallocate"})
	raised, err := f.handlers.Reallocate(ctx, domain.Deallocated{OrderID: "o1", SKU: "S", Qty: 3, BatchRef: "b0", Reason: domain.ReasonBatchShrank})
	if err != nil {
		t.Fatal(err)
	}
	if len(raised) != 1 || raised[0].Envelope.CausationID != "old-1" {
		t.Fatalf("raised %+v, want one Allocated caused by old-1", raised)
	}
	if a, ok := raised[0].Event.(domain.Allocated); !ok || a.BatchRef != "b1" {
		t.Errorf("raised %+v, want o1 allocated to b1", raised[0].Event)
	}
	if !f.store.inboxHas("allocation.reallocate", "old-1") {
		t.Errorf("inbox lacks the legacy event")
	}
	// One of this version is not handled again.
	if raised, err := f.handlers.Reallocate(t.Context(), domain.Deallocated{OrderID: "o2", SKU: "S", Qty: 3, BatchRef: "b0", Reason: domain.ReasonBatchShrank, Version: 4}); err != nil || len(raised) != 0 {
		t.Errorf("a versioned Deallocated was reallocated: %+v, %v", raised, err)
	}
}

// A command redelivered by a consumer runs once: the bus keeps the meta
// the consumer put in the context, and the unit of work its inbox.
func TestCommandRedeliveredUnderSameMessageAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "m-7", CorrelationID: "m-7", Consumer: "allocation/" + service.ChannelChangeBatchQuantity})

	for i := range 2 {
		if _, err := f.bus.Handle(ctx, domain.ChangeBatchQuantity{Ref: "b1", Qty: 5 + i}); err != nil {
			t.Fatalf("Handle %d: %v", i+1, err)
		}
	}
	assertBatch(t, f.store, domain.Batch{Ref: "b1", SKU: "S", Purchased: 5})
	if got := f.store.version("S"); got != 2 {
		t.Errorf("version = %d, want 2", got)
	}
}

func TestDispatchLogSkipsNothingWhenAllSucceed(t *testing.T) {
	t.Parallel()
	f := newObservedFixture(t)
	f.createBatch(t, "b1", "S", 10, noETA)
	f.allocate(t, "o1", "S", 1)
	f.handle(t, domain.Deallocate{OrderID: "o1", SKU: "S", Qty: 1})

	var ids []string
	for _, r := range f.store.raised() {
		ids = append(ids, r.Envelope.ID)
	}
	if diff := cmp.Diff(ids, f.dispatch.marked()); diff != "" {
		t.Errorf("marked dispatched (-outbox +marked):\n%s", diff)
	}
	if errs := f.logs.errorRecords(); len(errs) != 0 {
		t.Errorf("logged errors: %v", errs)
	}
}
