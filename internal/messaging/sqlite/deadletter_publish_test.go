package sqlite_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

// A dead letter is kept in the table and, in the same transaction, queued
// in the outbox for the dead-letter channel; once published it leaves.
func TestDeadLetterIsPublishedThroughTheOutbox(t *testing.T) {
	ctx := context.Background()
	ob := msqlite.NewOutbox(migratedDB(t))
	d := messaging.DeadLetter{Consumer: "allocation", Channel: "change_batch_quantity", MessageID: "m-1",
		Payload: `{"batchref": 1}`, Reason: "field batchref must be a string", FailedAt: time.Now().UTC()}
	if err := ob.AddDeadLetter(ctx, d); err != nil {
		t.Fatal(err)
	}
	msgs, err := ob.Unpublished(ctx, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Unpublished = %v, %v; want the dead letter", msgs, err)
	}
	m := msgs[0]
	if m.Channel != messaging.DeadLetterChannel || m.Key != d.Channel || m.CausationID != "m-1" {
		t.Errorf("envelope %+v: want channel %s, key %s, causation m-1", m, messaging.DeadLetterChannel, d.Channel)
	}
	var got messaging.DeadLetter
	if err := json.Unmarshal(m.Payload, &got); err != nil || got.Reason != d.Reason || got.Payload != d.Payload {
		t.Errorf("payload %s (%v): want the dead letter with its reason and raw payload", m.Payload, err)
	}
	if err := ob.MarkPublished(ctx, []string{m.ID}); err != nil {
		t.Fatal(err)
	}
	if left, _, _ := ob.Depth(ctx); left != 0 {
		t.Errorf("%d messages left after publishing", left)
	}
	if n, _ := ob.Undispatched(ctx, 0, 10, 5); len(n) != 0 {
		t.Errorf("the dead letter waits for local dispatch: %v", n)
	}
	if list, _ := ob.DeadLetters(ctx, 10); len(list) != 1 {
		t.Errorf("dead letters table has %d rows, want 1", len(list))
	}
}
