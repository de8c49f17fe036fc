package messaging

import (
	"encoding/json"
	"time"
)

// Receipts are the journal's raw material (package flows keeps the
// journal). A handler that handles a message once (a Consumer in its
// Meta) records, in the transaction that handles it, a receipt: which
// handler handled which message, how long it took, and which messages
// its handling raised. The receipt leaves through the outbox like any
// message, on ChannelReceipts, so it exists exactly when the handling
// committed, as NServiceBus's audit queue does for its endpoints; a
// message handled again past the inbox records a duplicate receipt. The
// messages themselves, and the dead letters (ChannelDeadLetters), the
// flows service reads from their own channels.

// ChannelReceipts carries every service's receipts.
const ChannelReceipts = "message_receipts"

// Outcomes of a handling, as receipts record them.
const (
	OutcomeHandled   = "handled"
	OutcomeDuplicate = "duplicate" // handled before: the inbox skipped it
)

// Receipt records that Handler handled the message MessageID.
type Receipt struct {
	MessageID string `json:"message_id"`
	Channel   string `json:"channel,omitempty"`
	Handler   string `json:"handler"`
	Outcome   string `json:"outcome"`
	// Raised are the ids of the messages the handling raised.
	Raised []string `json:"raised,omitempty"`
	// Timers are those of them that are durable timers, published when
	// due: until then the journal knows them from here alone.
	Timers     []ScheduledTimer `json:"timers,omitempty"`
	At         time.Time        `json:"at"`
	DurationMS float64          `json:"duration_ms"`
}

// ScheduledTimer is a durable timer a handling raised: its message's id
// and channel, and when it is due.
type ScheduledTimer struct {
	ID      string    `json:"id"`
	Channel string    `json:"channel"`
	DueAt   time.Time `json:"due_at"`
}

// receipt returns the envelope of the receipt of the message m describes,
// handled with outcome since start, having raised raised. It is stored
// dispatched: no local handler is to handle it.
func receipt(m Meta, outcome string, start time.Time, raised []Raised) Envelope {
	now := time.Now().UTC()
	r := Receipt{MessageID: m.MessageID, Channel: m.Channel, Handler: m.Consumer, Outcome: outcome, At: now,
		DurationMS: float64(now.Sub(start).Microseconds()) / 1000}
	for _, x := range raised {
		r.Raised = append(r.Raised, x.Envelope.ID)
		if x.Envelope.Scheduled(now) {
			r.Timers = append(r.Timers, ScheduledTimer{ID: x.Envelope.ID, Channel: x.Envelope.Channel, DueAt: x.Envelope.DeliverAt})
		}
	}
	payload, _ := json.Marshal(r) // a struct of strings and times
	corr := m.CorrelationID
	if corr == "" {
		corr = m.MessageID
	}
	return Envelope{ID: NewID(), Channel: ChannelReceipts, Key: m.MessageID, CorrelationID: corr, CausationID: m.MessageID,
		OccurredAt: now, Payload: payload, Dispatched: true}
}

// wantsReceipt reports whether the handling m describes records a receipt.
func (m Meta) wantsReceipt() bool { return m.Receipts && m.Consumer != "" && m.MessageID != "" }
