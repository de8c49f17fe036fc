package service

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// Map is the service map: the services and the channels between them, as
// the contract declares them and as the journal saw them used in a
// window, with every difference between the two.
type Map struct {
	Since  time.Time `json:"since"`
	Window string    `json:"window"`
	// Contract says whether a contract was given to check against.
	Contract bool `json:"contract"`
	// Services are every service the contract names or the journal saw,
	// with "outside" for callers outside stockflow.
	Services    []string     `json:"services"`
	Channels    []Channel    `json:"channels"`
	Differences []Difference `json:"differences"`
}

// Channel is a channel of the map: who the contract says sends and
// receives on it, and the links the journal saw in the window.
type Channel struct {
	Channel   string   `json:"channel"`
	Declared  bool     `json:"declared"`
	Senders   []string `json:"senders"`
	Receivers []string `json:"receivers"`
	// LastSeen is when the latest message the journal keeps of it
	// occurred; nil when it keeps none.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Links    []Link     `json:"links"`
}

// Link is what went from a producer over a channel to a consuming
// service in the window ("" for messages no service handled).
type Link struct {
	From         string  `json:"from"`
	To           string  `json:"to"`
	Declared     bool    `json:"declared"`
	Messages     int     `json:"messages"`
	PerMinute    float64 `json:"per_minute"`
	Handled      int     `json:"handled"`
	Duplicates   int     `json:"duplicates"`
	DeadLettered int     `json:"dead_lettered"`
}

// Kinds of the differences between what runs and what the contract
// declares.
const (
	// UndeclaredChannel: messages on a channel the contract lacks.
	UndeclaredChannel = "undeclared_channel"
	// UndeclaredSender: a service raising messages the contract does not
	// have it send.
	UndeclaredSender = "undeclared_sender"
	// UndeclaredReceiver: a service handling messages the contract does
	// not have it receive.
	UndeclaredReceiver = "undeclared_receiver"
	// UndeclaredField: a message carrying what its schema does not
	// declare, or not conforming to it.
	UndeclaredField = "undeclared_field"
	// UnusedChannel: a declared channel of which the journal keeps no
	// message.
	UnusedChannel = "unused_channel"
)

// Difference is a difference between what runs and what the contract
// declares.
type Difference struct {
	Kind    string `json:"kind"`
	Channel string `json:"channel"`
	Service string `json:"service,omitempty"`
	Detail  string `json:"detail"`
}

// Map window bounds.
const (
	DefaultWindow = time.Hour
	MinWindow     = time.Minute
	MaxWindow     = 7 * 24 * time.Hour
)

// Contract is the contract the service map checks what runs against:
// docs/asyncapi.json, as package contract reads it.
type Contract struct {
	// Operations are who sends and who receives on each channel.
	Operations []Operation
	// Check returns what is wrong with payload, a message party sent on
	// channel; ok is false when the contract has party send nothing there.
	Check func(party, channel string, payload []byte) (problems []string, ok bool)
}

// Operation is a party (a service, or Outside) sending or receiving on a
// channel.
type Operation struct {
	Party, Action, Channel string
}

// The actions of an operation, and the party of whoever is outside
// stockflow, as the contract names them.
const (
	Send    = "send"
	Receive = "receive"
	Outside = "outside"
)

// plumbing are the channels of the shared plumbing, which every service
// sends on and the map leaves out.
var plumbing = []string{messaging.DeadLetterChannel, messaging.ChannelReceipts}

