package testenv_test

import (
	"bufio"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

func TestSMTPServerReceives(t *testing.T) {
	s := testenv.StartSMTP(t)
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Fatalf("Addr %q", s.Addr)
	}
	// A line that starts with a dot is sent with the dot doubled.
	msg := "Subject: hello\r\n\r\nfirst\r\n.dotted\r\n..\r\nlast\r\n"
	to := []string{"a@example.com", "b@example.com"}
	if err := smtp.SendMail(s.Addr, nil, "from@example.com", to, []byte(msg)); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	got := s.WaitMessages(t, 1)
	if len(got) != 1 {
		t.Fatalf("%d messages, want 1", len(got))
	}
	m := got[0]
	if m.From != "from@example.com" || !slices.Equal(m.To, to) {
		t.Errorf("envelope from %q to %q, want from@example.com to %q", m.From, m.To, to)
	}
	if string(m.Data) != msg {
		t.Errorf("data %q, want %q", m.Data, msg)
	}
}

func TestSMTPServerRefuses(t *testing.T) {
	s := testenv.StartSMTP(t)
	send := func() error {
		return smtp.SendMail(s.Addr, nil, "from@example.com", []string{"to@example.com"}, []byte("Subject: x\r\n\r\nx\r\n"))
	}

	s.Refuse(451, 2)
	for i := range 2 {
		var tpErr *textproto.Error
		if err := send(); !errors.As(err, &tpErr) || tpErr.Code != 451 {
			t.Fatalf("send %d while refusing: %v, want a 451", i+1, err)
		}
	}
	if err := send(); err != nil {
		t.Fatalf("send after the refusals: %v", err)
	}

	s.Refuse(554, -1)
	for range 3 {
		var tpErr *textproto.Error
		if err := send(); !errors.As(err, &tpErr) || tpErr.Code != 554 {
			t.Fatalf("send while refusing all: %v, want a 554", err)
		}
	}
	s.Refuse(0, 0)
	if err := send(); err != nil {
		t.Fatalf("send after refusing stopped: %v", err)
	}
	if n := len(s.Messages()); n != 2 {
		t.Fatalf("%d messages kept, want the 2 accepted", n)
	}
}

// TestSMTPServerSession drives a session by hand: the commands net/smtp
// uses, in and out of order.
func TestSMTPServerSession(t *testing.T) {
	s := testenv.StartSMTP(t)
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := textproto.NewReader(bufio.NewReader(conn))
	if _, _, err := r.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	steps := []struct {
		send string
		code int
	}{
		{"MAIL FROM:<a@example.com>", 503}, // before HELO
		{"HELO client", 250},
		{"RCPT TO:<b@example.com>", 503}, // before MAIL
		{"DATA", 503},
		{"MAIL FROM:a@example.com", 501},
		{"MAIL FROM:<> BODY=8BITMIME", 250}, // the null sender
		{"MAIL FROM:<a@example.com>", 503},  // nested
		{"RCPT TO:<b@example.com>", 250},
		{"RSET", 250},
		{"DATA", 503}, // RSET ended the transaction
		{"NOOP", 250},
		{"VRFY b", 502},
		{"EHLO client", 250},
		{"mail from:<a@example.com>", 250},
		{"rcpt to:<b@example.com>", 250},
		{"DATA", 354},
		{"..a\r\n.", 250},
		{"QUIT", 221},
	}
	for _, st := range steps {
		if _, err := conn.Write([]byte(st.send + "\r\n")); err != nil {
			t.Fatalf("%s: %v", st.send, err)
		}
		if code, msg, err := r.ReadResponse(st.code); err != nil {
			t.Fatalf("%s: %d %s, want %d", st.send, code, msg, st.code)
		}
	}
	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].From != "a@example.com" || string(msgs[0].Data) != ".a\r\n" {
		t.Fatalf("messages %+v, want one from a@example.com holding .a", msgs)
	}
}
