package testenv

// A private SMTP server: enough of RFC 5321 for net/smtp to deliver mail
// to it, in the test's own process, so that tests of what sends e-mail
// need no mail server installed.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SMTPMessage is a message an SMTPServer accepted.
type SMTPMessage struct {
	// From is the envelope sender (MAIL FROM), "" for the null sender.
	From string
	// To are the envelope recipients (RCPT TO), in order.
	To []string
	// Data is the message as sent after DATA, dot-unstuffed, its lines
	// ending in CRLF, without the final "." line.
	Data []byte
}

// SMTPServer is an SMTP server of one test's own, listening on a loopback
// port: it answers EHLO, HELO, MAIL FROM, RCPT TO, DATA, RSET, NOOP and
// QUIT (no TLS, no authentication), and keeps the messages it accepts. It
// stops at the test's cleanup.
type SMTPServer struct {
	// Addr is the server's address, 127.0.0.1:port.
	Addr string

	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	msgs    []SMTPMessage
	arrived chan struct{} // closed, and replaced, when a message arrives
	refuse  int           // DATA commands left to refuse; < 0: all
	code    int           // the reply code that refuses them
}

// smtpIdle bounds the wait for a client's next line.
const smtpIdle = 30 * time.Second

// StartSMTP starts an SMTP server on a free loopback port.
func StartSMTP(t testing.TB) *SMTPServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the SMTP server: %v", err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}, arrived: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

// Refuse makes the server answer code (451, say, or 554) to the DATA
// command of the next n messages, or of every one when n < 0; n = 0 stops
// refusing.
func (s *SMTPServer) Refuse(code, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.code, s.refuse = code, n
}

// Messages returns the messages accepted so far, in the order they came.
func (s *SMTPServer) Messages() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMTPMessage(nil), s.msgs...)
}

// WaitMessages waits, for up to 10s, until the server has accepted n
// messages, and returns the messages accepted; the test fails if too few
// came.
func (s *SMTPServer) WaitMessages(t testing.TB, n int) []SMTPMessage {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		msgs, arrived := append([]SMTPMessage(nil), s.msgs...), s.arrived
		s.mu.Unlock()
		if len(msgs) >= n {
			return msgs
		}
		select {
		case <-arrived:
		case <-timeout.C:
			t.Fatalf("SMTP server %s: %d messages after 10s, want %d", s.Addr, len(msgs), n)
		}
	}
}

func (s *SMTPServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.serve(conn)
		}()
	}
}

// close stops the server: no new connections, and the open ones closed.
func (s *SMTPServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// refusal returns the code to refuse the current DATA command with, or 0.
func (s *SMTPServer) refusal() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse == 0 {
		return 0
	}
	if s.refuse > 0 {
		s.refuse--
	}
	return s.code
}

func (s *SMTPServer) keep(m SMTPMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// serve holds one SMTP session, until the client quits or goes away.
func (s *SMTPServer) serve(conn net.Conn) {
	r := bufio.NewReader(conn)
	reply := func(format string, args ...any) error {
		_, err := fmt.Fprintf(conn, format+"\r\n", args...)
		return err
	}
	if reply("220 %s testenv SMTP ready", s.Addr) != nil {
		return
	}
	greeted := false
	var tx *SMTPMessage // the mail transaction under way
	for {
		conn.SetDeadline(time.Now().Add(smtpIdle))
		line, err := readLine(r)
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			greeted, tx = true, nil
			err = reply("250-testenv greets %s\r\n250 8BITMIME", arg)
		case "HELO":
			greeted, tx = true, nil
			err = reply("250 testenv greets %s", arg)
		case "MAIL":
			addr, ok := smtpPath(arg, "FROM:")
			switch {
			case !greeted:
				err = reply("503 5.5.1 say EHLO or HELO first")
			case tx != nil:
				err = reply("503 5.5.1 a mail transaction is under way")
			case !ok:
				err = reply("501 5.5.4 syntax: MAIL FROM:<address>")
			default:
				tx = &SMTPMessage{From: addr}
				err = reply("250 2.1.0 OK")
			}
		case "RCPT":
			addr, ok := smtpPath(arg, "TO:")
			switch {
			case tx == nil:
				err = reply("503 5.5.1 MAIL FROM first")
			case !ok || addr == "":
				err = reply("501 5.5.4 syntax: RCPT TO:<address>")
			default:
				tx.To = append(tx.To, addr)
				err = reply("250 2.1.5 OK")
			}
		case "DATA":
			if tx == nil || len(tx.To) == 0 {
				err = reply("503 5.5.1 RCPT TO first")
				break
			}
			if code := s.refusal(); code != 0 {
				tx = nil
				err = reply("%d refused by the test", code)
				break
			}
			if err = reply("354 end data with <CR><LF>.<CR><LF>"); err != nil {
				return
			}
			if tx.Data, err = readData(r); err != nil {
				return
			}
			s.keep(*tx)
			tx = nil
			err = reply("250 2.0.0 OK queued")
		case "RSET":
			tx = nil
			err = reply("250 2.0.0 OK")
		case "NOOP":
			err = reply("250 2.0.0 OK")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			err = reply("502 5.5.2 command not implemented")
		}
		if err != nil {
			return
		}
	}
}

// errLineTooLong: a client sent a line longer than SMTP allows.
var errLineTooLong = errors.New("line too long")

// readLine reads a line, without its line ending.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	} else if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(line, "\r\n")), nil
}

// readData reads the lines of a message up to the "." line, removing the
// dot the client doubled at the start of lines (RFC 5321, 4.5.2).
func readData(r *bufio.Reader) ([]byte, error) {
	var data bytes.Buffer
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		if line == "." {
			return data.Bytes(), nil
		}
		data.WriteString(strings.TrimPrefix(line, "."))
		data.WriteString("\r\n")
	}
}

// smtpPath returns the address of a MAIL or RCPT argument, "FROM:<a@b>
// BODY=8BITMIME" say, whose keyword is prefix.
func smtpPath(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	addr, _, ok := strings.Cut(rest[1:], ">")
	return addr, ok
}
