package kafka_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/kafka"
)

// serverTLS is a listener's configuration with a certificate ca issued.
func serverTLS(t *testing.T, ca *testenv.CA) *tls.Config {
	cert, key := ca.Issue(t, "kafka")
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
}

// openURL returns a transport on a Kafka URL, closed at cleanup.
func openURL(t *testing.T, rawURL string) *kafka.Kafka {
	t.Helper()
	k, err := kafka.Open(rawURL, testenv.Logger(t, -4), kafka.RetryBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// roundTrip publishes a message over k and receives it back.
func roundTrip(t *testing.T, k *kafka.Kafka) {
	t.Helper()
	col := newCollector()
	subscribe(t, k, "tls-test", []string{"tls_checked"}, col.handle)
	env := envelope("tls_checked", "k", 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := k.Publish(ctx, env); err != nil {
		t.Fatalf("publish: %v", err)
	}
	col.waitIDs(t, []string{env.ID})
}

// Every SASL mechanism, over TLS and over plain TCP, against kfake
// brokers that require it; a wrong password is refused.
func TestSASLAndTLS(t *testing.T) {
	ca := testenv.NewCA(t, "kafka-ca")
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		for _, overTLS := range []bool{true, false} {
			scheme := map[bool]string{true: "kafka+tls", false: "kafka"}[overTLS]
			t.Run(scheme+"/"+mech, func(t *testing.T) {
				opts := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, "app", "app-s3cret"), kfake.AllowAutoTopicCreation()}
				if overTLS {
					opts = append(opts, kfake.TLS(serverTLS(t, ca)))
				}
				c := newCluster(t, opts...)
				q := url.Values{"sasl": {strings.ToLower(mech)}}
				if overTLS {
					q.Set("ca", ca.File)
				}
				u := func(password string) string {
					return fmt.Sprintf("%s://app:%s@%s?%s", scheme, password, strings.Join(c.ListenAddrs(), ","), q.Encode())
				}
				roundTrip(t, openURL(t, u("app-s3cret")))

				k := openURL(t, u("wrong"))
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				// kfake hangs up on a failed authentication (EOF) rather
				// than answer SASL_AUTHENTICATION_FAILED as Kafka does.
				if err := k.Ping(ctx); err == nil {
					t.Error("a wrong password was taken")
				}
			})
		}
	}
}

// TLS without SASL; a client of another CA does not get through.
func TestTLSOnly(t *testing.T) {
	ca := testenv.NewCA(t, "kafka-ca")
	c := newCluster(t, kfake.TLS(serverTLS(t, ca)), kfake.AllowAutoTopicCreation())
	roundTrip(t, openURL(t, "kafka+tls://"+c.ListenAddrs()[0]+"?ca="+url.QueryEscape(ca.File)))

	other := testenv.NewCA(t, "another-ca")
	k := openURL(t, "kafka+tls://"+c.ListenAddrs()[0]+"?ca="+url.QueryEscape(other.File))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := k.Ping(ctx); !errors.Is(err, secure.ErrCertificate) || !strings.Contains(err.Error(), "not signed by a CA stockflow trusts") {
		t.Errorf("a broker of another CA: %v", err)
	}
}
