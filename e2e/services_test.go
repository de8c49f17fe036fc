package e2e

// Helpers of the production tests: a PostgreSQL database and a private
// redis-server per test, a Redis subscriber, the CLI's one-shot commands.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// redisServer is a private redis-server, on a port of its own.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string // 127.0.0.1:port
	Port string
	URL  string // redis://127.0.0.1:port

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *logBuffer
	all    *logBuffer // the logs of every run, printed when the test fails
}

// redisBinary finds redis-server; the test is skipped without it (fails
// when testenv.Required).
func redisBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	if testenv.Required() {
		t.Fatal("redis-server is not installed and STOCKFLOW_REQUIRE_SERVICES=1")
	}
	t.Skip("skipping: redis-server is not installed")
	return ""
}

// startRedis starts a private redis-server, without persistence, killed
// at cleanup.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	bin := redisBinary(t)
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), all: &logBuffer{}}
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			t.Logf("redis-server %s logs:\n%s", r.Addr, r.all.String())
		}
	})
	for attempt := 1; ; attempt++ {
		r.Addr = freeAddr(t)
		_, r.Port, _ = net.SplitHostPort(r.Addr)
		r.URL = "redis://" + r.Addr
		err := r.launch()
		if err == nil {
			return r
		}
		if attempt < 3 && strings.Contains(r.logs.String(), "in use") {
			continue
		}
		t.Fatalf("starting redis-server on %s: %v", r.Addr, err)
	}
}

// launch runs redis-server on r's port with extra arguments, and waits
// until it answers.
func (r *redisServer) launch(extra ...string) error {
	args := []string{"--port", r.Port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir}
	args = append(args, extra...)
	cmd := exec.Command(r.bin, args...)
	logs := &logBuffer{}
	cmd.Stdout = multiWriter{logs, r.all}
	cmd.Stderr = multiWriter{logs, r.all}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.mu.Lock()
	r.cmd, r.exited, r.logs = cmd, exited, logs
	r.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", strings.TrimSpace(logs.String()))
		default:
		}
		if err := pingRaw(r.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("redis-server not answering within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pingRaw sends PING and accepts any answer: +PONG, or -NOAUTH from a
// server that wants a password.
func pingRaw(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// kill kills the server with SIGKILL, if it runs, and waits for it.
func (r *redisServer) kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		r.t.Errorf("redis-server did not exit within 10s of SIGKILL")
	}
}

// restart starts the server again on the same port, with extra arguments.
func (r *redisServer) restart(extra ...string) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.launch(extra...)
		if err == nil {
			return
		}
		// The port may take a moment to be free again.
		if time.Now().Before(deadline) && strings.Contains(err.Error(), "in use") {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		r.t.Fatalf("restarting redis-server on %s: %v", r.Addr, err)
	}
}

// client returns a client of the server, closed at cleanup.
func (r *redisServer) client(t testing.TB, password string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr, Password: password, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

type multiWriter []*logBuffer

func (w multiWriter) Write(p []byte) (int, error) {
	for _, b := range w {
		b.Write(p)
	}
	return len(p), nil
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
