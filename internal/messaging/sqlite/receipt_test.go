package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	msqlite "github.com/stockflow/stockflow/internal/messaging/sqlite"
)

// receiptTx is a transaction with nothing of its own to flush but what
// the test raises.
type receiptTx struct {
	msqlite.Tx
	raise []messaging.Raised
}

func (t *receiptTx) Flush(context.Context) ([]messaging.Raised, error) { return t.raise, nil }

// A handling records its receipt in its own transaction: handled, with
// the ids it raised; handled again past the inbox, a duplicate; without
// Receipts in its meta, none.
func TestUnitOfWorkRecordsReceipts(t *testing.T) {
	ctx := context.Background()
	db, err := msqlite.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "messaging", msqlite.Migrations()); err != nil {
		t.Fatal(err)
	}
	n := 0
	due := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	uow := messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*receiptTx]{
		Begin: func(ctx context.Context) (*receiptTx, error) {
			n++
			tx, err := db.Begin(ctx)
			raised := messaging.Raised{Envelope: messaging.Envelope{ID: fmt.Sprint("raised-", n), Channel: "line_allocated", Payload: json.RawMessage(`{}`)}}
			timer := messaging.Raised{Envelope: messaging.Envelope{ID: fmt.Sprint("timer-", n), Channel: "reservation_timeout", Payload: json.RawMessage(`{}`),
				DeliverAt: due}}
			return &receiptTx{Tx: tx, raise: []messaging.Raised{raised, timer}}, err
		},
	})
	meta := messaging.Meta{MessageID: "m1", CorrelationID: "c1", Channel: "cart_item_added", Consumer: "allocation.reserve_cart_item", Receipts: true}
	run := func(m messaging.Meta) error {
		_, err := uow.Transact(messaging.WithMeta(ctx, m), func(context.Context, *receiptTx) error { return nil })
		return err
	}
	if err := run(meta); err != nil {
		t.Fatal(err)
	}
	if err := run(meta); !errors.Is(err, messaging.ErrAlreadyHandled) {
		t.Fatalf("second handling: %v, want ErrAlreadyHandled", err)
	}
	off := meta
	off.MessageID, off.Receipts = "m2", false
	if err := run(off); err != nil {
		t.Fatal(err)
	}

	outbox := msqlite.NewOutbox(db)
	envs, err := outbox.Unpublished(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var receipts []messaging.Receipt
	for _, e := range envs {
		if e.Channel != messaging.ChannelReceipts {
			continue
		}
		if e.CorrelationID != "c1" || e.CausationID != "m1" || e.Key != "m1" {
			t.Errorf("receipt envelope %+v, want the flow of m1, caused by it, keyed by it", e)
		}
		var r messaging.Receipt
		if err := json.Unmarshal(e.Payload, &r); err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	if len(receipts) != 2 {
		t.Fatalf("receipts %+v, want a handled and a duplicate one of m1", receipts)
	}
	h, d := receipts[0], receipts[1]
	if h.MessageID != "m1" || h.Outcome != messaging.OutcomeHandled || h.Handler != meta.Consumer || h.Channel != "cart_item_added" ||
		len(h.Raised) != 2 || h.Raised[0] != "raised-1" || h.Raised[1] != "timer-1" || h.At.IsZero() {
		t.Errorf("receipt %+v, want m1 handled, having raised raised-1 and timer-1", h)
	}
	if len(h.Timers) != 1 || h.Timers[0].ID != "timer-1" || h.Timers[0].Channel != "reservation_timeout" || !h.Timers[0].DueAt.Equal(due) {
		t.Errorf("receipt's timers %+v, want timer-1 due at %v", h.Timers, due)
	}
	if d.MessageID != "m1" || d.Outcome != messaging.OutcomeDuplicate || len(d.Raised) != 0 {
		t.Errorf("receipt %+v, want m1 a duplicate", d)
	}
	// Receipts are never handed to a local handler: stored dispatched.
	und, err := outbox.Undispatched(ctx, -1, 100, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range und {
		if e.Channel == messaging.ChannelReceipts {
			t.Errorf("receipt %s waits for a local dispatch", e.ID)
		}
	}
}
