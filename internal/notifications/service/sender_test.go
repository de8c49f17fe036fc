package service_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/notifications/domain"
	"github.com/stockflow/stockflow/internal/notifications/service"
)

var errTryLater = errors.New("451 try later")

// sendDue runs one pass of the sender, and returns when the next
// notification is due.
func (f fixture) sendDue(t *testing.T) time.Time {
	t.Helper()
	next, err := f.sender.SendDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func TestSend(t *testing.T) {
	f := setup(t, true)
	f.outOfStock(t, "m1", "RED-CHAIR")
	f.clock.Add(time.Second)
	if next := f.sendDue(t); !next.IsZero() {
		t.Fatalf("next due %v, want none", next)
	}
	sent := f.mailer.Sent()
	want := service.Email{ID: "m1", To: team, Subject: "Out of stock for RED-CHAIR", Date: t0.Add(time.Second)}
	if len(sent) != 1 || sent[0].ID != want.ID || !slices.Equal(sent[0].To, want.To) || sent[0].Subject != want.Subject ||
		!sent[0].Date.Equal(want.Date) || sent[0].Body != f.notification(t, "m1").Body {
		t.Fatalf("sent %+v, want %+v", sent, want)
	}
	n := f.notification(t, "m1")
	if n.Status != domain.StatusSent || n.Attempts != 1 || n.SentAt == nil || !n.SentAt.Equal(t0.Add(time.Second)) || n.LastError != "" {
		t.Fatalf("notification %+v", n)
	}
	f.sendDue(t)
	if calls := f.mailer.Calls(); calls != 1 {
		t.Fatalf("%d e-mails sent, want the one", calls)
	}
}

func TestRetriedAfterAFailure(t *testing.T) {
	f := setup(t, true)
	f.mailer.failWith(errTryLater)
	f.outOfStock(t, "m1", "SKU")
	next := f.sendDue(t)
	n := f.notification(t, "m1")
	if n.Status != domain.StatusPending || n.Attempts != 1 || n.LastError != errTryLater.Error() || !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after a failure: %+v, next due %v", n, next)
	}
	// Not before its backoff.
	f.clock.Add(59 * time.Second)
	f.sendDue(t)
	if calls := f.mailer.Calls(); calls != 1 {
		t.Fatalf("%d attempts before the backoff ran out, want 1", calls)
	}
	f.clock.Add(time.Second)
	f.sendDue(t)
	if n := f.notification(t, "m1"); n.Status != domain.StatusSent || n.Attempts != 2 || len(f.mailer.Sent()) != 1 {
		t.Fatalf("after the retry: %+v", n)
	}
}

func TestFailedAfterMaxAttempts(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		attempts int
	}{
		{"transient failures", errTryLater, 3},
		{"rejected", fmt.Errorf("smtp: %w: 550 no such user", service.ErrRejected), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, true)
			f.mailer.failWith(tt.err, tt.err, tt.err, tt.err, tt.err)
			f.outOfStock(t, "m1", "SKU")
			for range 10 {
				f.sendDue(t)
				f.clock.Add(time.Hour)
			}
			n := f.notification(t, "m1")
			if n.Status != domain.StatusFailed || n.Attempts != tt.attempts || n.LastError != tt.err.Error() || f.mailer.Calls() != tt.attempts {
				t.Fatalf("notification %+v after %d calls: want failed after %d", n, f.mailer.Calls(), tt.attempts)
			}
		})
	}
}

// TestLostAttemptRetried: an attempt that recorded no outcome (its process
// died while sending) holds its notification for the lease only.
func TestLostAttemptRetried(t *testing.T) {
	f := setup(t, true)
	f.outOfStock(t, "m1", "SKU")
	blocked := &blockingMailer{entered: make(chan struct{}), release: make(chan struct{})}
	dying := service.NewSender(f.store, blocked, f.log)
	dying.Now, dying.Lease = f.clock.Now, 10*time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		dying.SendDue(ctx)
	}()
	<-blocked.entered
	cancel() // the process dies mid-attempt
	close(blocked.release)
	<-done
	if n := f.notification(t, "m1"); n.Status != domain.StatusPending || n.Attempts != 1 {
		t.Fatalf("after the lost attempt: %+v", n)
	}
	if next := f.sendDue(t); !next.Equal(t0.Add(10*time.Minute)) || f.mailer.Calls() != 0 {
		t.Fatalf("sent during the lease (next due %v)", next)
	}
	f.clock.Add(10 * time.Minute)
	f.sendDue(t)
	if n := f.notification(t, "m1"); n.Status != domain.StatusSent || n.Attempts != 2 {
		t.Fatalf("after the lease: %+v", n)
	}
}

// TestTwoSendersSendOnce: senders sharing a store claim each notification
// before sending it.
func TestTwoSendersSendOnce(t *testing.T) {
	f := setup(t, true)
	for i := range 20 {
		f.outOfStock(t, fmt.Sprintf("m%02d", i), "SKU")
	}
	other := service.NewSender(f.store, f.mailer, f.log)
	other.Now = f.clock.Now
	var wg sync.WaitGroup
	for _, s := range []*service.Sender{f.sender, other} {
		wg.Go(func() {
			if _, err := s.SendDue(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if calls := f.mailer.Calls(); calls != 20 {
		t.Fatalf("%d e-mails sent for 20 notifications", calls)
	}
}

func TestRecordedNotificationsAreNotSent(t *testing.T) {
	f := setup(t, true)
	noTeam := service.NewHandlers(f.store, nil, f.sender)
	if _, err := noTeam.OutOfStock(delivered("m1", "notifications.out_of_stock"), service.OutOfStock{SKU: "SKU"}); err != nil {
		t.Fatal(err)
	}
	f.sendDue(t)
	if n := f.notification(t, "m1"); n.Status != domain.StatusRecorded || f.mailer.Calls() != 0 {
		t.Fatalf("a notification to nobody: %+v, %d e-mails", n, f.mailer.Calls())
	}
}

// blockingMailer blocks in Send until released, and then fails as its
// context says.
type blockingMailer struct {
	entered, release chan struct{}
}

func (m *blockingMailer) Send(ctx context.Context, _ service.Email) error {
	close(m.entered)
	<-m.release
	return ctx.Err()
}
