// Package storetest is the contract every journal store (service.Store)
// must meet: one suite, run against each adapter (SQLite, PostgreSQL).
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
)

// Run runs the contract suite. newStore returns an empty store.
func Run(t *testing.T, newStore func(t *testing.T) service.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s service.Store)
	}{
		{"RecordAndRead", testRecordAndRead},
		{"RecordMessageIsIdempotent", testRecordMessageIdempotent},
		{"RecordHandlingIsIdempotent", testRecordHandlingIdempotent},
		{"HandlingsOfOneMessageKeptApart", testHandlingsApart},
		{"ByMessage", testByMessage},
		{"ByCorrelation", testByCorrelation},
		{"ByOrder", testByOrder},
		{"ByBatch", testByBatch},
		{"NothingFound", testNothingFound},
		{"LimitKeepsTheEarliest", testLimit},
		{"Handlings", testHandlings},
		{"ZeroOccurredAt", testZeroOccurredAt},
		{"PruneEverything", testPruneEverything},
		{"PruneNothing", testPruneNothing},
		{"PruneKeepsWhatIsSeenSinceTheCut", testPruneSome},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
	runPageQueries(t, newStore)
}

var ctx = context.Background()

// t0 is a time the stores keep exactly (microseconds, UTC).
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// message returns a message of the flow corr caused by cause, its keys
// read from payload as the handlers read them.
func message(id, channel, corr, cause string, occurred time.Time, payload string) domain.Message {
	return domain.Message{ID: id, Channel: channel, Key: "k-" + id, CorrelationID: corr, CausationID: cause,
		OccurredAt: occurred, Payload: json.RawMessage(payload), Producer: "orders", Keys: domain.KeysOf([]byte(payload))}
}

func record(t *testing.T, s service.Store, msgs ...domain.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := s.RecordMessage(ctx, m); err != nil {
			t.Fatalf("RecordMessage(%s): %v", m.ID, err)
		}
	}
}

func handle(t *testing.T, s service.Store, hs ...domain.Handling) {
	t.Helper()
	for _, h := range hs {
		if err := s.RecordHandling(ctx, h); err != nil {
			t.Fatalf("RecordHandling(%s, %s): %v", h.MessageID, h.Handler, err)
		}
	}
}

func read(t *testing.T, s service.Store, q service.Query) ([]domain.Message, []domain.Handling) {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = service.DefaultLimit
	}
	msgs, hs, err := s.Messages(ctx, q)
	if err != nil {
		t.Fatalf("Messages(%+v): %v", q, err)
	}
	return msgs, hs
}

