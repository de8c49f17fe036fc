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

// TestDeadLetterRetriedAfterTheCause: a change_batch_quantity for a batch
// not yet added is dead-lettered; once the batch is added, "stockflow
// dead-letters retry" over HTTP sends it again to the allocation service
// alone, in its process (the broker never carries it again), and it is
// applied once: the line it pushes out is allocated elsewhere once, and a
// forced second retry is skipped by the service's inbox.
func TestDeadLetterRetriedAfterTheCause(t *testing.T) {
	b := brokerKinds(true)[0].start(t)
	dir := t.TempDir()
	s := serveOn(t, dir, b)
	cli := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, nil, append([]string{"dead-letters"}, append(args, "--url", s.Base)...)...)
	}

	sku, ref, later, order := uniq("sku"), uniq("batch"), uniq("later"), uniq("order")
	changes := b.watch(t, chanChangeBatchQuantity)
	allocated := b.watch(t, chanLineAllocated)
	b.waitConsuming(t)
	msg := b.publish(t, chanChangeBatchQuantity, ref, map[string]any{"batchref": ref, "qty": 1})

	// Dead-lettered: one group, one dead letter, its reason naming the batch.
	var listed []deadLetter
	if err := eventually(10*time.Second, func() error {
		res := cli("list")
		listed = decodeLines[deadLetter](t, res.Stdout)
		if res.Code != 0 || len(listed) != 1 {
			return fmt.Errorf("dead-letters list exited %d, listed %d: %s %s", res.Code, len(listed), res.Stdout, res.Stderr)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := listed[0]
	if d.MessageID != msg || d.Consumer != "allocation" || d.State != "failed" || d.Failures != 1 || d.Group == "" ||
		!strings.Contains(d.Reason, ref) || strings.Contains(d.Fingerprint, ref) {
		t.Fatalf("dead letter %+v: want message %s of allocation, failed once, its reason naming %s and its fingerprint not", d, msg, ref)
	}
	groups := cli("--json")
	if gs := decodeLines[messaging.DeadLetterGroup](t, groups.Stdout); len(gs) != 1 || gs[0].ID != d.Group || gs[0].Count != 1 {
		t.Errorf("groups = %s, want one, %s, of 1", groups.Stdout, d.Group)
	}
	target := fmt.Sprintf("allocation/%d", d.ID)
	if res := cli("show", target); res.Code != 0 || !strings.Contains(res.Stdout, `"batchref": "`+ref+`"`) {
		t.Errorf("show %s exited %d: %s %s", target, res.Code, res.Stdout, res.Stderr)
	}

	// The cause fixed: the batch exists, and holds a line of 5.
	s.addBatch(t, ref, sku, 10, "")
	s.addBatch(t, later, sku, 10, "2099-01-01")
	if got := s.mustAllocate(t, order, sku, 5); got != ref {
		t.Fatalf("allocated to %q, want %q", got, ref)
	}
	if res := cli("retry", target, "--dry-run", "--json"); res.Code != 0 || !strings.Contains(res.Stdout, `"outcome":"would_run"`) {
		t.Errorf("retry --dry-run exited %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
	res := cli("retry", target, "--json")
	if rs := decodeLines[messaging.RetryResult](t, res.Stdout); res.Code != 0 || len(rs) != 1 || rs[0].Outcome != messaging.RetryHandled || rs[0].Retried != 1 {
		t.Fatalf("retry exited %d: %s %s; want it handled", res.Code, res.Stdout, res.Stderr)
	}
	// Applied: the batch holds 1, the line moved to the later batch.
	if err := eventually(10*time.Second, func() error {
		if rows := s.allocations(t, order); !slices.Equal(rows, []allocation{{sku, later}}) {
			return fmt.Errorf("GET /allocations/%s = %v, want [{%s %s}]", order, rows, sku, later)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Retried already: refused unless forced; forced, the inbox skips it.
	if res := cli("retry", target); res.Code == 0 || !strings.Contains(res.Stderr, "409") {
		t.Errorf("retrying a retried dead letter exited %d: %s %s; want 409", res.Code, res.Stdout, res.Stderr)
	}
	if res := cli("retry", target, "--force", "--json"); res.Code != 0 || !strings.Contains(res.Stdout, `"outcome":"handled"`) {
		t.Errorf("retry --force exited %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
	if res := cli("list"); strings.TrimSpace(res.Stdout) != "" {
		t.Errorf("failed dead letters after the retry: %s", res.Stdout)
	}
	retried := decodeLines[deadLetter](t, cli("list", "--retried").Stdout)
	if len(retried) != 1 || retried[0].Retried != 2 || retried[0].Failures != 1 || retried[0].RetriedAt == nil {
		t.Errorf("retried = %+v, want the one, retried twice, failed once", retried)
	}
	time.Sleep(500 * time.Millisecond)
	var moved int
	for _, m := range allocated.snapshot() {
		if field(m, "orderid") == order && field(m, "batchref") == later {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("line_allocated of %s to %s published %d times, want once", order, later, moved)
	}
	// The broker carried the message once: the retry went to allocation alone.
	var seen int
	for _, m := range changes.snapshot() {
		if m.ID == msg {
			seen++
		}
	}
	if seen != 1 {
		t.Errorf("the broker carried message %s %d times, want once (a retry is not published again)", msg, seen)
	}
	// Discarded: archived, hidden, listed with --archived.
	if res := cli("discard", target); res.Code != 0 {
		t.Errorf("discard exited %d: %s", res.Code, res.Stderr)
	}
	if got := decodeLines[deadLetter](t, cli("list", "--archived").Stdout); len(got) != 1 || got[0].ArchivedBy == "" {
		t.Errorf("archived = %+v, want the one, with who archived it", got)
	}
	if res := cli("show", "allocation/999999"); res.Code == 0 || !strings.Contains(res.Stderr, "404") {
		t.Errorf("show of an unknown id exited %d: %s", res.Code, res.Stderr)
	}
}

// decodeLines decodes JSON lines.
func decodeLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var list []T
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decoding %q: %v", out, err)
		}
		list = append(list, v)
	}
	return list
}
