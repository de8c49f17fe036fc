package secure_test

import (
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/testenv"
)

func TestURLHidesSecrets(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/shop?sslmode=verify-full", "postgres://app:xxxxx@db:5432/shop?sslmode=verify-full"},
		{"postgres://app@db/shop?password=s3cret&sslmode=require", "postgres://app@db/shop?password=xxxxx&sslmode=require"},
		{"rediss://:s3cret@cache:6380?ca=/etc/ca.pem", "rediss://:xxxxx@cache:6380?ca=/etc/ca.pem"},
		{"nats://s3cret@nats:4222", "nats://xxxxx@nats:4222"},
		{"tls://s3cret@nats:4222", "tls://xxxxx@nats:4222"},
		{"kafka+tls://app:s3cret@k1:9093,k2:9093?sasl=scram-sha-512", "kafka+tls://app:xxxxx@k1:9093,k2:9093?sasl=scram-sha-512"},
		{"redis://cache:6379", "redis://cache:6379"},
		{"", ""},
	} {
		got := secure.URL(c.in)
		if got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("URL(%q) shows the secret: %q", c.in, got)
		}
	}
	if got := secure.URL("postgres://app:s3cret@db:5432:x/%zz"); strings.Contains(got, "s3cret") {
		t.Errorf("an unparsable URL is printed with its secret: %q", got)
	}
}

func TestWithPassword(t *testing.T) {
	got, err := secure.WithPassword("postgres://app@db/shop?sslmode=verify-full", "p@ss:w/rd")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	if pw, _ := u.User.Password(); pw != "p@ss:w/rd" || u.User.Username() != "app" || u.Query().Get("sslmode") != "verify-full" {
		t.Errorf("WithPassword = %q", got)
	}
	if _, err := secure.WithPassword("postgres://app:other@db/shop", "pw"); err == nil {
		t.Error("a URL with a password of its own and a password file: no error")
	}
}

func TestTLSFiles(t *testing.T) {
	q := url.Values{"ca": {"/a"}, "cert": {"/b"}, "key": {"/c"}, "db": {"2"}}
	f := secure.TakeTLSFiles(q)
	if f != (secure.TLSFiles{CA: "/a", Cert: "/b", Key: "/c"}) || len(q) != 1 {
		t.Errorf("TakeTLSFiles: %+v, left %v", f, q)
	}
	if _, err := (secure.TLSFiles{Cert: "/b"}).Config("h"); err == nil {
		t.Error("cert= without key=: no error")
	}
	if _, err := (secure.TLSFiles{CA: "/does/not/exist"}).Config("h"); err == nil || !strings.Contains(err.Error(), "ca=") {
		t.Errorf("a missing CA file: %v", err)
	}
}

// A server whose certificate another CA signed is refused with a message
// that says so and what to do; the error is marked ErrCertificate.
func TestExplainWrongCA(t *testing.T) {
	serverCA, otherCA := testenv.NewCA(t, "server-ca"), testenv.NewCA(t, "other-ca")
	certFile, keyFile := serverCA.Issue(t, "server")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(f secure.TLSFiles, host string) error {
		cfg, err := f.Config(host)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			c.Close()
		}
		return secure.Explain(err)
	}
	if err := dial(secure.TLSFiles{CA: serverCA.File}, "127.0.0.1"); err != nil {
		t.Fatalf("the right CA: %v", err)
	}
	err = dial(secure.TLSFiles{CA: otherCA.File}, "127.0.0.1")
	if !errors.Is(err, secure.ErrCertificate) || !strings.Contains(err.Error(), "not signed by a CA stockflow trusts") {
		t.Errorf("the wrong CA: %v", err)
	}
	err = dial(secure.TLSFiles{CA: serverCA.File}, "db.example")
	if !errors.Is(err, secure.ErrCertificate) || !strings.Contains(err.Error(), "not made for the host") {
		t.Errorf("another host: %v", err)
	}
	if err := secure.Explain(&net.OpError{Op: "dial", Err: errors.New("connection refused")}); errors.Is(err, secure.ErrCertificate) {
		t.Errorf("a refused connection taken for a certificate: %v", err)
	}
}
