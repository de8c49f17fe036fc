package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// TestDeadLettersOverDurableBrokers publishes poison allocate messages,
// each followed by a good one of the same sku (so in order behind it), on
// each durable broker: the good ones are applied; "stockflow dead-letters
// --data DIR" lists each poison message once, with its reason; and a group
// of the test's own subscribed to dead_letters receives a JSON record of
// each, with the same reason, payload and message id.
func TestDeadLettersOverDurableBrokers(t *testing.T) {
	for _, kind := range brokerKinds(true) {
		t.Run(kind.name, func(t *testing.T) {
			b := kind.start(t)
			dir := t.TempDir()
			s := serveOn(t, dir, b)
			w := b.watch(t, chanDeadLetters)

			sku, ref := uniq("sku"), uniq("batch")
			s.addBatch(t, ref, sku, 100, "")
			poisonOrder := uniq("poison")
			poison := []struct{ name, payload, reason string }{
				{"qty of the wrong type", fmt.Sprintf(`{"orderid": %q, "sku": %q, "qty": "x"}`, poisonOrder, sku), "qty"},
				{"malformed JSON", `{"orderid": "` + poisonOrder + `", "sku": `, ""},
				{"missing sku", fmt.Sprintf(`{"orderid": %q, "qty": 1}`, poisonOrder), "sku"},
				{"negative qty", fmt.Sprintf(`{"orderid": %q, "sku": %q, "qty": -1}`, poisonOrder, sku), "qty"},
			}
			ids := map[string]int{} // message id -> index in poison
			var good []string
			for i, p := range poison {
				ids[b.publish(t, chanAllocate, sku, p.payload)] = i
				o := uniq("good")
				good = append(good, o)
				b.publish(t, chanAllocate, sku, map[string]any{"orderid": o, "sku": sku, "qty": 2})
			}
			err := eventually(10*time.Second, func() error {
				for _, o := range good {
					if rows := s.allocations(t, o); !slices.Equal(rows, []allocation{{sku, ref}}) {
						return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", o, rows, sku, ref)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("the good messages after the poison ones were not all applied: %v", err)
			}
			if rows := s.allocations(t, poisonOrder); rows != nil {
				t.Errorf("GET /allocations/%s = %v: a poison message was applied", poisonOrder, rows)
			}

			// On the broker.
			byID := map[string]deadLetter{}
			for len(byID) < len(poison) {
				d := w.waitFor(t, 10*time.Second, fmt.Sprintf("dead letter %d of %d on %s", len(byID)+1, len(poison), chanDeadLetters), func(d messaging.Delivery) bool {
					var dl deadLetter
					return json.Unmarshal(d.Payload, &dl) == nil && dl.MessageID != "" && byID[dl.MessageID].MessageID == ""
				})
				var dl deadLetter
				dec := json.NewDecoder(strings.NewReader(string(d.Payload)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&dl); err != nil {
					t.Fatalf("dead letter %s: %v", d.Payload, err)
				}
				i, ok := ids[dl.MessageID]
				if !ok {
					t.Fatalf("dead letter of a message the test did not publish as poison: %s", d.Payload)
				}
				p := poison[i]
				// The whole envelope is kept, and how often it was tried.
				if dl.Key == "" || dl.CorrelationID == "" || dl.OccurredAt == nil || dl.Attempts < 1 || dl.FirstFailedAt == nil {
					t.Errorf("%s: dead letter %s lacks its envelope (key, correlation id, occurred_at) or its attempts", p.name, d.Payload)
				}
				if dl.Consumer != "allocation" || dl.Channel != chanAllocate || dl.Payload != p.payload || dl.Reason == "" || dl.FailedAt.IsZero() {
					t.Errorf("%s: dead letter on %s %s, want consumer allocation, channel allocate, payload %q, a reason and a time", p.name, chanDeadLetters, d.Payload, p.payload)
				}
				if !strings.Contains(dl.Reason, p.reason) {
					t.Errorf("%s: reason %q does not name %q", p.name, dl.Reason, p.reason)
				}
				byID[dl.MessageID] = dl
			}

			// In the database.
			listed := listDeadLetters(t, "--data", dir)
			if len(listed) != len(poison) {
				t.Errorf("stockflow dead-letters listed %d, want %d: %+v", len(listed), len(poison), listed)
			}
			for _, d := range listed {
				i, ok := ids[d.MessageID]
				if !ok {
					t.Errorf("stockflow dead-letters listed a message the test did not publish as poison: %+v", d)
					continue
				}
				p, onBroker := poison[i], byID[d.MessageID]
				if d.Payload != p.payload || d.Channel != chanAllocate || d.Consumer != "allocation" || d.Reason == "" {
					t.Errorf("%s: stockflow dead-letters listed %+v, want payload %q on allocate, with a reason", p.name, d, p.payload)
				}
				if d.Reason != onBroker.Reason || d.Payload != onBroker.Payload || !d.FailedAt.Equal(onBroker.FailedAt.Truncate(time.Microsecond)) {
					t.Errorf("%s: stockflow dead-letters lists %+v, the broker had %+v", p.name, d, onBroker)
				}
				t.Logf("%s: %s", p.name, d.Reason)
			}
			// The record on the broker should carry the id the CLI lists.
			t.Run("record id", func(t *testing.T) {
				for _, d := range listed {
					onBroker := byID[d.MessageID]
					if onBroker.ID != d.ID {
						t.Errorf("message %s: dead_letters record id %d, stockflow dead-letters lists %d", d.MessageID, onBroker.ID, d.ID)
					}
				}
			})
			// The poison took no stock: 100 - 4*2 are left.
			if got := s.mustAllocate(t, uniq("order"), sku, 100-2*len(good)); got != ref {
				t.Errorf("allocated to %q, want %q", got, ref)
			}
			expect(t, s.allocate(t, uniq("order"), sku, 1), http.StatusConflict)
		})
	}
}
