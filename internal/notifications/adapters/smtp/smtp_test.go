package smtp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/notifications/adapters/smtp"
	"github.com/stockflow/stockflow/internal/notifications/service"
	"github.com/stockflow/stockflow/internal/testenv"
)

var email = service.Email{
	ID:      "0190f2c4-7e1a-7b3c-9d2e-123456789abc",
	To:      []string{"stock@example.com", "boss@example.com"},
	Subject: "Out of stock for RED-CHAIR — again",
	Body:    "Out of stock for RED-CHAIR.\n.A line that starts with a dot.\n" + strings.Repeat("long ", 40) + "\nÉté.\n",
	Date:    time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
}

func TestSend(t *testing.T) {
	srv := testenv.StartSMTP(t)
	m := &smtp.Mailer{Addr: srv.Addr, From: "stockflow@shop.example", Timeout: 5 * time.Second}
	if err := m.Send(context.Background(), email); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitMessages(t, 1)[0]
	if got.From != "stockflow@shop.example" || !slices.Equal(got.To, email.To) {
		t.Fatalf("envelope from %q to %q", got.From, got.To)
	}
	if bytes.Contains(bytes.ReplaceAll(got.Data, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("a line does not end in CRLF:\n%q", got.Data)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	date, err := msg.Header.Date()
	if err != nil {
		t.Fatal(err)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil {
		t.Fatal(err)
	}
	from, err := mail.ParseAddress(msg.Header.Get("From"))
	if err != nil {
		t.Fatal(err)
	}
	if subject != email.Subject || !date.Equal(email.Date) || from.Address != "stockflow@shop.example" ||
		len(to) != 2 || to[0].Address != email.To[0] || to[1].Address != email.To[1] ||
		msg.Header.Get("Message-ID") != "<"+email.ID+"@shop.example>" ||
		msg.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("headers %v (subject %q)", msg.Header, subject)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(email.Body, "\n", "\r\n"); string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}

func TestSendFailures(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		rejected bool
	}{
		{"transient", 451, false},
		{"permanent", 554, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testenv.StartSMTP(t)
			srv.Refuse(tt.code, 1)
			m := &smtp.Mailer{Addr: srv.Addr, From: "stockflow@shop.example", Timeout: 5 * time.Second}
			err := m.Send(context.Background(), email)
			if err == nil || errors.Is(err, service.ErrRejected) != tt.rejected || !strings.Contains(err.Error(), srv.Addr) {
				t.Fatalf("error %v: want one naming the server, rejected: %v", err, tt.rejected)
			}
			if err := m.Send(context.Background(), email); err != nil {
				t.Fatalf("after the refusal: %v", err)
			}
		})
	}
}

// TestSendTimeout: a server that never answers holds a Mailer no longer
// than its timeout, or its context.
func TestSendTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // silent
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()

	m := &smtp.Mailer{Addr: ln.Addr().String(), From: "stockflow@shop.example", Timeout: 200 * time.Millisecond}
	start := time.Now()
	if err := m.Send(context.Background(), email); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("error %v after %v: want a timeout", err, time.Since(start))
	}
	m.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := m.Send(ctx, email); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("error %v after %v: want the context's end", err, time.Since(start))
	}
}

func TestSendUnreachable(t *testing.T) {
	m := &smtp.Mailer{Addr: testenv.FreeAddr(t), From: "stockflow@shop.example", Timeout: time.Second}
	if err := m.Send(context.Background(), email); err == nil || errors.Is(err, service.ErrRejected) {
		t.Fatalf("error %v: want a transient one", err)
	}
}
