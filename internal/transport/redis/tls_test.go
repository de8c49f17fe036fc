package redis_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/redis"
)

// tlsURL is rediss://user:password@addr with the test's CA and a client
// certificate it issued.
func tlsURL(t *testing.T, scheme string, s *testenv.Server, ca *testenv.CA, user, password string) string {
	cert, key := ca.Issue(t, "stockflow")
	q := url.Values{"ca": {ca.File}, "cert": {cert}, "key": {key}}
	u := url.URL{Scheme: scheme, User: url.UserPassword(user, password), Host: s.Addr, RawQuery: q.Encode()}
	return u.String()
}

// Both Redis transports work over TLS, as an ACL user, with a client
// certificate, against a redis-server that takes nothing else.
func TestTLSAndACLUser(t *testing.T) {
	ca := testenv.NewCA(t, "redis-ca")
	s := testenv.StartRedisTLS(t, ca,
		"--user", "app", "on", ">app-s3cret", "~*", "&*", "+@all",
		"--user", "default", "off")
	log := testenv.Logger(t, slog.LevelDebug)
	for _, scheme := range []string{"rediss", "rediss+streams"} {
		t.Run(scheme, func(t *testing.T) {
			tr, err := openRedis(scheme, tlsURL(t, scheme, s, ca, "app", "app-s3cret"), log)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := tr.(messaging.Pinger).Ping(ctx); err != nil {
				t.Fatalf("ping over TLS as app: %v", err)
			}
			got := make(chan messaging.Delivery, 10)
			subCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- tr.Subscribe(subCtx, "tls-test", []string{"tls_checked"}, func(_ context.Context, d messaging.Delivery) error {
					got <- d
					return nil
				})
			}()
			defer func() { stop(); <-done }()
			env := messaging.Envelope{ID: "m-" + scheme, Channel: "tls_checked", Key: "k", Payload: []byte(`{"over":"tls"}`), OccurredAt: time.Now()}
			// Pub/sub keeps nothing for a subscriber not yet there: publish
			// until it arrives.
			for {
				if err := tr.Publish(ctx, env); err != nil {
					t.Fatalf("publish over TLS: %v", err)
				}
				select {
				case d := <-got:
					if d.ID != env.ID {
						t.Fatalf("got %+v, want %s", d.Envelope, env.ID)
					}
					return
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done():
					t.Fatal("nothing delivered over TLS")
				}
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		err := pingOnce(t, tlsURL(t, "rediss", s, ca, "app", "wrong"))
		if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("a wrong password: %v", err)
		}
	})
	t.Run("wrong CA", func(t *testing.T) {
		other := testenv.NewCA(t, "another-ca")
		u, _ := url.Parse(tlsURL(t, "rediss", s, ca, "app", "app-s3cret"))
		q := u.Query()
		q.Set("ca", other.File)
		u.RawQuery = q.Encode()
		err := pingOnce(t, u.String())
		if !errors.Is(err, secure.ErrCertificate) || !strings.Contains(err.Error(), "not signed by a CA stockflow trusts") {
			t.Errorf("a server certificate of another CA: %v", err)
		}
		if strings.Contains(err.Error(), "app-s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		u := url.URL{Scheme: "rediss", User: url.UserPassword("app", "app-s3cret"), Host: s.Addr, RawQuery: url.Values{"ca": {ca.File}}.Encode()}
		if err := pingOnce(t, u.String()); err == nil {
			t.Error("a server that requires a client certificate answered without one")
		}
	})
	t.Run("TLS files on a plain URL", func(t *testing.T) {
		_, err := redis.NewPubSub("redis://"+s.Addr+"?ca="+url.QueryEscape(ca.File), log)
		if err == nil || !strings.Contains(err.Error(), "rediss://") {
			t.Errorf("ca= with redis://: %v", err)
		}
	})
}

func openRedis(scheme, url string, log *slog.Logger) (messaging.Transport, error) {
	if strings.HasSuffix(scheme, "+streams") {
		return redis.NewStreams(url, log)
	}
	return redis.NewPubSub(url, log)
}

func pingOnce(t *testing.T, url string) error {
	t.Helper()
	p, err := redis.NewPubSub(url, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Ping(ctx)
}
