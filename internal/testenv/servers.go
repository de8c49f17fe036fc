package testenv

// Private servers: a redis-server or a nats-server of a test's own, on a
// free loopback port and in a temporary directory, that the test may kill,
// stop and restart at will, which it cannot do to the shared servers of
// Redis and NATS.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns 127.0.0.1:port, with a port that was free a moment
// ago (FreePort).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// Server is a private server process: a redis-server (StartRedis) or a
// nats-server (StartNATS) of one test's own. It is killed at the test's
// cleanup, and its output is logged then if the test failed.
type Server struct {
	Name string // the binary's name: "redis-server" or "nats-server"
	Addr string // 127.0.0.1:port
	Port int
	URL  string // redis://127.0.0.1:port or nats://127.0.0.1:port
	Dir  string // working directory (Redis) or JetStream store (NATS), kept across restarts

	t     testing.TB
	bin   string
	args  func(s *Server) []string
	ready func(s *Server) error
	// attr and workDir, when set, are the process's attributes (the user
	// it runs as) and working directory.
	attr    *syscall.SysProcAttr
	workDir string
	logs    LogBuffer // the output of every run

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
}

// StartRedis starts a private redis-server without persistence:
//
//	redis-server --port N --bind 127.0.0.1 --save "" --appendonly no --dir DIR
//
// and waits until it answers PING. Without redis-server installed the
// test is skipped, or fails when Required.
func StartRedis(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		Name: "redis-server",
		args: func(s *Server) []string {
			return []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.Dir}
		},
		ready: func(s *Server) error { return pingRedis(s.Addr) },
	}
	return start(t, s, "redis")
}

// StartNATS starts a private nats-server with JetStream:
//
//	nats-server -a 127.0.0.1 -p N -js -sd DIR
//
// and waits until JetStream answers. Without nats-server installed the
// test is skipped, or fails when Required.
func StartNATS(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		Name: "nats-server",
		args: func(s *Server) []string {
			return []string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-js", "-sd", s.Dir}
		},
		ready: func(s *Server) error { return natsReady(s.URL) },
	}
	return start(t, s, "nats")
}

// Installed reports whether the server binary name ("redis-server",
// "nats-server") is installed, in PATH or in /usr/bin or /usr/sbin.
func Installed(name string) bool { return lookBinary(name) != "" }

func lookBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// errExited is the error of a launch whose process exited before it was
// ready, typically because its port was taken meanwhile.
var errExited = errors.New("exited")

// start finds s's binary, and starts it on a free port (a few, if the
// first ones are taken meanwhile).
func start(t testing.TB, s *Server, scheme string) *Server {
	t.Helper()
	return startWith(t, s, func(s *Server) string { return scheme + "://" + s.Addr })
}

// startWith is start with the server's URL made by urlOf, and the binary
// s.bin when it is set already.
func startWith(t testing.TB, s *Server, urlOf func(*Server) string) *Server {
	t.Helper()
	s.t = t
	if s.bin == "" {
		s.bin = lookBinary(s.Name)
	}
	if s.bin == "" {
		if Required() {
			t.Fatalf("%s is not installed and STOCKFLOW_REQUIRE_SERVICES=1", s.Name)
		}
		t.Skipf("skipping: %s is not installed, cannot start a server of the test's own", s.Name)
	}
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("%s %s logs:\n%s", s.Name, s.Addr, s.Logs())
		}
	})
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		s.URL = urlOf(s)
		err := s.launch(nil)
		if err == nil {
			return s
		}
		if attempt < 3 && errors.Is(err, errExited) {
			continue
		}
		t.Fatalf("starting %s on %s: %v", s.Name, s.Addr, err)
	}
}

// launch runs the server with its arguments and extra ones, and waits at
// most 10s until it is ready.
func (s *Server) launch(extra []string) error {
	cmd := exec.Command(s.bin, append(s.args(s), extra...)...)
	cmd.SysProcAttr, cmd.Dir = s.attr, s.workDir
	run := &LogBuffer{}
	w := io.MultiWriter(run, &s.logs)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s %w: %s", s.Name, errExited, strings.TrimSpace(run.String()))
		default:
		}
		err := s.ready(s)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("%s not ready within 10s: %v", s.Name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill kills the server (SIGKILL), if it runs, and waits until it exited.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop stops the server (SIGTERM), if it runs, and waits until it exited;
// if it has not within 10s, the test fails and the server is killed.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *Server) signal(sig syscall.Signal) {
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
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("%s did not exit within 10s of %v", s.Name, sig)
		if sig != syscall.SIGKILL {
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
	}
}

// Restart kills the server if it still runs, and starts it again on the
// same port and directory (a Redis without persistence comes back empty),
// waiting until it is ready; it waits up to 10s for the port to be free
// again. Extra arguments are added to this run's command line only, e.g.
// "--requirepass", password for a Redis. On failure it fails t, the test
// calling it (which may be a subtest of the one that started the server).
func (s *Server) Restart(t testing.TB, extra ...string) {
	t.Helper()
	s.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.launch(extra)
		if err == nil {
			return
		}
		if errors.Is(err, errExited) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Fatalf("restarting %s on %s: %v", s.Name, s.Addr, err)
	}
}

// Logs returns the server's output so far, of every run.
func (s *Server) Logs() string { return s.logs.String() }

// pingRedis sends PING and accepts +PONG, or -NOAUTH from a server that
// wants a password.
func pingRedis(addr string) error {
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

// natsReady checks that the server answers, with JetStream enabled and
// serving its API.
func natsReady(url string) error {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") || !strings.Contains(line, `"jetstream":true`) {
		return fmt.Errorf("server said %q", line)
	}
	nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// LogBuffer collects a process's output: it may be written (by exec's
// copying goroutine) while the test reads it. The zero value is empty and
// ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a logger, at level, whose lines are shown when t fails.
// What is logged after t's cleanup (by goroutines that outlive it) is
// dropped.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &testLogWriter{}
	t.Cleanup(func() {
		w.done.Store(true)
		if t.Failed() {
			t.Logf("logs:\n%s", w.buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testLogWriter struct {
	buf  LogBuffer
	done atomic.Bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.buf.Write(p)
	}
	return len(p), nil
}
