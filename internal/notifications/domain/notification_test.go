package domain_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/notifications/domain"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

var team = []string{"stock@example.com", "boss@example.com"}

func TestOutOfStock(t *testing.T) {
	tests := []struct {
		name     string
		orderID  string
		qty      int
		wantBody string
	}{
		{"order and qty", "o1", 5, "the 5 units order o1 asked for"},
		{"order only", "o1", 0, "the line of order o1"},
		{"neither", "", 0, "the line asked for"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := domain.OutOfStock("RED-CHAIR", tt.orderID, tt.qty, false, team)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != domain.KindOutOfStock || c.Subject != "Out of stock for RED-CHAIR" || !slices.Equal(c.To, team) {
				t.Fatalf("content %+v", c)
			}
			if !strings.Contains(c.Body, tt.wantBody) {
				t.Fatalf("body %q lacks %q", c.Body, tt.wantBody)
			}
		})
	}
}

// A sku nobody stocks says so, in the words POST /allocate uses.
func TestOutOfStockOfAnUnknownSKU(t *testing.T) {
	c, err := domain.OutOfStock("NOPE", "o1", 2, true, team)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "Invalid sku NOPE: ordered, but nobody stocks it" || !strings.Contains(c.Body, "no batch of it exists") {
		t.Errorf("content %+v", c)
	}
}

func TestVIPWelcome(t *testing.T) {
	c, err := domain.VIPWelcome("alice", "alice@example.com", 3)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != domain.KindVIPWelcome || c.Subject != "Welcome to VIP, alice" ||
		!slices.Equal(c.To, []string{"alice@example.com"}) || !strings.Contains(c.Body, "3 orders") {
		t.Fatalf("content %+v", c)
	}
}

func TestBackorderFilled(t *testing.T) {
	tests := []struct {
		name    string
		placed  bool
		subject string
		says    []string
	}{
		{"an order's line", true, "LAMP is in stock: reserved for your order o1",
			[]string{"Hello alice", "3 × LAMP you were waiting for has arrived", "your order o1", "We will send your order"}},
		{"a cart's line", false, "LAMP is in stock: reserved in your cart",
			[]string{"Hello alice", "3 × LAMP you were waiting for has arrived", "reserved in your cart (o1)", "Place your order soon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := domain.BackorderFilled("alice", "alice@example.com", "o1", "LAMP", 3, tt.placed)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != domain.KindBackorder || c.Subject != tt.subject || !slices.Equal(c.To, []string{"alice@example.com"}) {
				t.Fatalf("content %+v", c)
			}
			for _, s := range tt.says {
				if !strings.Contains(c.Body, s) {
					t.Errorf("body %q does not say %q", c.Body, s)
				}
			}
		})
	}
}

func TestInvalidContent(t *testing.T) {
	tests := []struct {
		name string
		make func() (domain.Content, error)
	}{
		{"no sku", func() (domain.Content, error) { return domain.OutOfStock("", "o1", 1, false, team) }},
		{"sku with a line break", func() (domain.Content, error) { return domain.OutOfStock("A\r\nBcc: x@y.z", "", 0, false, team) }},
		{"bad orderid", func() (domain.Content, error) { return domain.OutOfStock("SKU", "o\n1", 1, false, team) }},
		{"negative qty", func() (domain.Content, error) { return domain.OutOfStock("SKU", "o1", -1, false, team) }},
		{"no customer", func() (domain.Content, error) { return domain.VIPWelcome("", "a@example.com", 3) }},
		{"bad email", func() (domain.Content, error) { return domain.VIPWelcome("alice", "alice", 3) }},
		{"no email", func() (domain.Content, error) { return domain.VIPWelcome("alice", "", 3) }},
		{"no orders", func() (domain.Content, error) { return domain.VIPWelcome("alice", "a@example.com", 0) }},
		{"backorder of no qty", func() (domain.Content, error) {
			return domain.BackorderFilled("alice", "a@example.com", "o1", "LAMP", 0, true)
		}},
		{"backorder of a bad sku", func() (domain.Content, error) {
			return domain.BackorderFilled("alice", "a@example.com", "o1", "LAMP\r\nBcc: x@y.z", 1, true)
		}},
		{"backorder without an order", func() (domain.Content, error) {
			return domain.BackorderFilled("alice", "a@example.com", "", "LAMP", 1, false)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.make(); !errors.Is(err, fail.Invalid) {
				t.Fatalf("error %v, want one matching fail.Invalid", err)
			}
		})
	}
}

