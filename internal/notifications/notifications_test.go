package notifications_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/notifications"
	"github.com/stockflow/stockflow/internal/notifications/domain"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/inproc"
)

var team = []string{"stock@shop.example", "buyer@shop.example"}

// open opens the service on a fresh SQLite store with mail, and runs it
// until the test ends.
func open(t *testing.T, m notifications.Mail, configure func(*notifications.Service)) *notifications.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := notifications.Open(ctx, platform.Config{DataDir: t.TempDir(), Transport: inproc.New(), Log: testenv.Logger(t, slog.LevelInfo)}, m)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if configure != nil {
		configure(s)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
	})
	return s
}

// deliver hands the service a message from the broker.
func deliver(t *testing.T, s *notifications.Service, id, channel, payload string) {
	t.Helper()
	d := messaging.Delivery{Envelope: messaging.Envelope{ID: id, Channel: channel, Payload: json.RawMessage(payload)}, Attempt: 1}
	if err := s.Consumer.Handle(context.Background(), d); err != nil {
		t.Fatalf("delivery %s: %v", id, err)
	}
}

// get returns the notification id, as GET /notifications/{id} answers it.
func get(t *testing.T, s *notifications.Service, id string) domain.Notification {
	t.Helper()
	mux := http.NewServeMux()
	s.Routes(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/notifications/"+id, nil))
	var n domain.Notification
	if err := json.Unmarshal(rec.Body.Bytes(), &n); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /notifications/%s: %d %s", id, rec.Code, rec.Body)
	}
	return n
}

// waitStatus waits up to 5s until the notification id has status.
func waitStatus(t *testing.T, s *notifications.Service, id, status string) domain.Notification {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := get(t, s, id)
		if n.Status == status {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification %s is %s after 5s, want %s: %+v", id, n.Status, status, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	outOfStock = `{"sku": "RED-CHAIR", "orderid": "o1", "qty": 3}`
	becameVIP  = `{"customer": "alice", "email": "alice@example.com", "orders": 3, "at": "2026-03-01T09:00:00Z"}`
	filled     = `{"orderid": "o2", "customer": "bob", "email": "bob@example.com", "sku": "LAMP", "qty": 2, "batchref": "b3", "placed": false}`
)

func TestRecordedWithoutAMailServer(t *testing.T) {
	s := open(t, notifications.Mail{StockTeam: team}, nil)
	if s.Sender != nil {
		t.Fatal("a sender without a mail server")
	}
	deliver(t, s, "m1", "out_of_stock", outOfStock)
	deliver(t, s, "m2", "customer_became_vip", becameVIP)
	deliver(t, s, "m2", "customer_became_vip", becameVIP) // redelivered
	deliver(t, s, "m3", "backorder_filled", filled)
	deliver(t, s, "bad", "out_of_stock", `{"orderid": "o1"}`)

	if n := get(t, s, "m1"); n.Status != domain.StatusRecorded || n.Subject != "Out of stock for RED-CHAIR" || !slices.Equal(n.To, team) {
		t.Fatalf("out-of-stock notification %+v", n)
	}
	if n := get(t, s, "m2"); n.Status != domain.StatusRecorded || n.Subject != "Welcome to VIP, alice" {
		t.Fatalf("VIP notification %+v", n)
	}
	if n := get(t, s, "m3"); n.Status != domain.StatusRecorded || n.Subject != "LAMP is in stock: reserved in your cart" || !slices.Equal(n.To, []string{"bob@example.com"}) {
		t.Fatalf("backorder notification %+v", n)
	}
	list, err := s.Handlers.Notifications(context.Background(), 10)
	if err != nil || len(list) != 3 {
		t.Fatalf("notifications %+v, %v: want 3", list, err)
	}
	dead, err := s.DeadLetters(context.Background(), 10)
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].Reason, "sku") {
		t.Fatalf("dead letters %+v, %v: want the message without a sku", dead, err)
	}
}

