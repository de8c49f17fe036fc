package service_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/notifications/domain"
	"github.com/stockflow/stockflow/internal/notifications/service"
)

func TestNotificationsOfEvents(t *testing.T) {
	tests := []struct {
		name    string
		handle  func(h *service.Handlers, ctx context.Context) ([]messaging.Raised, error)
		kind    string
		to      []string
		subject string
	}{
		{"out_of_stock", func(h *service.Handlers, ctx context.Context) ([]messaging.Raised, error) {
			return h.OutOfStock(ctx, service.OutOfStock{SKU: "RED-CHAIR", OrderID: "o1", Qty: 2})
		}, domain.KindOutOfStock, team, "Out of stock for RED-CHAIR"},
		{"customer_became_vip", func(h *service.Handlers, ctx context.Context) ([]messaging.Raised, error) {
			return h.CustomerBecameVIP(ctx, service.CustomerBecameVIP{Customer: "alice", Email: "alice@example.com", Orders: 3})
		}, domain.KindVIPWelcome, []string{"alice@example.com"}, "Welcome to VIP, alice"},
		{"backorder_filled", func(h *service.Handlers, ctx context.Context) ([]messaging.Raised, error) {
			return h.BackorderFilled(ctx, service.BackorderFilled{OrderID: "o1", Customer: "alice", Email: "alice@example.com", SKU: "LAMP", Qty: 3, Placed: true})
		}, domain.KindBackorder, []string{"alice@example.com"}, "LAMP is in stock: reserved for your order o1"},
	}
	for _, tt := range tests {
		for _, withMail := range []bool{false, true} {
			status := map[bool]string{false: domain.StatusRecorded, true: domain.StatusPending}[withMail]
			t.Run(tt.name+"/"+status, func(t *testing.T) {
				f := setup(t, withMail)
				ctx := delivered("m1", "notifications."+tt.name)
				if raised, err := tt.handle(f.h, ctx); err != nil || raised != nil {
					t.Fatalf("raised %v, error %v", raised, err)
				}
				n := f.notification(t, "m1")
				if n.ID != "m1" || n.MessageID != "m1" || n.Kind != tt.kind || !slices.Equal(n.To, tt.to) ||
					n.Subject != tt.subject || n.Body == "" || n.Status != status || !n.CreatedAt.Equal(t0) || n.Attempts != 0 {
					t.Fatalf("notification %+v", n)
				}

				// Redelivered (the inbox skips it), then handled again
				// under another name (past the inbox): one notification.
				f.clock.Add(time.Hour)
				for _, ctx := range []context.Context{ctx, delivered("m1", "notifications.other")} {
					if _, err := tt.handle(f.h, ctx); err != nil {
						t.Fatal(err)
					}
				}
				list, err := f.h.Notifications(context.Background(), 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(list) != 1 || !list[0].CreatedAt.Equal(t0) {
					t.Fatalf("notifications %+v, want the first only", list)
				}
			})
		}
	}
}

func TestInvalidMessagesArePermanent(t *testing.T) {
	f := setup(t, true)
	tests := []struct {
		name   string
		handle func(ctx context.Context) ([]messaging.Raised, error)
	}{
		{"no sku", func(ctx context.Context) ([]messaging.Raised, error) {
			return f.h.OutOfStock(ctx, service.OutOfStock{})
		}},
		{"negative qty", func(ctx context.Context) ([]messaging.Raised, error) {
			return f.h.OutOfStock(ctx, service.OutOfStock{SKU: "SKU", Qty: -1})
		}},
		{"backorder without an email", func(ctx context.Context) ([]messaging.Raised, error) {
			return f.h.BackorderFilled(ctx, service.BackorderFilled{OrderID: "o1", Customer: "alice", SKU: "LAMP", Qty: 3})
		}},
		{"bad email", func(ctx context.Context) ([]messaging.Raised, error) {
			return f.h.CustomerBecameVIP(ctx, service.CustomerBecameVIP{Customer: "alice", Email: "alice", Orders: 3})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.handle(delivered(tt.name, "notifications.test")); !messaging.IsPermanent(err) {
				t.Fatalf("error %v, want a permanent one", err)
			}
		})
	}
	if list, err := f.h.Notifications(context.Background(), 10); err != nil || len(list) != 0 {
		t.Fatalf("notifications %+v, %v: want none", list, err)
	}
}

func TestListNewestFirst(t *testing.T) {
	f := setup(t, false)
	var ids []string
	for i := range 3 {
		id := messaging.NewID()
		ids = append(ids, id)
		f.outOfStock(t, id, fmt.Sprintf("SKU-%d", i))
		time.Sleep(2 * time.Millisecond) // ids sort by the millisecond
	}
	slices.Reverse(ids)
	for _, limit := range []int{1, 3, service.MaxLimit} {
		list, err := f.h.Notifications(context.Background(), limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range list {
			got = append(got, n.ID)
		}
		if want := ids[:min(limit, 3)]; !slices.Equal(got, want) {
			t.Errorf("Notifications(%d) = %v, want %v", limit, got, want)
		}
	}
	for _, limit := range []int{0, -1, service.MaxLimit + 1} {
		if _, err := f.h.Notifications(context.Background(), limit); !errors.Is(err, fail.Invalid) {
			t.Errorf("Notifications(%d): %v, want invalid", limit, err)
		}
	}
	if _, err := f.h.Notification(context.Background(), "nope"); !errors.Is(err, fail.NotFound) {
		t.Errorf("Notification(nope): %v, want not found", err)
	}
}

// TestStoringWakesTheSender: a pending notification is sent at once, not
// at the next poll.
func TestStoringWakesTheSender(t *testing.T) {
	f := setup(t, true)
	f.sender.Poll = time.Hour
	f.sender.Now = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.sender.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	// Run's first pass may come before or after the notification.
	for i := range 2 {
		f.outOfStock(t, fmt.Sprintf("m%d", i), "SKU")
		deadline := time.Now().Add(5 * time.Second)
		for len(f.mailer.Sent()) <= i {
			if time.Now().After(deadline) {
				t.Fatalf("notification %d not sent within 5s", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
