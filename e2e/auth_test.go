package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

// addKey runs "stockflow keys add" and returns the key it printed.
func addKey(t *testing.T, file, name, roles string) string {
	t.Helper()
	res := opRun(t, nil, "keys", "add", name, "--roles", roles, "--file", file)
	key := strings.TrimSpace(res.Stdout)
	if res.Code != 0 || !strings.HasPrefix(key, "sfk_") || strings.Contains(res.Stderr, key) {
		t.Fatalf("stockflow keys add %s:\n%s", name, res)
	}
	return key
}

// call makes a request with key (none when empty).
func (s *server) call(t *testing.T, key, method, path string, body any) *response {
	t.Helper()
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	r, err := s.request(context.Background(), method, path, body, h)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// Each role against each route group of the real services: 401 without a
// key or with an unknown one, 403 without the role, 2xx with it; a key
// revoked is refused after a SIGHUP, a key added accepted; no key ever
// shows in the logs or in a command's output but the one printing it.
func TestAuthRoles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	keys := map[string]string{}
	for _, role := range []string{"shop", "stock", "ops", "read"} {
		keys[role] = addKey(t, file, role+"-key", role)
	}
	srv := startWith(t, options{Args: []string{"up", "--data", dir, "--auth-keys", file, "--metrics-auth"}, Dir: dir})
	expect(t, srv.call(t, keys["stock"], "POST", "/add_batch", map[string]any{"ref": "seed", "sku": "LAMP", "qty": 100, "eta": nil}), 201)
	order := srv.call(t, keys["shop"], "POST", "/orders", map[string]any{"customer": "ann", "email": "ann@example.com"})
	expect(t, order, 201)
	orderPath := order.Header.Get("Location")
	if err := eventually(10*time.Second, func() error {
		if r := srv.call(t, keys["stock"], "GET", "/warehouse/batches/seed", nil); r.Status != 200 {
			return fmt.Errorf("the warehouse does not know the batch yet: %s", r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// One route of each group, with a body it accepts.
	n := 0
	routes := []struct {
		group, method, path string
		body                func() any
	}{
		{"shop", "POST", "/orders", func() any { return map[string]any{"customer": "bob", "email": "bob@example.com"} }},
		{"shop", "GET", orderPath, nil},
		{"stock", "POST", "/add_batch", func() any {
			n++
			return map[string]any{"ref": fmt.Sprintf("b-%d", n), "sku": "LAMP", "qty": 1, "eta": nil}
		}},
		{"stock", "GET", "/batches/seed", nil},
		{"stock", "POST", "/warehouse/batches/seed/count", func() any { return map[string]any{"qty": 100} }},
		{"read", "GET", "/customers", nil},
		{"read", "GET", "/notifications", nil},
		{"ops", "GET", "/metrics", nil},
		{"open", "GET", "/healthz", nil},
		{"open", "GET", "/readyz", nil},
		{"open", "GET", "/openapi.json", nil},
	}
	// allowed says which groups a caller may call.
	callers := []struct {
		name    string
		key     string
		allowed func(group, method string) bool
	}{
		{"no key", "", func(g, _ string) bool { return g == "open" }},
		{"unknown key", "sfk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", func(g, _ string) bool { return g == "open" }},
		{"shop", keys["shop"], func(g, _ string) bool { return g == "open" || g == "shop" }},
		{"stock", keys["stock"], func(g, _ string) bool { return g == "open" || g == "stock" }},
		{"ops", keys["ops"], func(g, _ string) bool { return g == "open" || g == "ops" }},
		{"read", keys["read"], func(g, m string) bool { return g == "open" || m == "GET" }},
	}
	for _, c := range callers {
		for _, rt := range routes {
			var body any
			if rt.body != nil {
				body = rt.body()
			}
			r := srv.call(t, c.key, rt.method, rt.path, body)
			switch {
			case c.allowed(rt.group, rt.method):
				if r.Status < 200 || r.Status > 299 {
					t.Errorf("%s: %s, want 2xx", c.name, r)
				}
			case c.key == "" || c.name == "unknown key":
				expect401(t, c.name, r)
			default:
				if _, ok := r.message(); r.Status != 403 || !ok {
					t.Errorf("%s: %s, want 403 with a message", c.name, r)
				}
			}
		}
	}
	metrics := srv.call(t, keys["ops"], "GET", "/metrics", nil)
	for _, reason := range []string{"missing", "unknown_key", "forbidden"} {
		if !strings.Contains(string(metrics.Body), `stockflow_http_auth_failures_total{reason="`+reason+`"}`) {
			t.Errorf("/metrics counts no refusal for %s", reason)
		}
	}

	// Rotation: the shop key revoked, a new one added; both take effect
	// at the SIGHUP, not before.
	res := opRun(t, nil, "keys", "revoke", "shop-key", "--file", file)
	if res.Code != 0 {
		t.Fatalf("keys revoke: %s", res)
	}
	newShop := addKey(t, file, "shop-key-2", "shop")
	expect(t, srv.call(t, keys["shop"], "GET", orderPath, nil), 200)
	expect401(t, "a key added, before SIGHUP", srv.call(t, newShop, "GET", orderPath, nil))
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := eventually(5*time.Second, func() error {
		if r := srv.call(t, keys["shop"], "GET", orderPath, nil); r.Status != 401 {
			return fmt.Errorf("the revoked key: %s", r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	expect(t, srv.call(t, newShop, "GET", orderPath, nil), 200)
	if !strings.Contains(srv.logs.String(), "API keys reloaded") {
		t.Errorf("no line says the keys were reloaded")
	}

	// stockflow status and load send --key (or STOCKFLOW_KEY).
	if res := opRun(t, nil, "status", "--url", srv.Base, "--key", keys["read"]); res.Code != 0 {
		t.Errorf("status --key: %s", res)
	}
	load := opRun(t, []string{"STOCKFLOW_KEY=" + keys["read"]}, "load", "--url", srv.Base, "--skus", "1", "--duration", "100ms", "--warmup", "0s")
	if load.Code == 0 || !strings.Contains(load.Stderr, "--key") {
		t.Errorf("load with a key lacking the stock role: %s, want an error naming --key", load)
	}
	load = opRun(t, []string{"STOCKFLOW_KEY=" + keys["stock"]}, "load", "--url", srv.Base, "--skus", "1", "--connections", "2", "--duration", "200ms", "--warmup", "0s")
	if load.Code != 0 || !strings.Contains(load.Stdout, "status 201") {
		t.Errorf("load with the stock key: %s", load)
	}

	srv.stop()
	logs := srv.logs.String()
	if !strings.Contains(logs, "request refused") {
		t.Errorf("no refusal logged")
	}
	for name, k := range map[string]string{"shop": keys["shop"], "stock": keys["stock"], "ops": keys["ops"], "read": keys["read"], "new shop": newShop} {
		if strings.Contains(logs, strings.TrimPrefix(k, "sfk_")) {
			t.Errorf("the %s key appears in stockflow's logs", name)
		}
	}
}

func expect401(t *testing.T, who string, r *response) {
	t.Helper()
	if _, ok := r.message(); r.Status != 401 || !ok || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s: %s, want 401 with a message and WWW-Authenticate", who, r)
	}
}

// With no authentication, stockflow refuses an address other machines
// reach, saying what to do, unless --insecure-no-auth.
func TestAuthRefusesPublicAddress(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	port := testenv.FreePort(t)
	res := opRun(t, nil, "up", "--data", data, "--http", fmt.Sprintf("0.0.0.0:%d", port))
	if res.Code != 2 || !strings.Contains(res.Stderr, "no authentication is configured") || !strings.Contains(res.Stderr, "--insecure-no-auth") {
		t.Fatalf("up on 0.0.0.0 without auth: %s", res)
	}
	res = opRun(t, []string{"STOCKFLOW_HTTP=:" + fmt.Sprint(port)}, "up", "--data", data)
	if res.Code != 2 {
		t.Fatalf("up on :PORT (every interface) without auth: %s", res)
	}
	opExpectEmpty(t, data, "a refused up")

	// --insecure-no-auth: served, with a warning.
	port = testenv.FreePort(t)
	var logs testenv.LogBuffer
	cmd := exec.Command(binary, "up", "--data", t.TempDir(), "--http", fmt.Sprintf("0.0.0.0:%d", port), "--insecure-no-auth", "--log-format", "text")
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if err := eventually(10*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}); err != nil {
		t.Fatalf("up --insecure-no-auth on 0.0.0.0 does not serve: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "without authentication") {
		t.Errorf("no warning that it serves without authentication:\n%s", logs.String())
	}
}

// A client that writes a whole 2 MiB body before it reads the answer
// (Python's urllib does) gets the 413, or the 401, every time, not a
// connection reset.
func TestEdgeOversizedBody(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	key := addKey(t, file, "stock", "stock")
	srv := startWith(t, options{Args: []string{"up", "--data", dir, "--auth-keys", file}, Dir: dir})
	body := `{"orderid": "` + strings.Repeat("x", 2<<20) + `", "sku": "LAMP", "qty": 1}`
	for _, tt := range []struct {
		name, header string
		want         int
	}{
		{"with the key", "Authorization: Bearer " + key + "\r\n", 413},
		{"without a key", "", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answered, resets := 0, 0
			for range 20 {
				status, err := writeWholeThenRead(srv.Addr, "/allocate", tt.header, body)
				switch {
				case err != nil:
					resets++
					t.Logf("%v", err)
				case status == tt.want:
					answered++
				default:
					t.Errorf("status %d, want %d", status, tt.want)
				}
			}
			t.Logf("2 MiB POST /allocate %s: %d answered %d, %d reset", tt.name, answered, tt.want, resets)
			if resets > 0 {
				t.Errorf("%d of 20 connections reset instead of answered", resets)
			}
		})
	}
}

// writeWholeThenRead writes a request's headers, then its whole body,
// then reads the answer's status.
func writeWholeThenRead(addr, path, header, body string) (int, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	// A socket buffer of a usual size, not loopback's large automatic one:
	// the body is still being sent when the server answers.
	conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n", path, addr, header, len(body)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(conn, body); err != nil {
		return 0, fmt.Errorf("writing the body: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// The listener over TLS, client certificates required: a client without
// one is refused at the handshake; a renewed server certificate is served
// after a SIGHUP.
func TestTLSListener(t *testing.T) {
	t.Parallel()
	serverCA, clientCA := testenv.NewCA(t, "server CA"), testenv.NewCA(t, "client CA")
	certFile, keyFile := serverCA.Issue(t, "stockflow")
	clientCert, err := tls.LoadX509KeyPair(clientCA.Issue(t, "client"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv := startWith(t, options{
		Args: []string{"up", "--data", dir, "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", clientCA.File},
		Dir:  dir,
		TLS:  &tls.Config{RootCAs: serverCA.Pool, Certificates: []tls.Certificate{clientCert}},
	})
	expect(t, srv.do(t, "POST", "/add_batch", map[string]any{"ref": "b1", "sku": "LAMP", "qty": 1, "eta": nil}), 201)

	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool}}}
	if resp, err := noCert.Get(srv.Base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate was served: %s", resp.Status)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + srv.Addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %s", resp.Status)
		}
	}

	// The certificate renewed by another CA, served after SIGHUP.
	renewCA := testenv.NewCA(t, "renewing CA")
	newCert, newKey := renewCA.Issue(t, "stockflow")
	copyFile(t, newCert, certFile)
	copyFile(t, newKey, keyFile)
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	renewed := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: renewCA.Pool, Certificates: []tls.Certificate{clientCert}}}}
	if err := eventually(5*time.Second, func() error {
		resp, err := renewed.Get(srv.Base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}); err != nil {
		t.Fatalf("the renewed certificate is not served after SIGHUP: %v", err)
	}
	srv.client.CloseIdleConnections() // a new connection, a new handshake
	if _, err := srv.client.Get(srv.Base + "/healthz"); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a client trusting the old CA only, after the renewal: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