// Map returns the service map over the last window (DefaultWindow if
// zero).
func (h *Handlers) Map(ctx context.Context, window time.Duration) (*Map, error) {
	if window == 0 {
		window = DefaultWindow
	}
	if window < MinWindow || window > MaxWindow {
		return nil, fail.Errorf(fail.Invalid, "window must be between %s and %s, got %s", MinWindow, "168h", window)
	}
	since := time.Now().Add(-window).UTC()
	traffic, err := h.store.Traffic(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("reading the journal: %w", err)
	}
	m := &Map{Since: since, Window: window.String(), Contract: h.contract != nil, Services: []string{}, Channels: []Channel{}, Differences: []Difference{}}
	byName := map[string]*Channel{}
	channel := func(name string) *Channel {
		if c := byName[name]; c != nil {
			return c
		}
		c := &Channel{Channel: name, Senders: []string{}, Receivers: []string{}, Links: []Link{}}
		byName[name] = c
		return c
	}
	services := map[string]bool{}
	if h.contract != nil {
		for _, op := range h.contract.Operations {
			if slices.Contains(plumbing, op.Channel) || op.Party == "flows" {
				continue
			}
			c := channel(op.Channel)
			c.Declared = true
			if op.Action == Send {
				c.Senders = append(c.Senders, op.Party)
			} else {
				c.Receivers = append(c.Receivers, op.Party)
			}
			services[op.Party] = true
		}
	}
	for _, t := range traffic {
		if slices.Contains(plumbing, t.Channel) {
			continue
		}
		c := channel(t.Channel)
		l := Link{From: cmp.Or(t.Producer, Outside), To: t.Consumer, Messages: t.Messages, Handled: t.Handled,
			Duplicates: t.Duplicates, DeadLettered: t.DeadLettered}
		l.PerMinute = float64(t.Messages) / window.Minutes()
		l.Declared = c.Declared && slices.Contains(c.Senders, l.From) && (l.To == "" || slices.Contains(c.Receivers, l.To))
		c.Links = append(c.Links, l)
		services[l.From] = true
		if l.To != "" {
			services[l.To] = true
		}
	}
	for name := range services {
		m.Services = append(m.Services, name)
	}
	slices.Sort(m.Services)
	for _, c := range byName {
		slices.Sort(c.Senders)
		slices.Sort(c.Receivers)
		slices.SortFunc(c.Links, func(a, b Link) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
		m.Channels = append(m.Channels, *c)
	}
	slices.SortFunc(m.Channels, func(a, b Channel) int { return cmp.Compare(a.Channel, b.Channel) })
	for i := range m.Channels {
		d, err := h.check(ctx, &m.Channels[i])
		if err != nil {
			return nil, err
		}
		m.Differences = append(m.Differences, d...)
	}
	return m, nil
}

// check finds the differences between what the journal saw of c and what
// the contract declares, and when c was last seen.
func (h *Handlers) check(ctx context.Context, c *Channel) ([]Difference, error) {
	var out []Difference
	latest, err := h.store.Latest(ctx, c.Channel)
	if err != nil {
		return nil, fmt.Errorf("reading the journal: %w", err)
	}
	if latest != nil && !latest.OccurredAt.IsZero() {
		at := latest.OccurredAt
		c.LastSeen = &at
	}
	if h.contract == nil {
		return nil, nil
	}
	if !c.Declared {
		return []Difference{{Kind: UndeclaredChannel, Channel: c.Channel,
			Detail: fmt.Sprintf("messages on %s, a channel docs/asyncapi.json does not declare", c.Channel)}}, nil
	}
	for _, l := range c.Links {
		if !slices.Contains(c.Senders, l.From) {
			out = append(out, Difference{Kind: UndeclaredSender, Channel: c.Channel, Service: l.From,
				Detail: fmt.Sprintf("%s raises %s, which docs/asyncapi.json does not have it send", l.From, c.Channel)})
		}
		if l.To != "" && !slices.Contains(c.Receivers, l.To) {
			out = append(out, Difference{Kind: UndeclaredReceiver, Channel: c.Channel, Service: l.To,
				Detail: fmt.Sprintf("%s handles %s, which docs/asyncapi.json does not have it receive", l.To, c.Channel)})
		}
	}
	if latest == nil {
		return append(out, Difference{Kind: UnusedChannel, Channel: c.Channel,
			Detail: fmt.Sprintf("declared, but the journal keeps no message on %s", c.Channel)}), nil
	}
	from := cmp.Or(latest.Producer, Outside)
	if problems, ok := h.contract.Check(from, c.Channel, latest.Payload); ok {
		for _, p := range problems {
			out = append(out, Difference{Kind: UndeclaredField, Channel: c.Channel, Service: from,
				Detail: fmt.Sprintf("the latest message %s: %s", latest.ID, p)})
		}
	}
	return out, nil
}
