package redis

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/messaging/transporttest"
	"github.com/stockflow/stockflow/internal/testenv"
)

// The contract suite runs twice per transport: on the test Redis
// (testenv.Redis), and on a private redis-server that BrokerRestart
// restarts (SIGKILL, then started again on its port, without persistence:
// it comes back empty).

// pubSubSkips are the contract cases Redis pub/sub skips: none.
var pubSubSkips = map[string]string{}

func TestPubSubContract(t *testing.T) {
	url := testenv.Redis(t)
	transporttest.Run(t, transporttest.Factory{
		New:  func(t *testing.T) messaging.Transport { return newTestPubSub(t, url) },
		Skip: pubSubSkips,
	})
}

func TestPubSubContractPrivateServer(t *testing.T) {
	s := startRedisServer(t)
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return newTestPubSub(t, s.URL()) },
		Restart: func(t *testing.T) { s.Restart(t) },
		Skip:    pubSubSkips,
	})
}

func TestStreamsContract(t *testing.T) {
	url := testenv.Redis(t)
	prefix := streamsPrefix(t, url)
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return newTestStreams(t, url, prefix) },
		Durable: true,
	})
}

func TestStreamsContractPrivateServer(t *testing.T) {
	s := startRedisServer(t)
	prefix := streamsPrefix(t, s.URL())
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return newTestStreams(t, s.URL(), prefix) },
		Durable: true,
		Restart: func(t *testing.T) { s.Restart(t) },
	})
}

func newTestPubSub(t *testing.T, url string) *PubSub {
	t.Helper()
	p, err := NewPubSub(url, captureLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// streamsPrefix returns a key prefix of the test's own; its keys are
// deleted at cleanup.
func streamsPrefix(t *testing.T, url string) string {
	prefix := testenv.Name("sftest")
	t.Cleanup(func() {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			c.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
	})
	return prefix
}

// newTestStreams returns a Streams transport under prefix, quick to stop
// and to retry; the caller closes it.
func newTestStreams(t *testing.T, url, prefix string) *Streams {
	t.Helper()
	s, err := NewStreams("redis+streams://"+strings.TrimPrefix(url, "redis://"), captureLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Prefix = prefix
	s.Block = 200 * time.Millisecond
	s.LeaseTTL = 3 * time.Second
	s.RetryBackoff = 20 * time.Millisecond
	return s
}

// captureLog collects a transport's logs, shown when the test fails.
func captureLog(t testing.TB) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("transport logs:\n%s", buf.String())
			mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(syncWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// redisServer is a private redis-server on a free port, without
// persistence, killed at cleanup.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   bytes.Buffer
}

// startRedisServer starts a private redis-server; without one installed
// the test is skipped (it fails when STOCKFLOW_REQUIRE_SERVICES=1).
func startRedisServer(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr == nil {
			bin = "/usr/bin/redis-server"
		} else if testenv.Required() {
			t.Fatal("redis-server is not installed and STOCKFLOW_REQUIRE_SERVICES=1")
		} else {
			t.Skip("skipping: redis-server is not installed")
		}
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("redis-server %s logs:\n%s", s.addr, s.logs.String())
			s.mu.Unlock()
		}
	})
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.addr = ln.Addr().String()
		ln.Close()
		err = s.start()
		if err == nil {
			return s
		}
		if attempt < 3 && strings.Contains(err.Error(), "in use") {
			continue
		}
		t.Fatalf("starting redis-server on %s: %v", s.addr, err)
	}
}

func (s *redisServer) URL() string { return "redis://" + s.addr }

// Client returns a plain client of the server, closed at cleanup.
func (s *redisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *redisServer) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	var out bytes.Buffer
	var outMu sync.Mutex
	cmd.Stdout, cmd.Stderr = syncWriter{&outMu, &out}, syncWriter{&outMu, &out}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		outMu.Lock()
		s.mu.Lock()
		s.logs.Write(out.Bytes())
		s.mu.Unlock()
		outMu.Unlock()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			outMu.Lock()
			defer outMu.Unlock()
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		err := pingServer(s.addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server not answering within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pingServer(addr string) error {
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
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill kills the server (SIGKILL), if it runs, and waits for it.
func (s *redisServer) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redis-server did not exit within 10s of SIGKILL")
	}
}

// Start starts the killed server again on its port.
func (s *redisServer) Start(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().Before(deadline) && strings.Contains(err.Error(), "in use") {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Fatalf("restarting redis-server on %s: %v", s.addr, err)
	}
}

// Restart kills the server and starts it again, empty.
func (s *redisServer) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.Start(t)
}
