package e2e

// Helpers of the production tests: a PostgreSQL database per test, a
// client of its private redis-server (testenv.StartRedis), a Redis
// subscriber, the CLI's one-shot commands.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/testenv"
)

// Channels of the book's chapter 11.
const (
	chanChangeBatchQuantity = "change_batch_quantity"
	chanLineAllocated       = "line_allocated"
)

// newDatabase creates a database of the test's own on the test PostgreSQL
// server, and returns its URL; it is dropped (WITH (FORCE)) at cleanup.
func newDatabase(t testing.TB) string {
	t.Helper()
	base := testenv.Postgres(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("test PostgreSQL URL %q: %v", base, err)
	}
	name := testenv.Name("sf")
	ident := pgx.Identifier{name}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to %s: %v", base, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("CREATE DATABASE %s: %v", ident, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("dropping database %s: %v", ident, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("DROP DATABASE %s: %v", ident, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// redisClient returns a client of the private redis-server r (see
// testenv.StartRedis), closed at cleanup.
func redisClient(t testing.TB, r *testenv.Server, password string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr, Password: password, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// subscription is a test's subscription to Redis channels.
type subscription struct {
	ps *goredis.PubSub
	ch <-chan *goredis.Message
}

// subscribe subscribes to channels and waits until Redis confirmed it:
// from then on nothing published on them is missed. It is closed at
// cleanup.
func subscribe(t testing.TB, c *goredis.Client, channels ...string) *subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps := c.Subscribe(ctx)
	if err := ps.Subscribe(ctx, channels...); err != nil {
		ps.Close()
		t.Fatalf("SUBSCRIBE %v: %v", channels, err)
	}
	for confirmed := 0; confirmed < len(channels); {
		msg, err := ps.Receive(ctx)
		if err != nil {
			ps.Close()
			t.Fatalf("waiting for the confirmation of SUBSCRIBE %v: %v", channels, err)
		}
		if _, ok := msg.(*goredis.Subscription); ok {
			confirmed++
		}
	}
	s := &subscription{ps: ps, ch: ps.Channel(goredis.WithChannelSize(10000))}
	t.Cleanup(func() { s.close() })
	return s
}

func (s *subscription) close() { s.ps.Close() }

// receive returns the next message, or false after timeout.
func (s *subscription) receive(timeout time.Duration) (*goredis.Message, bool) {
	select {
	case m, ok := <-s.ch:
		return m, ok
	case <-time.After(timeout):
		return nil, false
	}
}

// lineAllocated is a message of line_allocated.
type lineAllocated struct {
	OrderID       string `json:"orderid"`
	SKU           string `json:"sku"`
	Qty           int    `json:"qty"`
	BatchRef      string `json:"batchref"`
	MessageID     string `json:"message_id"`
	CorrelationID string `json:"correlation_id"`
	CausationID   string `json:"causation_id"`
	OccurredAt    string `json:"occurred_at"`
}

// allocations receives line_allocated messages until done returns true
// of the messages received so far, or timeout passes; it fails the test
// then, and on a message it cannot decode.
func (s *subscription) allocations(t testing.TB, timeout time.Duration, done func([]lineAllocated) bool) []lineAllocated {
	t.Helper()
	var got []lineAllocated
	deadline := time.Now().Add(timeout)
	for !done(got) {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("after %v, received %d line_allocated messages: %+v", timeout, len(got), got)
		}
		m, ok := s.receive(left)
		if !ok {
			if time.Until(deadline) > 50*time.Millisecond {
				t.Fatalf("the subscription was closed")
			}
			continue
		}
		if m.Channel != chanLineAllocated {
			continue
		}
		var la lineAllocated
		if err := json.Unmarshal([]byte(m.Payload), &la); err != nil {
			t.Fatalf("line_allocated message %s: %v", m.Payload, err)
		}
		got = append(got, la)
	}
	return got
}

// ordersSeen returns a done function for allocations: true once every
// order was seen.
func ordersSeen(orders ...string) func([]lineAllocated) bool {
	return func(got []lineAllocated) bool {
		seen := map[string]bool{}
		for _, m := range got {
			seen[m.OrderID] = true
		}
		for _, o := range orders {
			if !seen[o] {
				return false
			}
		}
		return true
	}
}

// waitSubscribed waits until at least one client (stockflow's consumer)
// is subscribed to channel.
func waitSubscribed(t testing.TB, c *goredis.Client, channel string, timeout time.Duration) {
	t.Helper()
	err := eventually(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := c.PubSubNumSub(ctx, channel).Result()
		if err != nil {
			return err
		}
		if n[channel] < 1 {
			return fmt.Errorf("no subscriber on %s", channel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for stockflow to subscribe to %s: %v", channel, err)
	}
}

// publish publishes payload on channel.
func publish(t testing.TB, c *goredis.Client, channel, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Publish(ctx, channel, payload).Err(); err != nil {
		t.Fatalf("PUBLISH %s %s: %v", channel, payload, err)
	}
}

// changeBatchQuantity is the body of the book's change_batch_quantity.
func changeBatchQuantity(ref string, qty int) string {
	b, _ := json.Marshal(map[string]any{"batchref": ref, "qty": qty})
	return string(b)
}

// startService starts "stockflow serve allocation" on PostgreSQL database
// db and, when brokerURL is not empty, the broker there.
//
// With a Redis broker the cleanup kills the process: it does not exit on
// SIGTERM (TestGracefulStopWithRedis).
func startService(t testing.TB, db, brokerURL string) *server {
	t.Helper()
	args := []string{"serve", "allocation", "--db", db}
	if brokerURL != "" {
		args = append(args, "--broker", brokerURL)
	}
	return startWith(t, options{Args: args})
}

// cliResult is what a one-shot command printed and its exit code.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

// runCLI runs stockflow with args and extra environment (STOCKFLOW_*
// variables of the test's own are removed), and waits at most 30s.
func runCLI(t testing.TB, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = environ(append([]string{"STOCKFLOW_DATA=" + t.TempDir()}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	default:
		t.Fatalf("stockflow %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("stockflow %s did not finish within 30s", strings.Join(args, " "))
	}
	return res
}

// metric returns the value of the sample of the Prometheus text exposition
// whose name and labels are series ("stockflow_outbox_depth{...}" or a
// bare name).
func metric(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// metrics gets GET /metrics, expecting 200.
func (s *server) metrics(t testing.TB) string {
	t.Helper()
	r := s.do(t, http.MethodGet, "/metrics", nil)
	expect(t, r, http.StatusOK)
	return string(r.Body)
}
