package testenv

// Private servers that speak TLS, with certificates a test's CA signed:
// a redis-server on its TLS port alone, a nats-server from a
// configuration file.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedisTLS starts a private redis-server that listens on TLS alone
// (its plain port off), with a certificate ca issued, and takes client
// certificates ca signed (required unless extra says --tls-auth-clients
// no). Extra arguments are added to its command line: an ACL user, say
//
//	"--user", "app", "on", ">password", "~*", "&*", "+@all", "--user", "default", "off"
//
// URL is rediss://127.0.0.1:port.
func StartRedisTLS(t testing.TB, ca *CA, extra ...string) *Server {
	t.Helper()
	certFile, keyFile := ca.Issue(t, "redis")
	clientCert, clientKey := ca.Issue(t, "redis-test-client")
	s := &Server{
		Name: "redis-server",
		args: func(s *Server) []string {
			return append([]string{"--port", "0", "--tls-port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
				"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", ca.File,
				"--save", "", "--appendonly", "no", "--dir", s.Dir}, extra...)
		},
		ready: func(s *Server) error {
			cert, err := tls.LoadX509KeyPair(clientCert, clientKey)
			if err != nil {
				return err
			}
			return pingRedisTLS(s.Addr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
		},
	}
	return start(t, s, "rediss")
}

// pingRedisTLS is pingRedis over TLS.
func pingRedisTLS(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
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

// StartNATSConfig starts a private nats-server with JetStream from a
// configuration file: conf is the file's text less what testenv adds
// (listen, jetstream's store_dir), for instance a tls block with
// certificates ca issued and an authorization block. It waits until the
// server says, in its INFO line, that JetStream is on. URL is
// nats://127.0.0.1:port.
func StartNATSConfig(t testing.TB, conf string) *Server {
	t.Helper()
	s := &Server{
		Name: "nats-server",
		args: func(s *Server) []string {
			file := filepath.Join(s.Dir, "nats.conf")
			text := fmt.Sprintf("listen: %q\njetstream { store_dir: %q }\n%s\n", s.Addr, filepath.Join(s.Dir, "js"), conf)
			if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
				t.Errorf("writing %s: %v", file, err)
			}
			return []string{"-c", file}
		},
		ready: func(s *Server) error {
			conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, "INFO ") || !strings.Contains(line, `"jetstream":true`) {
				return fmt.Errorf("server said %q", line)
			}
			return nil
		},
	}
	return start(t, s, "nats")
}
