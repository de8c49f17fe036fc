package domain_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/flows/domain"
)

func TestKeysOf(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    domain.Keys
	}{
		{"top level", `{"orderid":"o1","customer":"c1","sku":"LAMP","batchref":"b1","qty":3}`,
			domain.Keys{Order: "o1", Customer: "c1", SKU: "LAMP", Batch: "b1", Qty: 3}},
		{"ref names the batch", `{"ref":"b1","sku":"LAMP","qty":100,"eta":null}`,
			domain.Keys{SKU: "LAMP", Batch: "b1", Qty: 100}},
		{"batchref wins over ref", `{"batchref":"b1","ref":"b2"}`, domain.Keys{Batch: "b1"}},
		{"only some keys", `{"orderid":"o1"}`, domain.Keys{Order: "o1"}},
		{"other fields ignored", `{"orderid":"o1","reason":"damaged","nested":{"sku":"X"}}`, domain.Keys{Order: "o1"}},
		{"empty object", `{}`, domain.Keys{}},
		{"lines sharing sku and batch",
			`{"orderid":"o1","customer":"c1","lines":[{"sku":"LAMP","batchref":"b1","qty":2},{"sku":"LAMP","batchref":"b1","qty":3}]}`,
			domain.Keys{Order: "o1", Customer: "c1", SKU: "LAMP", Batch: "b1", Qty: 5}},
		{"lines sharing sku, not batch",
			`{"orderid":"o1","lines":[{"sku":"LAMP","batchref":"b1","qty":2},{"sku":"LAMP","batchref":"b2","qty":3}]}`,
			domain.Keys{Order: "o1", SKU: "LAMP", Qty: 5}},
		{"lines sharing batch, not sku",
			`{"orderid":"o1","lines":[{"sku":"LAMP","batchref":"b1","qty":2},{"sku":"DESK","batchref":"b1","qty":1}]}`,
			domain.Keys{Order: "o1", Batch: "b1", Qty: 3}},
		{"lines differing",
			`{"orderid":"o1","lines":[{"sku":"LAMP","qty":2},{"sku":"DESK","qty":1}]}`,
			domain.Keys{Order: "o1", Qty: 3}},
		{"one line", `{"orderid":"o1","lines":[{"sku":"LAMP","qty":4}]}`,
			domain.Keys{Order: "o1", SKU: "LAMP", Qty: 4}},
		{"empty lines", `{"orderid":"o1","lines":[]}`, domain.Keys{Order: "o1"}},
		{"a top-level sku wins over lines",
			`{"sku":"LAMP","qty":1,"lines":[{"sku":"DESK","batchref":"b9","qty":7}]}`,
			domain.Keys{SKU: "LAMP", Qty: 1}},
		{"not JSON", `not json`, domain.Keys{}},
		{"truncated JSON", `{"orderid":"o1"`, domain.Keys{}},
		{"empty", ``, domain.Keys{}},
		{"JSON string", `"{\"orderid\":\"o1\"}"`, domain.Keys{}},
		{"JSON array", `[{"orderid":"o1"}]`, domain.Keys{}},
		{"JSON number", `42`, domain.Keys{}},
		{"JSON null", `null`, domain.Keys{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, domain.KeysOf([]byte(tt.payload))); diff != "" {
				t.Errorf("KeysOf(%s) (-want +got):\n%s", tt.payload, diff)
			}
		})
	}
}

// A message is found by its order even when another of its fields is not
// of the type stockflow's messages give it (a message from outside).
func TestKeysOfKeepsTheKeysBesideAFieldOfAnotherType(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    domain.Keys
	}{
		{"qty as a string", `{"orderid":"o1","sku":"LAMP","qty":"3"}`, domain.Keys{Order: "o1", SKU: "LAMP"}},
		{"fractional qty", `{"orderid":"o1","sku":"LAMP","qty":1.5}`, domain.Keys{Order: "o1", SKU: "LAMP"}},
		{"lines as an object", `{"orderid":"o1","lines":{"LAMP":2}}`, domain.Keys{Order: "o1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, domain.KeysOf([]byte(tt.payload))); diff != "" {
				t.Errorf("KeysOf(%s) (-want +got):\n%s", tt.payload, diff)
			}
		})
	}
}

