package crm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/crm"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/testenv"
)

// recorder is a transport that keeps what is published, and delivers
// nothing (the test hands deliveries to the consumer itself).
type recorder struct {
	mu        sync.Mutex
	published []messaging.Envelope
}

func (r *recorder) Publish(_ context.Context, msgs ...messaging.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, msgs...)
	return nil
}

func (r *recorder) Subscribe(ctx context.Context, _ string, _ []string, _ messaging.Handler) error {
	<-ctx.Done()
	return ctx.Err()
}

func (r *recorder) Close() error { return nil }

func (r *recorder) on(channel string) []messaging.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []messaging.Envelope
	for _, env := range r.published {
		if env.Channel == channel {
			out = append(out, env)
		}
	}
	return out
}

func delivery(id, channel, payload string) messaging.Delivery {
	return messaging.Delivery{Envelope: messaging.Envelope{ID: id, Channel: channel, Payload: json.RawMessage(payload)}, Attempt: 1}
}

func orderPlaced(order string, day int) string {
	return fmt.Sprintf(`{"orderid": %q, "customer": "alice", "email": "alice@example.com",
		"lines": [{"sku": "LAMP", "qty": 1}], "placed_at": "2026-03-0%dT09:00:00Z"}`, order, day)
}

// TestService runs the service as the stockflow command does: messages
// consumed from the broker, the VIP announced through the outbox, the
// customer served over HTTP.
func TestService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &recorder{}
	s, err := crm.Open(ctx, platform.Config{DataDir: t.TempDir(), Transport: tr, Log: testenv.Logger(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	deliveries := []messaging.Delivery{
		delivery("s1", "order_status_changed", `{"orderid": "o1", "customer": "alice", "seq": 2, "status": "reserved",
			"event": "reserved", "detail": "LAMP reserved", "at": "2026-03-01T09:01:00Z"}`),
		delivery("p1", "order_placed", orderPlaced("o1", 1)),
		delivery("p2", "order_placed", orderPlaced("o2", 2)),
		delivery("p2", "order_placed", orderPlaced("o2", 2)), // redelivered
		delivery("p3", "order_placed", orderPlaced("o3", 3)),
		delivery("p3", "order_placed", orderPlaced("o3", 3)),
		delivery("bad", "order_placed", `{"orderid": "o9", "email": "alice@example.com", "placed_at": "2026-03-09T09:00:00Z"}`),
	}
	for _, d := range deliveries {
		if err := s.Consumer.Handle(ctx, d); err != nil {
			t.Fatalf("delivery %s: %v", d.ID, err)
		}
	}
	dead, err := s.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].MessageID != "bad" || !strings.Contains(dead[0].Reason, "customer") {
		t.Fatalf("dead letters %+v, want the message without a customer", dead)
	}

	ran := make(chan error, 1)
	go func() {
		ran <- s.Run(ctx)
		close(ran)
	}()
	defer func() { cancel(); <-ran }() // before the store closes
	deadline := time.Now().Add(5 * time.Second)
	for len(tr.on("customer_became_vip")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("customer_became_vip not published within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-ran; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	vip := tr.on("customer_became_vip")
	if len(vip) != 1 || vip[0].Key != "alice" || vip[0].CausationID != "p3" {
		t.Fatalf("published %+v, want one customer_became_vip for alice, caused by p3", vip)
	}
	var e struct {
		Customer, Email string
		Orders          int
		At              time.Time
	}
	if err := json.Unmarshal(vip[0].Payload, &e); err != nil {
		t.Fatal(err)
	}
	if e.Customer != "alice" || e.Email != "alice@example.com" || e.Orders != 3 || !e.At.Equal(time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("customer_became_vip %s", vip[0].Payload)
	}

	mux := http.NewServeMux()
	s.Routes(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/customers/alice", nil))
	var c struct {
		VIP    bool `json:"vip"`
		Orders []struct {
			Status string `json:"status"`
		} `json:"orders"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /customers/alice: %d %s", rec.Code, rec.Body)
	}
	if !c.VIP || len(c.Orders) != 3 || c.Orders[0].Status != "reserved" {
		t.Fatalf("GET /customers/alice: %s", rec.Body)
	}
}
