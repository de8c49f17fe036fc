// Package domain is the notifications model: an e-mail the system owes
// someone (the stock team an out-of-stock alert, a new VIP a welcome, a
// customer the news that what they waited for is in stock), and
// its delivery: sent, retried after a failure with a growing wait, or
// given up. Pure Go: no I/O; the time is passed in.
package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/valid"
)

// Kinds of notifications.
const (
	KindOutOfStock = "out_of_stock"
	KindVIPWelcome = "vip_welcome"
	KindBackorder  = "backorder_filled"
)

// Statuses of a notification.
const (
	// StatusRecorded: kept, not sent (no mail server is configured, or it
	// has no recipient).
	StatusRecorded = "recorded"
	// StatusPending: to send, at NextAttemptAt if set.
	StatusPending = "pending"
	StatusSent    = "sent"
	// StatusFailed: given up, LastError says why.
	StatusFailed = "failed"
)

// Content is what a notification says, and to whom.
type Content struct {
	Kind    string
	To      []string
	Subject string
	Body    string
}

// OutOfStock is the alert the stock team gets when no batch could take a
// line of sku: orderID's, for qty, when those are known ("" and 0 when not);
// unknown when no batch of the sku exists at all (the subject then says
// "Invalid sku", as POST /allocate does).
func OutOfStock(sku, orderID string, qty int, unknown bool, stockTeam []string) (Content, error) {
	err := valid.Ref("sku", sku)
	if err == nil && orderID != "" {
		err = valid.Ref("orderid", orderID)
	}
	if err == nil && qty < 0 {
		err = fail.Errorf(fail.Invalid, "qty must not be negative, got %d", qty)
	}
	if err != nil {
		return Content{}, err
	}
	var body strings.Builder
	subject := "Out of stock for " + sku
	if unknown {
		subject = "Invalid sku " + sku + ": ordered, but nobody stocks it"
		fmt.Fprintf(&body, "Invalid sku %s: no batch of it exists, and a cart asked for ", sku)
	} else {
		fmt.Fprintf(&body, "Out of stock for %s: no batch can take ", sku)
	}
	switch {
	case orderID != "" && qty > 0:
		fmt.Fprintf(&body, "the %d units order %s asked for.\n", qty, orderID)
	case orderID != "":
		fmt.Fprintf(&body, "the line of order %s.\n", orderID)
	default:
		body.WriteString("the line asked for.\n")
	}
	body.WriteString("\nAdd stock to allocate it: the order waits for stock until then.\n")
	return Content{
		Kind:    KindOutOfStock,
		To:      append([]string{}, stockTeam...),
		Subject: subject,
		Body:    body.String(),
	}, nil
}

// VIPWelcome is the welcome a customer gets on becoming a VIP with their
// orders-th order.
func VIPWelcome(customer, email string, orders int) (Content, error) {
	if err := valid.First(valid.Ref("customer", customer), valid.Email("email", email), valid.Positive("orders", orders)); err != nil {
		return Content{}, err
	}
	return Content{
		Kind:    KindVIPWelcome,
		To:      []string{email},
		Subject: "Welcome to VIP, " + customer,
		Body: fmt.Sprintf("Hello %s,\n\nThank you for your %d orders: you are now one of our VIP customers.\n"+
			"\nWelcome, and see you soon!\n", customer, orders),
	}, nil
}

