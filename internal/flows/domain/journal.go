// Package domain is the flows model: the journal of every message the
// services exchanged, with what each handler did with it, and the causal
// tree a trace draws from it. Pure Go: no I/O.
package domain

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Message is a message as the journal keeps it: its envelope, its payload,
// who raised it, and the business keys found in its payload, by which it
// is found.
type Message struct {
	ID            string          `json:"id"`
	Channel       string          `json:"channel"`
	Key           string          `json:"key,omitempty"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id,omitempty"`
	OccurredAt    time.Time       `json:"occurred_at"`
	Payload       json.RawMessage `json:"payload"`
	// Producer is the service that raised it, as its receipts or the
	// contract say; empty when it came from outside stockflow.
	Producer string `json:"producer,omitempty"`
	Keys
}

// Keys are the business keys of a message, as its payload names them.
type Keys struct {
	Order    string `json:"orderid,omitempty"`
	Customer string `json:"customer,omitempty"`
	SKU      string `json:"sku,omitempty"`
	Batch    string `json:"batchref,omitempty"`
	Qty      int    `json:"qty,omitempty"`
}

// KeysOf reads the business keys of a payload: orderid, customer, sku,
// batchref (or ref, as batch_created names it) and qty, at its top level;
// a message with lines (order_placed, goods_dispatched) names its sku and
// batch when all its lines share them. A payload that is not a JSON
// object has none.
func KeysOf(payload []byte) Keys {
	var fields map[string]json.RawMessage
	if json.Unmarshal(payload, &fields) != nil {
		return Keys{}
	}
	// Each field on its own: one of an unexpected type loses itself only.
	str := func(name string) string {
		var v string
		_ = json.Unmarshal(fields[name], &v)
		return v
	}
	var qty int
	_ = json.Unmarshal(fields["qty"], &qty)
	k := Keys{Order: str("orderid"), Customer: str("customer"), SKU: str("sku"), Batch: cmp.Or(str("batchref"), str("ref")), Qty: qty}
	var lines []struct {
		SKU   string `json:"sku"`
		Batch string `json:"batchref"`
		Qty   int    `json:"qty"`
	}
	if json.Unmarshal(fields["lines"], &lines) != nil || len(lines) == 0 || k.SKU != "" {
		return k
	}
	k.SKU, k.Batch, k.Qty = lines[0].SKU, lines[0].Batch, 0
	for _, l := range lines {
		if l.SKU != k.SKU {
			k.SKU = ""
		}
		if l.Batch != k.Batch {
			k.Batch = ""
		}
		k.Qty += l.Qty
	}
	return k
}

// Outcomes of a handling, as the journal records them.
const (
	Handled      = "handled"
	Duplicate    = "duplicate"     // handled before: the inbox skipped it
	DeadLettered = "dead_lettered" // given up on, kept with its reason
)

// Handling is what one handler of one service did with a message.
type Handling struct {
	MessageID string    `json:"message_id"`
	Service   string    `json:"service"`
	Handler   string    `json:"handler"`
	Outcome   string    `json:"outcome"`
	At        time.Time `json:"at"`
	// DurationMS is how long the handling took.
	DurationMS float64 `json:"duration_ms,omitempty"`
	// Raised are the ids of the messages it raised.
	Raised []string `json:"raised,omitempty"`
	// Timers are the durable timers it raised, with when each is due: the
	// journal sees a timer's message only once it is published.
	Timers []Timer `json:"timers,omitempty"`
	// Reason and Attempts say why a message was dead-lettered.
	Reason   string `json:"reason,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
}

// Timer is a durable timer a handling raised.
type Timer struct {
	ID      string    `json:"id"`
	Channel string    `json:"channel"`
	DueAt   time.Time `json:"due_at"`
}

// ServiceOf names the service of a handler or consumer:
// "allocation.reserve_cart_item", "allocation/cart_item_added" and
// "allocation/cart_item_added#LAMP" are the allocation service's.
func ServiceOf(handler string) string {
	if i := strings.IndexAny(handler, "./#"); i >= 0 {
		return handler[:i]
	}
	return handler
}

// Node is a message of a trace, with what was done with it and the
// messages it caused.
type Node struct {
	Message
	Handlings []Handling `json:"handlings"`
	// HopMS is the time from the message that caused it to it.
	HopMS    float64 `json:"hop_ms,omitempty"`
	Children []*Node `json:"children,omitempty"`
}

// Failed reports whether a handler gave the message up.
func (n *Node) Failed() bool {
	return slices.ContainsFunc(n.Handlings, func(h Handling) bool { return h.Outcome == DeadLettered })
}

// Tree builds the causal tree of msgs: each message under the one that
// caused it, when that one is among msgs; the others are roots. Children
// and roots are in the order they occurred; handlings in the order they
// happened. A message a receipt says raised does not name as its cause
// (none should) is placed under the receipt's message.
func Tree(msgs []Message, handlings []Handling) []*Node {
	nodes := make(map[string]*Node, len(msgs))
	for _, m := range msgs {
		nodes[m.ID] = &Node{Message: m, Handlings: []Handling{}}
	}
	raisedBy := map[string]string{} // message id -> the message whose handling raised it
	for _, h := range handlings {
		if n := nodes[h.MessageID]; n != nil {
			n.Handlings = append(n.Handlings, h)
		}
		for _, id := range h.Raised {
			raisedBy[id] = h.MessageID
		}
	}
	parentOf := func(m Message) *Node {
		if p := nodes[m.CausationID]; p != nil {
			return p
		}
		return nodes[raisedBy[m.ID]]
	}
	// cyclic reports whether n's causes lead back to it (ids that name
	// each other): such a message is a root, so that none is lost.
	cyclic := func(n *Node) bool {
		seen := map[*Node]bool{n: true}
		for p := parentOf(n.Message); p != nil; p = parentOf(p.Message) {
			if seen[p] {
				return true
			}
			seen[p] = true
		}
		return false
	}
	var roots []*Node
	for _, m := range msgs {
		n := nodes[m.ID]
		parent := parentOf(m)
		if parent == nil || parent == n || cyclic(n) {
			roots = append(roots, n)
			continue
		}
		parent.Children = append(parent.Children, n)
		if !parent.OccurredAt.IsZero() && !n.OccurredAt.IsZero() {
			n.HopMS = float64(n.OccurredAt.Sub(parent.OccurredAt).Microseconds()) / 1000
		}
	}
	byTime := func(a, b *Node) int {
		return cmp.Or(a.OccurredAt.Compare(b.OccurredAt), cmp.Compare(a.ID, b.ID))
	}
	var sortTree func(ns []*Node)
	sortTree = func(ns []*Node) {
		slices.SortFunc(ns, byTime)
		for _, n := range ns {
			slices.SortFunc(n.Handlings, func(a, b Handling) int { return a.At.Compare(b.At) })
			sortTree(n.Children)
		}
	}
	sortTree(roots)
	return roots
}
