package httpx_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/testenv"
)

// tlsServer serves 200 over TLS with the certificate of c and clientCAs.
func tlsServer(t *testing.T, c *httpx.Certificate, clientCAs string) string {
	t.Helper()
	cfg, err := c.TLSConfig(clientCAs)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	// As stockflow serves it: a TLS listener of cfg, whose certificate is
	// the one GetCertificate returns.
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	return "https://" + srv.Listener.Addr().String()
}

func client(pool *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: pool, DisableKeepAlives: true}}
}

// The listener serves its certificate, at TLS 1.2 at least, and serves a
// renewed one after Reload, without a restart.
func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	ca1, ca2 := testenv.NewCA(t, "first CA"), testenv.NewCA(t, "second CA")
	cert1, key1 := ca1.Issue(t, "server")
	c, err := httpx.LoadCertificate(cert1, key1)
	if err != nil {
		t.Fatal(err)
	}
	url := tlsServer(t, c, "")
	trusts1 := client(&tls.Config{RootCAs: ca1.Pool})
	trusts2 := client(&tls.Config{RootCAs: ca2.Pool})
	if _, err := trusts1.Get(url); err != nil {
		t.Fatalf("a client trusting the first CA: %v", err)
	}
	if _, err := client(&tls.Config{RootCAs: ca1.Pool, MaxVersion: tls.VersionTLS11}).Get(url); err == nil {
		t.Error("a TLS 1.1 client was served")
	}

	// The files replaced by a certificate of the second CA: served once
	// reloaded. A reload that fails keeps the certificate in force.
	cert2, key2 := ca2.Issue(t, "server")
	for _, f := range [][2]string{{cert2, cert1}, {key2, key1}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := trusts2.Get(url); err == nil {
		t.Fatal("the new certificate was served before Reload")
	}
	if _, err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := trusts2.Get(url); err != nil {
		t.Fatalf("after Reload, a client trusting the second CA: %v", err)
	}
	if err := os.WriteFile(cert1, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(); err == nil {
		t.Error("Reload of a broken certificate file: no error")
	}
	if _, err := trusts2.Get(url); err != nil {
		t.Fatalf("after a failed Reload, the certificate in force: %v", err)
	}
}

// With client CAs, a client without a certificate, or with one another CA
// signed, is refused at the handshake.
func TestTLSClientCertificates(t *testing.T) {
	t.Parallel()
	serverCA, clientCA, otherCA := testenv.NewCA(t, "server CA"), testenv.NewCA(t, "client CA"), testenv.NewCA(t, "other CA")
	c, err := httpx.LoadCertificate(serverCA.Issue(t, "server"))
	if err != nil {
		t.Fatal(err)
	}
	url := tlsServer(t, c, clientCA.File)
	pair := func(ca *testenv.CA) []tls.Certificate {
		cert, err := tls.LoadX509KeyPair(ca.Issue(t, "client"))
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{cert}
	}
	tests := []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no certificate", nil, false},
		{"certificate of another CA", pair(otherCA), false},
		{"certificate of the client CA", pair(clientCA), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client(&tls.Config{RootCAs: serverCA.Pool, Certificates: tt.certs}).Get(url)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("GET: %v, want success %v", err, tt.ok)
			}
		})
	}
	if _, err := c.TLSConfig(os.DevNull); err == nil {
		t.Error("a client CA file without a certificate was accepted")
	}
}