// BackorderFilled is the good news a customer gets when qty units of sku
// they waited for arrived and are reserved for them: for order orderID
// when placed, to be dispatched once all of it is in stock; else in their
// cart, which they still have to place.
func BackorderFilled(customer, email, orderID, sku string, qty int, placed bool) (Content, error) {
	err := valid.First(valid.Ref("customer", customer), valid.Email("email", email), valid.Ref("orderid", orderID),
		valid.Ref("sku", sku), valid.Positive("qty", qty))
	if err != nil {
		return Content{}, err
	}
	var body strings.Builder
	fmt.Fprintf(&body, "Hello %s,\n\nGood news: the %d × %s you were waiting for has arrived", customer, qty, sku)
	if placed {
		fmt.Fprintf(&body, ", and it is now set aside for your order %s.\n", orderID)
		body.WriteString("\nWe will send your order as soon as everything in it is in stock: there is nothing you need to do.\n")
	} else {
		fmt.Fprintf(&body, ", and it is now reserved in your cart (%s).\n", orderID)
		body.WriteString("\nPlace your order soon to have it sent: the items of a cart that is not placed in time are released for other customers.\n")
	}
	body.WriteString("\nThank you for your patience!\n")
	subject := fmt.Sprintf("%s is in stock: reserved for your order %s", sku, orderID)
	if !placed {
		subject = fmt.Sprintf("%s is in stock: reserved in your cart", sku)
	}
	return Content{Kind: KindBackorder, To: []string{email}, Subject: subject, Body: body.String()}, nil
}

// RetryPolicy bounds the attempts at sending a notification, and spaces
// them: Backoff after the first failed attempt, doubling with each
// failure, up to MaxBackoff.
type RetryPolicy struct {
	MaxAttempts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
}

// DefaultRetry is the policy of the notifications service: ten attempts
// over about eight minutes.
var DefaultRetry = RetryPolicy{MaxAttempts: 10, Backoff: time.Second, MaxBackoff: 5 * time.Minute}

// Delay is the wait after the attempt-th failed attempt.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	d := p.Backoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// Notification is the aggregate: an e-mail owed, and how its delivery goes.
type Notification struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	To        []string  `json:"to"`
	Subject   string    `json:"subject"`
	Body      string    `json:"body"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// NextAttemptAt is when a pending notification is due: after a failed
	// attempt, the retry; during an attempt, the end of its lease.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	SentAt        *time.Time `json:"sent_at,omitempty"`
	// MessageID is the id of the message the notification is about.
	MessageID string `json:"message_id,omitempty"`
}

// New returns the notification id of c, about the message messageID: to
// send when send is true and c has recipients, else only recorded.
func New(id, messageID string, c Content, send bool, at time.Time) *Notification {
	status := StatusRecorded
	if send && len(c.To) > 0 {
		status = StatusPending
	}
	return &Notification{
		ID: id, Kind: c.Kind, To: c.To, Subject: c.Subject, Body: c.Body,
		Status: status, CreatedAt: at, MessageID: messageID,
	}
}

// Due reports whether the notification is to send at now.
func (n *Notification) Due(now time.Time) bool {
	return n.Status == StatusPending && (n.NextAttemptAt == nil || !n.NextAttemptAt.After(now))
}

// Claim starts an attempt at sending a due notification, and holds it
// until until: the notification is not due again before then unless the
// attempt's outcome is recorded. It reports whether to send it: a
// notification whose last attempt was lost (its sender crashed) after
// p.MaxAttempts is given up instead.
func (n *Notification) Claim(until time.Time, p RetryPolicy) bool {
	if n.Attempts >= p.MaxAttempts {
		n.Status, n.NextAttemptAt = StatusFailed, nil
		n.LastError = fmt.Sprintf("gave up after %d attempts, the outcome of the last unknown", n.Attempts)
		return false
	}
	n.Attempts++
	n.NextAttemptAt = &until
	return true
}

// Sent records that the attempt under way delivered the notification.
func (n *Notification) Sent(at time.Time) {
	n.Status, n.SentAt, n.NextAttemptAt = StatusSent, &at, nil
}

// NotSent records that the attempt under way failed, at, for reason: the
// notification is retried after p's delay, unless the failure is
// permanent or that was its last attempt.
func (n *Notification) NotSent(reason string, permanent bool, at time.Time, p RetryPolicy) {
	n.LastError = reason
	if permanent || n.Attempts >= p.MaxAttempts {
		n.Status, n.NextAttemptAt = StatusFailed, nil
		return
	}
	next := at.Add(p.Delay(n.Attempts))
	n.NextAttemptAt = &next
}