func TestSentThroughSMTP(t *testing.T) {
	srv := testenv.StartSMTP(t)
	s := open(t, notifications.Mail{SMTP: srv.Addr, From: "stockflow@shop.example", StockTeam: team}, nil)
	deliver(t, s, "m1", "out_of_stock", outOfStock)
	deliver(t, s, "m2", "customer_became_vip", becameVIP)
	got := srv.WaitMessages(t, 2)

	want := map[string]struct {
		to      []string
		subject string
	}{
		"<m1@shop.example>": {team, "Out of stock for RED-CHAIR"},
		"<m2@shop.example>": {[]string{"alice@example.com"}, "Welcome to VIP, alice"},
	}
	for _, m := range got {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		id := msg.Header.Get("Message-ID")
		w, ok := want[id]
		if !ok {
			t.Fatalf("unexpected Message-ID %q", id)
		}
		delete(want, id)
		to, err := msg.Header.AddressList("To")
		if err != nil {
			t.Fatal(err)
		}
		var toAddrs []string
		for _, a := range to {
			toAddrs = append(toAddrs, a.Address)
		}
		if _, err := msg.Header.Date(); err != nil {
			t.Errorf("%s: Date: %v", id, err)
		}
		if m.From != "stockflow@shop.example" || !slices.Equal(m.To, w.to) || !slices.Equal(toAddrs, w.to) ||
			msg.Header.Get("Subject") != w.subject || msg.Header.Get("From") != "<stockflow@shop.example>" {
			t.Errorf("%s: envelope from %s to %v, headers %v; want to %v, subject %q", id, m.From, m.To, msg.Header, w.to, w.subject)
		}
	}
	for _, id := range []string{"m1", "m2"} {
		if n := waitStatus(t, s, id, domain.StatusSent); n.Attempts != 1 || n.SentAt == nil {
			t.Fatalf("notification %+v", n)
		}
	}
}

func TestRetriedAfterARefusal(t *testing.T) {
	srv := testenv.StartSMTP(t)
	srv.Refuse(451, 1)
	s := open(t, notifications.Mail{SMTP: srv.Addr, From: "stockflow@shop.example", StockTeam: team}, func(s *notifications.Service) {
		s.Sender.Policy = domain.RetryPolicy{MaxAttempts: 3, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	})
	deliver(t, s, "m1", "out_of_stock", outOfStock)
	srv.WaitMessages(t, 1)
	n := waitStatus(t, s, "m1", domain.StatusSent)
	if n.Attempts != 2 || !strings.Contains(n.LastError, "451") {
		t.Fatalf("notification %+v: want sent at the second attempt, the first's error kept", n)
	}
}

func TestFailedAfterMaxAttempts(t *testing.T) {
	srv := testenv.StartSMTP(t)
	srv.Refuse(451, -1)
	s := open(t, notifications.Mail{SMTP: srv.Addr, From: "stockflow@shop.example", StockTeam: team}, func(s *notifications.Service) {
		s.Sender.Policy = domain.RetryPolicy{MaxAttempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	})
	deliver(t, s, "m1", "out_of_stock", outOfStock)
	n := waitStatus(t, s, "m1", domain.StatusFailed)
	if n.Attempts != 3 || !strings.Contains(n.LastError, "451") || len(srv.Messages()) != 0 {
		t.Fatalf("notification %+v: want failed after 3 refused attempts", n)
	}
}

func TestBadMailConfiguration(t *testing.T) {
	tests := []struct {
		name string
		mail notifications.Mail
	}{
		{"no port", notifications.Mail{SMTP: "localhost", From: "stockflow@shop.example"}},
		{"no sender", notifications.Mail{SMTP: "localhost:25"}},
		{"bad sender", notifications.Mail{SMTP: "localhost:25", From: "stockflow"}},
		{"bad stock team address", notifications.Mail{StockTeam: []string{"stock"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := notifications.Open(context.Background(), platform.Config{DataDir: t.TempDir(), Transport: inproc.New(), Log: testenv.Logger(t, slog.LevelInfo)}, tt.mail)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
		})
	}
}
