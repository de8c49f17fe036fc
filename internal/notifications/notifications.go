// Package notifications is the notifications service: it e-mails the stock
// team when no batch can take a line ("Out of stock for <sku>"), welcomes
// a customer who became a VIP, and tells a customer when stock they waited
// for arrived and is reserved for them. Every notification is kept; with a
// mail server configured it is sent too, and retried until it is sent or
// given up.
//
//	domain/        the Notification aggregate and its delivery
//	service/       handlers, the sender, queries, the messages it consumes
//	adapters/http/ the HTTP API
//	adapters/smtp/ the sender's mailer, over SMTP
//
// Notifications are kept in a document store (internal/docstore).
package notifications

import (
	"context"
	"fmt"
	"net"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/httpx"
	notificationshttp "github.com/stockflow/stockflow/internal/notifications/adapters/http"
	"github.com/stockflow/stockflow/internal/notifications/adapters/smtp"
	"github.com/stockflow/stockflow/internal/notifications/service"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/valid"
)

// Name is the service's name: its consumer group, database file and schema.
const Name = "notifications"

// Mail configures the e-mail the service sends.
type Mail struct {
	// SMTP is the mail server's host:port; empty for none: notifications
	// are then recorded, not sent.
	SMTP string
	// From is the sender's address (required with SMTP).
	From string
	// StockTeam are the addresses out-of-stock alerts go to.
	StockTeam []string
}

func (m Mail) validate() error {
	for _, addr := range m.StockTeam {
		if err := valid.Email("stock team address", addr); err != nil {
			return err
		}
	}
	if m.SMTP == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(m.SMTP); err != nil {
		return fmt.Errorf("SMTP server must be host:port: %w", err)
	}
	return valid.Email("sender address", m.From)
}

// Service is a running notifications service.
type Service struct {
	*platform.Base[docstore.Store, *service.Handlers]
	// Sender sends the notifications; nil without a mail server.
	Sender *service.Sender
	cfg    platform.Config
}

var _ platform.Service = (*Service)(nil)

// Open opens the service's store and wires it, to send e-mail as mail
// says.
func Open(ctx context.Context, cfg platform.Config, mail Mail) (*Service, error) {
	if err := mail.validate(); err != nil {
		return nil, fmt.Errorf("%s: mail: %w", Name, err)
	}
	base, err := platform.Assemble(ctx, cfg, platform.Parts[docstore.Store, *service.Handlers]{
		Name: Name, Registry: service.Messages(), Inbound: service.Inbound,
		Open: platform.DocStore(Name),
		Handlers: func(store docstore.Store) *service.Handlers {
			var sender *service.Sender
			if mail.SMTP != "" {
				sender = service.NewSender(store, &smtp.Mailer{Addr: mail.SMTP, From: mail.From}, cfg.Log)
			}
			return service.NewHandlers(store, mail.StockTeam, sender)
		},
		Bus: service.NewBus,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Base: base, Sender: base.Handlers.Sender(), cfg: cfg}, nil
}

// Run consumes the inbound channels and, with a mail server, sends the
// notifications, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if s.Sender == nil {
		return s.Base.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		s.Sender.Run(ctx) // until ctx is done: its error is ctx's
	}()
	err := s.Base.Run(ctx)
	cancel()
	<-sent
	return err
}

// Routes adds the service's HTTP routes to mux.
func (s *Service) Routes(mux httpx.Mux) {
	(&notificationshttp.API{Notifications: s.Handlers, Log: s.cfg.Log}).Register(mux)
}
