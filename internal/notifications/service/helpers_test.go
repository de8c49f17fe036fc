package service_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/docstore"
	"github.com/stockflow/stockflow/internal/docstore/sqlite"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/notifications/domain"
	"github.com/stockflow/stockflow/internal/notifications/service"
	"github.com/stockflow/stockflow/internal/testenv"
)

var (
	t0   = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	team = []string{"stock@example.com"}
)

// clock is a time the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// mailer is a fake Mailer: it fails with the errors it is given, one per
// e-mail, then sends.
type mailer struct {
	mu   sync.Mutex
	errs []error
	sent []service.Email
	// calls counts the attempts, sent or not.
	calls int
}

func (m *mailer) Send(_ context.Context, e service.Email) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if len(m.errs) > 0 {
		err := m.errs[0]
		m.errs = m.errs[1:]
		return err
	}
	m.sent = append(m.sent, e)
	return nil
}

// failWith makes the next len(errs) e-mails fail.
func (m *mailer) failWith(errs ...error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, errs...)
}

func (m *mailer) Sent() []service.Email {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]service.Email(nil), m.sent...)
}

func (m *mailer) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// fixture is the service layer over a SQLite store in a temporary
// directory, with a fake mailer and clock; sender is nil when the
// fixture has no mail server.
type fixture struct {
	store  docstore.Store
	log    *slog.Logger
	h      *service.Handlers
	sender *service.Sender
	mailer *mailer
	clock  *clock
}

func setup(t *testing.T, withMail bool) fixture {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "notifications.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	f := fixture{store: store, log: testenv.Logger(t, slog.LevelInfo), mailer: &mailer{}, clock: &clock{now: t0}}
	if withMail {
		f.sender = service.NewSender(store, f.mailer, f.log)
		f.sender.Now = f.clock.Now
		f.sender.Policy = domain.RetryPolicy{MaxAttempts: 3, Backoff: time.Minute, MaxBackoff: time.Hour}
	}
	f.h = service.NewHandlers(store, team, f.sender)
	f.h.Now = f.clock.Now
	return f
}

// delivered returns a context handling the message id, as the bus hands
// it to the handler named consumer.
func delivered(id, consumer string) context.Context {
	return messaging.WithMeta(context.Background(), messaging.Meta{MessageID: id, CorrelationID: id, Consumer: consumer})
}

// outOfStock handles an out_of_stock message id.
func (f fixture) outOfStock(t *testing.T, id, sku string) {
	t.Helper()
	if _, err := f.h.OutOfStock(delivered(id, "notifications.out_of_stock"), service.OutOfStock{SKU: sku, OrderID: "o1", Qty: 2}); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) notification(t *testing.T, id string) *domain.Notification {
	t.Helper()
	n, err := f.h.Notification(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