func ids(msgs []domain.Message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// sameHandlings compares handlings: the stores promise no order among
// them (Tree sorts them), and no raised ids read as nil or empty alike
// (both are omitted from JSON).
var sameHandlings = cmp.Options{sortHandlings, cmpopts.EquateEmpty()}

var sortHandlings = cmpopts.SortSlices(func(a, b domain.Handling) bool {
	if a.MessageID != b.MessageID {
		return a.MessageID < b.MessageID
	}
	if !a.At.Equal(b.At) {
		return a.At.Before(b.At)
	}
	if a.Handler != b.Handler {
		return a.Handler < b.Handler
	}
	return a.Outcome < b.Outcome
})

// journey is an order's journey: o1 placed and allocated, then a damage
// report on its batch, a flow of its own, moving its line; another order
// o2 on another batch; and a flow that names neither.
var journey = []domain.Message{
	message("m1", "order_placed", "flow-o1", "", at(0), `{"orderid":"o1","customer":"c1","lines":[{"sku":"LAMP","qty":2}]}`),
	message("m2", "allocated", "flow-o1", "m1", at(5), `{"orderid":"o1","sku":"LAMP","qty":2,"batchref":"b1"}`),
	message("m3", "goods_dispatched", "flow-o1", "m2", at(9), `{"orderid":"o1","lines":[{"sku":"LAMP","batchref":"b1","qty":2}]}`),
	message("d1", "batch_damaged", "flow-damage", "", at(20), `{"batchref":"b1","sku":"LAMP","qty":1}`),
	message("d2", "line_moved", "flow-damage", "d1", at(25), `{"orderid":"o1","sku":"LAMP","batchref":"b2","qty":2}`),
	message("d3", "batch_changed", "flow-damage", "d1", at(26), `{"batchref":"b1","qty":9}`),
	message("p1", "order_placed", "flow-o2", "", at(1), `{"orderid":"o2","lines":[{"sku":"DESK","qty":1}]}`),
	message("p2", "allocated", "flow-o2", "p1", at(4), `{"orderid":"o2","sku":"DESK","qty":1,"batchref":"b3"}`),
	message("x1", "batch_created", "flow-x", "", at(2), `{"ref":"b4","sku":"CHAIR","qty":10}`),
}

func testRecordAndRead(t *testing.T, s service.Store) {
	m := journey[1]
	record(t, s, m)
	msgs, hs := read(t, s, service.Query{Message: m.ID})
	if diff := cmp.Diff([]domain.Message{m}, msgs); diff != "" {
		t.Errorf("messages read back (-want +got):\n%s", diff)
	}
	if len(hs) != 0 {
		t.Errorf("handlings of a message nobody handled: %+v", hs)
	}
}

func testRecordMessageIdempotent(t *testing.T, s service.Store) {
	m := journey[0]
	record(t, s, m)
	record(t, s, m)
	again := m
	again.Channel, again.CorrelationID, again.CausationID, again.OccurredAt = "other", "flow-other", "m0", at(99)
	again.Payload, again.Producer, again.Keys = json.RawMessage(`{"orderid":"o9"}`), "warehouse", domain.Keys{Order: "o9"}
	record(t, s, again)
	msgs, _ := read(t, s, service.Query{Correlation: m.CorrelationID})
	if diff := cmp.Diff([]domain.Message{m}, msgs); diff != "" {
		t.Errorf("after recording again (-want +got):\n%s", diff)
	}
	for _, q := range []service.Query{{Correlation: "flow-other"}, {Order: "o9"}} {
		if msgs, _ := read(t, s, q); len(msgs) != 0 {
			t.Errorf("Messages(%+v) found %v: the second record took", q, ids(msgs))
		}
	}
}

func testRecordHandlingIdempotent(t *testing.T, s service.Store) {
	record(t, s, journey[0])
	h := domain.Handling{MessageID: "m1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Handled,
		At: at(3), DurationMS: 1.25, Raised: []string{"m2"}}
	handle(t, s, h, h)
	again := h
	again.Service, again.DurationMS, again.Raised, again.Reason, again.Attempts = "other", 99, []string{"zz"}, "why", 7
	handle(t, s, again)
	_, hs := read(t, s, service.Query{Message: "m1"})
	if diff := cmp.Diff([]domain.Handling{h}, hs, sameHandlings); diff != "" {
		t.Errorf("after recording again (-want +got):\n%s", diff)
	}
}

// Handlings of one message by several handlers, or by one with another
// outcome or at another time, are several.
func testHandlingsApart(t *testing.T, s service.Store) {
	record(t, s, journey[0])
	hs := []domain.Handling{
		{MessageID: "m1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Handled, At: at(3)},
		{MessageID: "m1", Service: "crm", Handler: "crm.order_placed", Outcome: domain.Handled, At: at(3)},
		{MessageID: "m1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Duplicate, At: at(3)},
		{MessageID: "m1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Duplicate, At: at(8)},
	}
	handle(t, s, hs...)
	_, got := read(t, s, service.Query{Message: "m1"})
	if diff := cmp.Diff(hs, got, sameHandlings); diff != "" {
		t.Errorf("handlings (-want +got):\n%s", diff)
	}
}

func testByMessage(t *testing.T, s service.Store) {
	record(t, s, journey...)
	tests := []struct {
		id   string
		want []string
	}{
		{"m1", []string{"m1", "m2", "m3"}},
		{"m3", []string{"m1", "m2", "m3"}},
		{"d2", []string{"d1", "d2", "d3"}},
		{"x1", []string{"x1"}},
		{"nope", []string{}},
	}
	for _, tt := range tests {
		msgs, _ := read(t, s, service.Query{Message: tt.id})
		if diff := cmp.Diff(tt.want, ids(msgs)); diff != "" {
			t.Errorf("flow of message %s (-want +got):\n%s", tt.id, diff)
		}
	}
	msgs, _ := read(t, s, service.Query{Message: "m2"})
	if diff := cmp.Diff(journey[:3], msgs); diff != "" {
		t.Errorf("messages of m2's flow (-want +got):\n%s", diff)
	}
}

func testByCorrelation(t *testing.T, s service.Store) {
	record(t, s, journey...)
	tests := []struct {
		corr string
		want []string
	}{
		{"flow-o1", []string{"m1", "m2", "m3"}},
		{"flow-damage", []string{"d1", "d2", "d3"}},
		{"flow-o2", []string{"p1", "p2"}},
		{"m1", []string{}}, // a message id is no correlation id
		{"nope", []string{}},
	}
	for _, tt := range tests {
		msgs, _ := read(t, s, service.Query{Correlation: tt.corr})
		if diff := cmp.Diff(tt.want, ids(msgs)); diff != "" {
			t.Errorf("flow %s (-want +got):\n%s", tt.corr, diff)
		}
	}
}

// An order's trace is every flow a message of the order took part in:
// its own, and the damage report's, started by a batch, which moved its
// line; not another order's, nor one that names neither.
func testByOrder(t *testing.T, s service.Store) {
	record(t, s, journey...)
	tests := []struct {
		order string
		want  []string
	}{
		{"o1", []string{"m1", "m2", "m3", "d1", "d2", "d3"}},
		{"o2", []string{"p1", "p2"}},
		{"c1", []string{}}, // a customer is no order
		{"nope", []string{}},
	}
	for _, tt := range tests {
		msgs, _ := read(t, s, service.Query{Order: tt.order})
		if diff := cmp.Diff(tt.want, ids(msgs)); diff != "" {
			t.Errorf("flows of order %s (-want +got):\n%s", tt.order, diff)
		}
	}
}

// A batch's trace is every flow a message naming the batch (as batchref,
// ref, or the batch of all its lines) took part in.
func testByBatch(t *testing.T, s service.Store) {
	record(t, s, journey...)
	tests := []struct {
		batch string
		want  []string
	}{
		{"b1", []string{"m1", "m2", "m3", "d1", "d2", "d3"}},
		{"b2", []string{"d1", "d2", "d3"}},
		{"b3", []string{"p1", "p2"}},
		{"b4", []string{"x1"}}, // named as ref
		{"LAMP", []string{}},   // a sku is no batch
		{"nope", []string{}},
	}
	for _, tt := range tests {
		msgs, _ := read(t, s, service.Query{Batch: tt.batch})
		if diff := cmp.Diff(tt.want, ids(msgs)); diff != "" {
			t.Errorf("flows of batch %s (-want +got):\n%s", tt.batch, diff)
		}
	}
}

func testNothingFound(t *testing.T, s service.Store) {
	for _, q := range []service.Query{{Message: "m1"}, {Correlation: "flow-o1"}, {Order: "o1"}, {Batch: "b1"}} {
		msgs, hs := read(t, s, q)
		if len(msgs) != 0 || len(hs) != 0 {
			t.Errorf("Messages(%+v) of an empty journal = %v, %v", q, msgs, hs)
		}
	}
}

func testLimit(t *testing.T, s service.Store) {
	record(t, s, journey...)
	// Same instant: ordered by id.
	record(t, s, message("m0b", "x", "flow-o1", "m1", at(5), `{}`), message("m0a", "x", "flow-o1", "m1", at(5), `{}`))
	tests := []struct {
		q    service.Query
		want []string
	}{
		{service.Query{Order: "o1", Limit: 1}, []string{"m1"}},
		{service.Query{Order: "o1", Limit: 4}, []string{"m1", "m0a", "m0b", "m2"}},
		{service.Query{Correlation: "flow-o1", Limit: 3}, []string{"m1", "m0a", "m0b"}},
		{service.Query{Message: "d3", Limit: 2}, []string{"d1", "d2"}},
		{service.Query{Order: "o1", Limit: 100}, []string{"m1", "m0a", "m0b", "m2", "m3", "d1", "d2", "d3"}},
	}
	for _, tt := range tests {
		msgs, _ := read(t, s, tt.q)
		if diff := cmp.Diff(tt.want, ids(msgs)); diff != "" {
			t.Errorf("Messages(%+v) (-want +got):\n%s", tt.q, diff)
		}
	}
	// The handlings are those of the messages returned.
	handle(t, s,
		domain.Handling{MessageID: "m1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Handled, At: at(1)},
		domain.Handling{MessageID: "m3", Service: "warehouse", Handler: "warehouse.ship", Outcome: domain.Handled, At: at(10)},
	)
	_, hs := read(t, s, service.Query{Correlation: "flow-o1", Limit: 2})
	if len(hs) != 1 || hs[0].MessageID != "m1" {
		t.Errorf("handlings of the 2 earliest messages = %+v, want m1's only", hs)
	}
}

func testHandlings(t *testing.T, s service.Store) {
	record(t, s, journey...)
	hs := []domain.Handling{
		{MessageID: "m1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Handled,
			At: at(2), DurationMS: 1.5, Raised: []string{"m2"}},
		{MessageID: "m1", Service: "crm", Handler: "crm/order_placed", Outcome: domain.Handled,
			At: at(3), DurationMS: 0.25},
		{MessageID: "m2", Service: "warehouse", Handler: "warehouse.reserve", Outcome: domain.Handled,
			At: at(6), DurationMS: 12.75, Raised: []string{"m3", "zz-unseen"},
			Timers: []domain.Timer{{ID: "zz-unseen", Channel: "batch_arrival_due", DueAt: at(3_600_000)}}},
		{MessageID: "m2", Service: "warehouse", Handler: "warehouse.reserve", Outcome: domain.Duplicate, At: at(7)},
		{MessageID: "m3", Service: "notifications", Handler: "notifications/goods_dispatched#LAMP", Outcome: domain.DeadLettered,
			At: at(12), Reason: "smtp: 550 mailbox unavailable", Attempts: 5},
		// Another flow's, and a message the journal never saw.
		{MessageID: "p1", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Handled, At: at(2)},
		{MessageID: "ghost", Service: "allocation", Handler: "allocation.allocate", Outcome: domain.Handled, At: at(2)},
	}
	handle(t, s, hs...)
	msgs, got := read(t, s, service.Query{Correlation: "flow-o1"})
	if diff := cmp.Diff(journey[:3], msgs); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(hs[:5], got, sameHandlings); diff != "" {
		t.Errorf("handlings (-want +got):\n%s", diff)
	}
	_, got = read(t, s, service.Query{Order: "o2"})
	if diff := cmp.Diff(hs[5:6], got, sameHandlings); diff != "" {
		t.Errorf("handlings of o2 (-want +got):\n%s", diff)
	}
}

// Messages whose time is unknown (a dead letter that did not say) are
// kept with a zero OccurredAt, before the others.
func testZeroOccurredAt(t *testing.T, s service.Store) {
	undated := message("u1", "order_placed", "flow-u", "", time.Time{}, `"not an object"`)
	dated := message("u2", "allocated", "flow-u", "u1", at(1), `{"orderid":"o7"}`)
	undated2 := message("u0", "order_placed", "flow-u", "", time.Time{}, `{"orderid":"o7"}`)
	record(t, s, dated, undated, undated2)
	handle(t, s, domain.Handling{MessageID: "u1", Service: "allocation", Handler: "allocation/order_placed",
		Outcome: domain.DeadLettered, At: at(3), Reason: "bad payload", Attempts: 1})
	msgs, hs := read(t, s, service.Query{Order: "o7"})
	if diff := cmp.Diff([]domain.Message{undated2, undated, dated}, msgs); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if len(hs) != 1 || hs[0].MessageID != "u1" {
		t.Errorf("handlings = %+v, want u1's", hs)
	}
	for _, m := range msgs {
		if m.OccurredAt.IsZero() != (m.ID != "u2") {
			t.Errorf("message %s occurred at %v", m.ID, m.OccurredAt)
		}
	}
}

func count(t *testing.T, s service.Store) (msgs, hs int) {
	t.Helper()
	for _, corr := range []string{"flow-o1", "flow-damage", "flow-o2", "flow-x"} {
		m, h := read(t, s, service.Query{Correlation: corr})
		msgs, hs = msgs+len(m), hs+len(h)
	}
	return msgs, hs
}

func fill(t *testing.T, s service.Store) (msgs, hs int) {
	t.Helper()
	record(t, s, journey...)
	for i, m := range journey {
		handle(t, s, domain.Handling{MessageID: m.ID, Service: "allocation", Handler: "allocation.h", Outcome: domain.Handled,
			At: at(100 + i), Raised: []string{fmt.Sprint("r", i)}})
	}
	return len(journey), len(journey)
}

func testPruneEverything(t *testing.T, s service.Store) {
	nm, _ := fill(t, s)
	// A handling of a message the journal never saw, old.
	handle(t, s, domain.Handling{MessageID: "ghost", Service: "allocation", Handler: "allocation.h", Outcome: domain.Handled, At: at(0)})
	n, err := s.Prune(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != nm {
		t.Errorf("Prune forgot %d messages, want %d", n, nm)
	}
	if m, h := count(t, s); m != 0 || h != 0 {
		t.Errorf("after pruning everything: %d messages, %d handlings", m, h)
	}
	// The ghost's handling went too: seen again with its message, it is
	// not there.
	record(t, s, message("ghost", "x", "flow-x", "", at(0), `{}`))
	if _, hs := read(t, s, service.Query{Message: "ghost"}); len(hs) != 0 {
		t.Errorf("an old handling of an unseen message survived pruning: %+v", hs)
	}
	// The journal goes on.
	record(t, s, journey[0])
	if msgs, _ := read(t, s, service.Query{Message: "m1"}); len(msgs) != 1 {
		t.Errorf("a message recorded after pruning: found %d", len(msgs))
	}
}

func testPruneNothing(t *testing.T, s service.Store) {
	nm, nh := fill(t, s)
	n, err := s.Prune(ctx, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("Prune before anything was seen forgot %d messages", n)
	}
	if m, h := count(t, s); m != nm || h != nh {
		t.Errorf("after pruning nothing: %d messages, %d handlings, want %d, %d", m, h, nm, nh)
	}
}

// Prune keeps the messages seen since the cut with all their handlings,
// however old the handlings; of the messages the journal never saw, it
// forgets the handlings older than the cut, and keeps the others. (The
// store sets the time a message is seen: the cut is in the past.)
func testPruneSome(t *testing.T, s service.Store) {
	nm, nh := fill(t, s)
	cut := time.Now().Add(-time.Hour)
	old := domain.Handling{MessageID: "ghost-old", Service: "allocation", Handler: "allocation.h", Outcome: domain.Handled, At: at(0)}
	recent := domain.Handling{MessageID: "ghost-new", Service: "allocation", Handler: "allocation.h", Outcome: domain.Handled,
		At: time.Now().UTC().Truncate(time.Microsecond)}
	handle(t, s, old, recent)
	n, err := s.Prune(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("Prune forgot %d messages seen since the cut", n)
	}
	if m, h := count(t, s); m != nm || h != nh {
		t.Errorf("after pruning: %d messages, %d handlings, want %d, %d", m, h, nm, nh)
	}
	record(t, s, message("ghost-old", "x", "flow-ghost", "", at(0), `{}`), message("ghost-new", "x", "flow-ghost", "", at(1), `{}`))
	_, hs := read(t, s, service.Query{Correlation: "flow-ghost"})
	if diff := cmp.Diff([]domain.Handling{recent}, hs, sameHandlings); diff != "" {
		t.Errorf("handlings of messages seen after pruning (-want +got):\n%s", diff)
	}
}