func TestServiceOf(t *testing.T) {
	tests := []struct{ handler, want string }{
		{"allocation.reserve_cart_item", "allocation"},
		{"allocation/cart_item_added", "allocation"},
		{"allocation/cart_item_added#LAMP", "allocation"},
		{"allocation.dispatch_order#LAMP", "allocation"},
		{"warehouse.ship", "warehouse"},
		{"flows", "flows"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := domain.ServiceOf(tt.handler); got != tt.want {
			t.Errorf("ServiceOf(%q) = %q, want %q", tt.handler, got, tt.want)
		}
	}
}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func msg(id, cause string, occurred time.Time) domain.Message {
	return domain.Message{ID: id, Channel: "c", CorrelationID: "corr", CausationID: cause, OccurredAt: occurred}
}

// shape is a tree as ids, hops and handlers, for diffs.
type shape struct {
	ID        string
	HopMS     float64
	Failed    bool
	Handlings []string
	Children  []shape
}

func shapeOf(ns []*domain.Node) []shape {
	var out []shape
	for _, n := range ns {
		s := shape{ID: n.ID, HopMS: n.HopMS, Failed: n.Failed(), Children: shapeOf(n.Children)}
		for _, h := range n.Handlings {
			s.Handlings = append(s.Handlings, h.Handler+"="+h.Outcome)
		}
		out = append(out, s)
	}
	return out
}

func TestTree(t *testing.T) {
	tests := []struct {
		name      string
		msgs      []domain.Message
		handlings []domain.Handling
		want      []shape
	}{
		{
			name: "empty",
		},
		{
			name: "a message under its cause",
			msgs: []domain.Message{msg("a", "", at(0)), msg("b", "a", at(3)), msg("c", "b", at(10))},
			want: []shape{{ID: "a", Children: []shape{{ID: "b", HopMS: 3, Children: []shape{{ID: "c", HopMS: 7}}}}}},
		},
		{
			name: "given in any order",
			msgs: []domain.Message{msg("c", "b", at(10)), msg("b", "a", at(3)), msg("a", "", at(0))},
			want: []shape{{ID: "a", Children: []shape{{ID: "b", HopMS: 3, Children: []shape{{ID: "c", HopMS: 7}}}}}},
		},
		{
			name: "a root when its cause is unknown or itself",
			msgs: []domain.Message{msg("x", "elsewhere", at(2)), msg("y", "y", at(1)), msg("z", "", at(3))},
			want: []shape{{ID: "y"}, {ID: "x"}, {ID: "z"}},
		},
		{
			name: "children ordered by occurred_at then id",
			msgs: []domain.Message{
				msg("root", "", at(0)),
				msg("late", "root", at(20)),
				msg("b-early", "root", at(5)),
				msg("a-early", "root", at(5)),
			},
			want: []shape{{ID: "root", Children: []shape{{ID: "a-early", HopMS: 5}, {ID: "b-early", HopMS: 5}, {ID: "late", HopMS: 20}}}},
		},
		{
			name: "roots ordered by occurred_at then id, a zero time first",
			msgs: []domain.Message{msg("r3", "", at(9)), msg("r2", "", at(1)), msg("r1", "", at(1)), msg("r0", "", time.Time{})},
			want: []shape{{ID: "r0"}, {ID: "r1"}, {ID: "r2"}, {ID: "r3"}},
		},
		{
			name: "hop of a fraction of a millisecond",
			msgs: []domain.Message{msg("a", "", t0), msg("b", "a", t0.Add(1500*time.Microsecond))},
			want: []shape{{ID: "a", Children: []shape{{ID: "b", HopMS: 1.5}}}},
		},
		{
			name: "no hop when a time is unknown",
			msgs: []domain.Message{
				msg("a", "", time.Time{}), msg("b", "a", at(4)),
				msg("c", "", at(1)), msg("d", "c", time.Time{}),
			},
			want: []shape{{ID: "a", Children: []shape{{ID: "b"}}}, {ID: "c", Children: []shape{{ID: "d"}}}},
		},
		{
			name: "handlings sorted by time, unknown messages' ignored",
			msgs: []domain.Message{msg("a", "", at(0)), msg("b", "a", at(1))},
			handlings: []domain.Handling{
				{MessageID: "a", Handler: "orders.second", Outcome: domain.Handled, At: at(5)},
				{MessageID: "ghost", Handler: "orders.ghost", Outcome: domain.Handled, At: at(1)},
				{MessageID: "a", Handler: "allocation.first", Outcome: domain.Handled, At: at(2)},
				{MessageID: "b", Handler: "warehouse.ship", Outcome: domain.Duplicate, At: at(3)},
			},
			want: []shape{{ID: "a", Handlings: []string{"allocation.first=handled", "orders.second=handled"},
				Children: []shape{{ID: "b", HopMS: 1, Handlings: []string{"warehouse.ship=duplicate"}}}}},
		},
		{
			name: "failed when a handling is dead_lettered",
			msgs: []domain.Message{msg("a", "", at(0)), msg("b", "a", at(1))},
			handlings: []domain.Handling{
				{MessageID: "a", Handler: "orders.x", Outcome: domain.Handled, At: at(1)},
				{MessageID: "b", Handler: "orders.y", Outcome: domain.Handled, At: at(2)},
				{MessageID: "b", Handler: "allocation/b", Outcome: domain.DeadLettered, At: at(3)},
			},
			want: []shape{{ID: "a", Handlings: []string{"orders.x=handled"},
				Children: []shape{{ID: "b", HopMS: 1, Failed: true, Handlings: []string{"orders.y=handled", "allocation/b=dead_lettered"}}}}},
		},
		{
			name: "a message whose cause is unknown goes under the message whose handling raised it",
			msgs: []domain.Message{msg("a", "", at(0)), msg("b", "elsewhere", at(2)), msg("c", "", at(3))},
			handlings: []domain.Handling{
				{MessageID: "a", Handler: "orders.x", Outcome: domain.Handled, At: at(1), Raised: []string{"b", "c"}},
			},
			want: []shape{{ID: "a", Handlings: []string{"orders.x=handled"}, Children: []shape{{ID: "b", HopMS: 2}, {ID: "c", HopMS: 3}}}},
		},
		{
			name: "the cause named wins over a receipt",
			msgs: []domain.Message{msg("a", "", at(0)), msg("b", "", at(1)), msg("c", "a", at(2))},
			handlings: []domain.Handling{
				{MessageID: "b", Handler: "orders.x", Outcome: domain.Handled, At: at(1), Raised: []string{"c"}},
			},
			want: []shape{{ID: "a", Children: []shape{{ID: "c", HopMS: 2}}}, {ID: "b", Handlings: []string{"orders.x=handled"}}},
		},
		{
			name: "raised by a message not in the trace: a root",
			msgs: []domain.Message{msg("a", "", at(0)), msg("b", "", at(1))},
			handlings: []domain.Handling{
				{MessageID: "ghost", Handler: "orders.x", Outcome: domain.Handled, At: at(1), Raised: []string{"b"}},
			},
			want: []shape{{ID: "a"}, {ID: "b"}},
		},
		{
			name: "a duplicate is no failure",
			msgs: []domain.Message{msg("a", "", at(0))},
			handlings: []domain.Handling{
				{MessageID: "a", Handler: "orders.x", Outcome: domain.Duplicate, At: at(1)},
			},
			want: []shape{{ID: "a", Handlings: []string{"orders.x=duplicate"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.Tree(tt.msgs, tt.handlings)
			if diff := cmp.Diff(tt.want, shapeOf(got)); diff != "" {
				t.Errorf("Tree (-want +got):\n%s", diff)
			}
		})
	}
}

// Every node has a non-nil list of handlings, so that it reads as [] in
// JSON, and keeps its message whole.
func TestTreeNodes(t *testing.T) {
	m := domain.Message{ID: "a", Channel: "order_placed", Key: "o1", CorrelationID: "a", OccurredAt: at(0),
		Payload: []byte(`{"orderid":"o1"}`), Producer: "orders", Keys: domain.Keys{Order: "o1"}}
	got := domain.Tree([]domain.Message{m}, nil)
	if len(got) != 1 {
		t.Fatalf("Tree of one message = %d roots, want 1", len(got))
	}
	if got[0].Handlings == nil {
		t.Error("Handlings of a message nobody handled is nil, want empty")
	}
	if diff := cmp.Diff(m, got[0].Message); diff != "" {
		t.Errorf("node's message (-want +got):\n%s", diff)
	}
	if got[0].Failed() {
		t.Error("a message nobody handled is Failed")
	}
}

// Tree's contract: a message a receipt says raised, that does not name its
// cause, is placed under the receipt's message.
func TestTreePlacesRaisedUnderTheReceiptsMessage(t *testing.T) {
	msgs := []domain.Message{msg("a", "", at(0)), msg("b", "", at(2))}
	hs := []domain.Handling{{MessageID: "a", Handler: "orders.place", Outcome: domain.Handled, At: at(1), Raised: []string{"b"}}}
	want := []shape{{ID: "a", Handlings: []string{"orders.place=handled"}, Children: []shape{{ID: "b", HopMS: 2}}}}
	if diff := cmp.Diff(want, shapeOf(domain.Tree(msgs, hs))); diff != "" {
		t.Errorf("Tree (-want +got):\n%s", diff)
	}
}

// Messages whose causes lead back to themselves (ids that name each
// other) are roots: none is lost from the trace.
func TestTreeKeepsMessagesThatNameEachOther(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	roots := domain.Tree([]domain.Message{
		{ID: "a", CausationID: "b", OccurredAt: at},
		{ID: "b", CausationID: "a", OccurredAt: at.Add(time.Millisecond)},
		{ID: "c", CausationID: "a", OccurredAt: at.Add(2 * time.Millisecond)},
	}, nil)
	var ids []string
	var walk func(ns []*domain.Node)
	walk = func(ns []*domain.Node) {
		for _, n := range ns {
			ids = append(ids, n.ID)
			walk(n.Children)
		}
	}
	walk(roots)
	if len(ids) != 3 {
		t.Fatalf("the tree holds %v, want a, b and c", ids)
	}
}
