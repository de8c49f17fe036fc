package httpx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Certificate is the listener's certificate and key, read from their
// files, and read again by Reload (a renewed certificate is served without
// a restart).
type Certificate struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads the PEM certificate (its chain after it) and key
// files.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again and returns the new certificate's expiry.
// On an error the certificate read before is still served.
func (c *Certificate) Reload() (time.Time, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return time.Time{}, fmt.Errorf("TLS certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&cert)
	return cert.Leaf.NotAfter, nil
}

// TLSConfig returns the listener's TLS configuration: TLS 1.2 at least,
// the certificate as last read, and, when clientCAs is given (a PEM
// file), a client certificate that one of them signed required of every
// client.
func (c *Certificate) TLSConfig(clientCAs string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cert.Load(), nil
		},
	}
	if clientCAs == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(clientCAs)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("client CA " + clientCAs + ": no PEM certificate in it")
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}
