package testenv_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

func TestFreePort(t *testing.T) {
	port := testenv.FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort = %d", port)
	}
	addr := testenv.FreeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on FreeAddr %s: %v", addr, err)
	}
	ln.Close()
}

// redisCommand sends one inline command and returns the first line of
// the answer.
func redisCommand(t *testing.T, addr, command string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(command + "\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	return strings.TrimSpace(line)
}

func TestStartRedis(t *testing.T) {
	s := testenv.StartRedis(t)
	if s.URL != "redis://"+s.Addr || !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Fatalf("Addr %q, URL %q", s.Addr, s.URL)
	}
	if got := redisCommand(t, s.Addr, "SET k v"); got != "+OK" {
		t.Fatalf("SET answered %q", got)
	}

	s.Kill()
	if conn, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("the killed server still accepts connections")
	}

	// Back on the same port, empty, and with a password for this run.
	s.Restart(t, "--requirepass", "secret")
	if got := redisCommand(t, s.Addr, "GET k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("GET without the password answered %q", got)
	}

	// Restart kills a running server first; the password was for one run.
	s.Restart(t)
	if got := redisCommand(t, s.Addr, "GET k"); got != "$-1" {
		t.Errorf("GET after the restart answered %q, want $-1", got)
	}

	s.Stop()
	if !strings.Contains(s.Logs(), "Ready to accept connections") {
		t.Errorf("logs lack the server's start:\n%s", s.Logs())
	}
}

func TestStartNATS(t *testing.T) {
	s := testenv.StartNATS(t)
	if s.URL != "nats://"+s.Addr || s.Dir == "" {
		t.Fatalf("Addr %q, URL %q, Dir %q", s.Addr, s.URL, s.Dir)
	}
	s.Stop()
	s.Restart(t)
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		t.Fatalf("the restarted server: %v", err)
	}
	conn.Close()
	s.Kill()
	if !strings.Contains(s.Logs(), "Server is ready") {
		t.Errorf("logs lack the server's start:\n%s", s.Logs())
	}
}
