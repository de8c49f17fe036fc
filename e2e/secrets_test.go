package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

// writeSecret writes a secret file of the test's own.
func writeSecret(t *testing.T, name, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Every link encrypted and authenticated, every secret from a file, and
// none of them in anything stockflow shows: PostgreSQL over SSL
// (verify-full, its password from --db-password-file), Redis Streams and
// NATS over TLS with a client certificate (an ACL user whose password
// comes from STOCKFLOW_BROKER_PASSWORD_FILE; a NATS URL with its password
// from STOCKFLOW_BROKER_FILE), API keys. The logs (at debug), the
// answers of /readyz and /metrics, stockflow status, --help, and the
// errors of a wrong password and of a server of another CA are searched
// for every secret.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, "stockflow-test-ca")
	pg := testenv.StartPostgresTLS(t, ca)
	const redisPassword, natsPassword = "redis-Secret-4f1c9a", "nats-Secret-0b7e2d"
	rds := testenv.StartRedisTLS(t, ca, "--user", "stockflow", "on", ">"+redisPassword, "~*", "&*", "+@all", "--user", "default", "off")
	natsCert, natsKey := ca.Issue(t, "nats")
	nts := testenv.StartNATSConfig(t, fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\nauthorization { users: [ { user: stockflow, password: %q } ] }",
		natsCert, natsKey, ca.File, natsPassword))
	clientCert, clientKey := ca.Issue(t, "stockflow-client")
	tlsQuery := url.Values{"ca": {ca.File}, "cert": {clientCert}, "key": {clientKey}}.Encode()

	keys := filepath.Join(t.TempDir(), "keys")
	apiKey := addKey(t, keys, "ops", "shop,stock,ops,read")
	secrets := map[string]string{"PostgreSQL password": pg.Password, "Redis password": redisPassword, "NATS password": natsPassword, "API key": apiKey}
	var seen strings.Builder // everything stockflow showed
	show := func(what, text string) { fmt.Fprintf(&seen, "--- %s\n%s\n", what, text) }

	dbURL := strings.Replace(pg.URL, "postgres://postgres@", "postgres://postgres@", 1) // no password: it comes from a file
	dbPasswordFile := writeSecret(t, "db-password", pg.Password)
	redisURL := "rediss+streams://stockflow@" + rds.Addr + "?" + tlsQuery
	natsURL := (&url.URL{Scheme: "tls", User: url.UserPassword("stockflow", natsPassword), Host: nts.Addr, RawQuery: tlsQuery}).String()

	t.Run("Redis Streams", func(t *testing.T) {
		s := startWith(t, options{
			Args: []string{"up", "--db", dbURL, "--db-password-file", dbPasswordFile, "--broker", redisURL, "--auth-keys", keys, "--log-level", "debug"},
			Env:  []string{"STOCKFLOW_BROKER_PASSWORD_FILE=" + writeSecret(t, "broker-password", redisPassword)},
		})
		sku, order := uniq("LAMP"), uniq("order")
		expect(t, s.call(t, apiKey, "POST", "/add_batch", map[string]any{"ref": uniq("b"), "sku": sku, "qty": 5, "eta": nil}), 201)
		expect(t, s.call(t, apiKey, "POST", "/allocate", lineBody(order, sku, 1)), 201)
		expect(t, s.call(t, apiKey, "POST", "/allocate", lineBody(order, "NOBODY-STOCKS-IT", 1)), 400)
		if err := eventually(10*time.Second, func() error {
			r := s.call(t, apiKey, "GET", "/allocations/"+order, nil)
			if r.Status != 200 {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatalf("the read model over the TLS broker: %v", err)
		}
		ready := s.call(t, apiKey, "GET", "/readyz", nil)
		expect(t, ready, 200)
		show("/readyz", string(ready.Body))
		show("/metrics", string(s.call(t, apiKey, "GET", "/metrics", nil).Body))
		st := runCLI(t, []string{"STOCKFLOW_KEY_FILE=" + writeSecret(t, "key", apiKey)}, "status", "--url", s.Base)
		if st.Code != 0 {
			t.Errorf("stockflow status with STOCKFLOW_KEY_FILE: %s", st.Stderr+st.Stdout)
		}
		show("status", st.Stdout+st.Stderr)
		s.stop()
		logs := s.logs.String()
		show("logs, Redis", logs)
		if !strings.Contains(logs, `store="postgres://postgres:xxxxx@127.0.0.1`) || !strings.Contains(logs, `broker="rediss+streams://stockflow:xxxxx@`) {
			t.Errorf("the startup line does not name the store and the broker, redacted:\n%s", logs)
		}
	})

	t.Run("NATS", func(t *testing.T) {
		s := startWith(t, options{
			Args: []string{"serve", "allocation", "--auth-keys", keys, "--log-level", "debug"},
			Env: []string{"STOCKFLOW_DB=" + dbURL, "STOCKFLOW_DB_PASSWORD_FILE=" + dbPasswordFile,
				"STOCKFLOW_BROKER_FILE=" + writeSecret(t, "broker-url", natsURL)},
		})
		expect(t, s.call(t, apiKey, "POST", "/add_batch", map[string]any{"ref": uniq("b"), "sku": uniq("LAMP"), "qty": 5, "eta": nil}), 201)
		show("/readyz", string(s.call(t, apiKey, "GET", "/readyz", nil).Body))
		s.stop()
		show("logs, NATS", s.logs.String())
	})

	t.Run("migrate", func(t *testing.T) {
		res := runCLI(t, []string{"STOCKFLOW_DB=" + dbURL, "STOCKFLOW_DB_PASSWORD_FILE=" + dbPasswordFile}, "migrate")
		if res.Code != 0 {
			t.Errorf("migrate over SSL with the password from a file: %s", res.Stderr)
		}
		show("migrate", res.Stdout+res.Stderr)
	})

	t.Run("refused", func(t *testing.T) {
		env := []string{"STOCKFLOW_DB=" + dbURL, "STOCKFLOW_CONNECT_TIMEOUT=2s"}
		redisPasswordFile := writeSecret(t, "broker-password", redisPassword)
		// A wrong database password (itself a secret).
		wrong := "wrong-Secret-93ad1e"
		secrets["the wrong password"] = wrong
		res := runCLI(t, append(env, "STOCKFLOW_DB_PASSWORD_FILE="+writeSecret(t, "wrong", wrong), "STOCKFLOW_BROKER="+natsURL), "up", "--http", testenv.FreeAddr(t))
		if res.Code == 0 || !strings.Contains(res.Stderr, "password authentication failed") {
			t.Errorf("a wrong database password: exit %d, %s", res.Code, res.Stderr)
		}
		show("a wrong database password", res.Stdout+res.Stderr)
		// A Redis and a NATS whose certificates another CA signed.
		other := testenv.NewCA(t, "another-ca")
		for broker, extra := range map[string]string{redisURL: "STOCKFLOW_BROKER_PASSWORD_FILE=" + redisPasswordFile, natsURL: "STOCKFLOW_REPLAY=false"} {
			u, _ := url.Parse(broker)
			q := u.Query()
			q.Set("ca", other.File)
			u.RawQuery = q.Encode()
			start := time.Now()
			res := runCLI(t, append(env, "STOCKFLOW_DB_PASSWORD_FILE="+dbPasswordFile, "STOCKFLOW_BROKER="+u.String(), extra), "up", "--http", testenv.FreeAddr(t))
			if res.Code == 0 || !strings.Contains(res.Stderr, "the server's certificate was refused: it is not signed by a CA stockflow trusts") {
				t.Errorf("%s with another CA: exit %d, %s", u.Scheme, res.Code, res.Stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s with another CA: refused after %v, not at once", u.Scheme, d)
			}
			show("another CA", res.Stdout+res.Stderr)
		}
	})

	t.Run("help", func(t *testing.T) {
		env := []string{"STOCKFLOW_DB=" + dbURL, "STOCKFLOW_DB_PASSWORD_FILE=" + dbPasswordFile, "STOCKFLOW_BROKER_FILE=" + writeSecret(t, "broker-url", natsURL), "STOCKFLOW_KEY=" + apiKey}
		for _, args := range [][]string{{"up", "--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"status", "--help"}, {"help"}} {
			res := runCLI(t, env, args...)
			show(strings.Join(args, " "), res.Stdout+res.Stderr)
		}
	})

	if t.Failed() {
		return
	}
	all := seen.String()
	for what, secret := range secrets {
		if i := strings.Index(all, secret); i >= 0 {
			t.Errorf("the %s shows: ...%s...", what, all[max(0, i-300):min(len(all), i+len(secret)+100)])
		}
	}
}
