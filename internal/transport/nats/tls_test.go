package nats_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/nats"
)

// natsTLSConf is a nats-server configuration block: TLS with a
// certificate ca issued, client certificates required (verify), and auth.
func natsTLSConf(t *testing.T, ca *testenv.CA, auth string) string {
	cert, key := ca.Issue(t, "nats")
	return fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 2 }\nauthorization { %s }\n", cert, key, ca.File, auth)
}

// clientURL is scheme://[userinfo@]addr with the test's CA and a client
// certificate it issued.
func clientURL(t *testing.T, scheme, addr string, user *url.Userinfo, ca *testenv.CA) string {
	cert, key := ca.Issue(t, "stockflow")
	return (&url.URL{Scheme: scheme, User: user, Host: addr, RawQuery: url.Values{"ca": {ca.File}, "cert": {cert}, "key": {key}}.Encode()}).String()
}

// roundTrip publishes a message over js and receives it back.
func roundTrip(t *testing.T, js *nats.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	env := messaging.Envelope{ID: testenv.Name("m"), Channel: "tls_checked", Key: "k", Payload: []byte(`{"over":"tls"}`), OccurredAt: time.Now()}
	if err := js.Publish(ctx, env); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := make(chan messaging.Delivery, 1)
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- js.Subscribe(subCtx, "tls-test", []string{"tls_checked"}, func(_ context.Context, d messaging.Delivery) error {
			select {
			case got <- d:
			default:
			}
			return nil
		})
	}()
	defer func() { stop(); <-done }()
	select {
	case d := <-got:
		if d.ID != env.ID {
			t.Fatalf("got %s, want %s", d.ID, env.ID)
		}
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
}

func open(t *testing.T, rawURL string) (*nats.JetStream, error) {
	js, err := nats.New(rawURL, testenv.Logger(t, slog.LevelDebug), nats.WithStream("TLS_TEST", "tlstest"), nats.WithPollWait(time.Second))
	if err == nil {
		t.Cleanup(func() { js.Close() })
	}
	return js, err
}

// JetStream over TLS with a client certificate, as a user with a
// password, against a nats-server that takes nothing else; a wrong CA, a
// wrong password and no client certificate are refused, and say so.
func TestTLSWithUser(t *testing.T) {
	ca := testenv.NewCA(t, "nats-ca")
	s := testenv.StartNATSConfig(t, natsTLSConf(t, ca, `users: [ { user: app, password: "app-s3cret" } ]`))
	for _, scheme := range []string{"tls", "nats"} { // nats:// with ca= is TLS too
		t.Run(scheme, func(t *testing.T) {
			js, err := open(t, clientURL(t, scheme, s.Addr, url.UserPassword("app", "app-s3cret"), ca))
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, js)
		})
	}
	t.Run("wrong CA", func(t *testing.T) {
		other := testenv.NewCA(t, "another-ca")
		u, _ := url.Parse(clientURL(t, "tls", s.Addr, url.UserPassword("app", "app-s3cret"), ca))
		q := u.Query()
		q.Set("ca", other.File)
		u.RawQuery = q.Encode()
		_, err := open(t, u.String())
		if !errors.Is(err, secure.ErrCertificate) || !strings.Contains(err.Error(), "not signed by a CA stockflow trusts") {
			t.Errorf("a server certificate of another CA: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "app-s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		_, err := open(t, clientURL(t, "tls", s.Addr, url.UserPassword("app", "wrong"), ca))
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Errorf("a wrong password: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "wrong") && !strings.Contains(err.Error(), "Authorization") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		u := (&url.URL{Scheme: "tls", User: url.UserPassword("app", "app-s3cret"), Host: s.Addr, RawQuery: "ca=" + url.QueryEscape(ca.File)}).String()
		if _, err := open(t, u); err == nil {
			t.Error("a server that requires a client certificate took a client without one")
		}
	})
	t.Run("unknown parameter", func(t *testing.T) {
		_, err := nats.New("nats://"+s.Addr+"?cafile=x", nil)
		if err == nil || !strings.Contains(err.Error(), "cafile=") {
			t.Errorf("an unknown parameter: %v", err)
		}
	})
	t.Run("creds file missing", func(t *testing.T) {
		_, err := nats.New("tls://"+s.Addr+"?creds=/does/not/exist.creds", nil)
		if err == nil || !strings.Contains(err.Error(), "creds=") {
			t.Errorf("a missing creds file: %v", err)
		}
	})
}

// A token: in the URL's user (TOKEN@), or as its password with no user
// (:TOKEN@, as a password file gives it).
func TestTLSWithToken(t *testing.T) {
	ca := testenv.NewCA(t, "nats-ca")
	s := testenv.StartNATSConfig(t, natsTLSConf(t, ca, `token: "tok-s3cret"`))
	for name, user := range map[string]*url.Userinfo{"user": url.User("tok-s3cret"), "password": url.UserPassword("", "tok-s3cret")} {
		t.Run(name, func(t *testing.T) {
			js, err := open(t, clientURL(t, "tls", s.Addr, user, ca))
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, js)
		})
	}
	if _, err := open(t, clientURL(t, "tls", s.Addr, url.User("wrong"), ca)); err == nil {
		t.Error("a wrong token was taken")
	}
}