func TestNewStatus(t *testing.T) {
	withTeam, _ := domain.OutOfStock("SKU", "", 0, false, team)
	noTeam, _ := domain.OutOfStock("SKU", "", 0, false, nil)
	tests := []struct {
		name    string
		content domain.Content
		send    bool
		want    string
	}{
		{"to send", withTeam, true, domain.StatusPending},
		{"no mail server", withTeam, false, domain.StatusRecorded},
		{"nobody to send to", noTeam, true, domain.StatusRecorded},
	}
	for _, tt := range tests {
		n := domain.New("n1", "m1", tt.content, tt.send, t0)
		if n.Status != tt.want {
			t.Errorf("%s: status %q, want %q", tt.name, n.Status, tt.want)
		}
		if n.ID != "n1" || n.MessageID != "m1" || !n.CreatedAt.Equal(t0) || n.Attempts != 0 {
			t.Errorf("%s: %+v", tt.name, n)
		}
	}
}

func TestDelay(t *testing.T) {
	p := domain.RetryPolicy{MaxAttempts: 10, Backoff: time.Second, MaxBackoff: 10 * time.Second}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		if got := p.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %v, want %v", attempt, got, want)
		}
	}
}

func pending(t *testing.T) *domain.Notification {
	t.Helper()
	c, err := domain.OutOfStock("SKU", "o1", 1, false, team)
	if err != nil {
		t.Fatal(err)
	}
	return domain.New("n1", "m1", c, true, t0)
}

func TestDeliveryRetriedThenSent(t *testing.T) {
	p := domain.RetryPolicy{MaxAttempts: 5, Backoff: time.Second, MaxBackoff: time.Minute}
	n := pending(t)
	if !n.Due(t0) {
		t.Fatal("a new pending notification is not due")
	}
	if !n.Claim(t0.Add(time.Minute), p) || n.Attempts != 1 {
		t.Fatalf("claim: %+v", n)
	}
	if n.Due(t0.Add(30 * time.Second)) {
		t.Fatal("due while an attempt holds it")
	}
	n.NotSent("451 try later", false, t0, p)
	if n.Status != domain.StatusPending || n.LastError != "451 try later" || !n.NextAttemptAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a failure: %+v", n)
	}
	if n.Due(t0) || !n.Due(t0.Add(time.Second)) {
		t.Fatal("not due after exactly its backoff")
	}
	now := t0.Add(time.Second)
	n.Claim(now.Add(time.Minute), p)
	n.Sent(now)
	if n.Status != domain.StatusSent || n.Attempts != 2 || !n.SentAt.Equal(now) || n.NextAttemptAt != nil || n.Due(now.Add(time.Hour)) {
		t.Fatalf("after sending: %+v", n)
	}
}

func TestDeliveryGivenUp(t *testing.T) {
	p := domain.RetryPolicy{MaxAttempts: 3, Backoff: time.Second, MaxBackoff: time.Minute}
	tests := []struct {
		name     string
		fail     func(n *domain.Notification, now time.Time) // the outcome of an attempt
		attempts int
	}{
		{"after max attempts", func(n *domain.Notification, now time.Time) { n.NotSent("451 try later", false, now, p) }, 3},
		{"on a permanent failure", func(n *domain.Notification, now time.Time) { n.NotSent("550 no such user", true, now, p) }, 1},
		{"when attempts are lost", func(*domain.Notification, time.Time) {}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := pending(t)
			now := t0
			for n.Due(now) {
				if n.Claim(now.Add(time.Minute), p) {
					tt.fail(n, now)
				}
				now = now.Add(time.Hour)
			}
			if n.Status != domain.StatusFailed || n.Attempts != tt.attempts || n.LastError == "" || n.NextAttemptAt != nil {
				t.Fatalf("%+v: want failed after %d attempts", n, tt.attempts)
			}
		})
	}
}
