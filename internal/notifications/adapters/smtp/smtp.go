// Package smtp sends the notifications service's e-mail to an SMTP server:
// plain SMTP (RFC 5321), without TLS or authentication, as a relay inside
// the deployment's network accepts it.
package smtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"github.com/stockflow/stockflow/internal/notifications/service"
)

// DefaultTimeout bounds a Mailer's connection and conversation.
const DefaultTimeout = 30 * time.Second

// Mailer sends e-mail to the SMTP server at Addr.
type Mailer struct {
	// Addr is the server's host:port.
	Addr string
	// From is the sender's address, in the envelope and the From header;
	// its domain names the e-mails' Message-IDs.
	From string
	// Timeout bounds the connection and the whole conversation of one
	// e-mail (DefaultTimeout when 0).
	Timeout time.Duration
}

var _ service.Mailer = (*Mailer)(nil)

// Send implements service.Mailer: it sends e in one SMTP session. A reply
// of the 5xx class (a permanent failure) makes an error that wraps
// service.ErrRejected.
func (m *Mailer) Send(ctx context.Context, e service.Email) error {
	if err := m.send(ctx, e); err != nil {
		var reply *textproto.Error
		if errors.As(err, &reply) && reply.Code >= 500 {
			return fmt.Errorf("smtp %s: %w: %w", m.Addr, service.ErrRejected, err)
		}
		return fmt.Errorf("smtp %s: %w", m.Addr, err)
	}
	return nil
}

func (m *Mailer) send(ctx context.Context, e service.Email) error {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn, err := (&net.Dialer{Deadline: deadline}).DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // cancelled: unblock the conversation
	defer stop()
	host, _, _ := net.SplitHostPort(m.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(m.From); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(Message(m.From, e)); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	// The server took the e-mail: a failure to say goodbye changes nothing.
	_ = c.Quit()
	return nil
}

// Message returns e as an RFC 5322 message from from: its headers (From,
// To, Subject, Date, Message-ID, and MIME's), and its body as UTF-8 text
// in quoted-printable, every line ending in CRLF.
func Message(from string, e service.Email) []byte {
	to := make([]string, len(e.To))
	for i, addr := range e.To {
		to[i] = (&mail.Address{Address: addr}).String()
	}
	domain := "stockflow.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		domain = from[at+1:]
	}
	var b bytes.Buffer
	header := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	header("From", (&mail.Address{Address: from}).String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", e.Subject))
	header("Date", e.Date.Format(time.RFC1123Z))
	header("Message-ID", "<"+e.ID+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(e.Body)) // writes to a bytes.Buffer do not fail
	qp.Close()
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
