package secure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// TLSFiles are the PEM files a URL's query names for its TLS: the CAs that
// sign the server's certificate (ca=; the system's when empty), and a
// client certificate with its key (cert=, key=), for servers that ask one.
type TLSFiles struct {
	CA, Cert, Key string
}

// TakeTLSFiles removes ca=, cert= and key= from q, which then holds only
// what the client library reads itself, and returns them.
func TakeTLSFiles(q url.Values) TLSFiles {
	f := TLSFiles{CA: q.Get("ca"), Cert: q.Get("cert"), Key: q.Get("key")}
	q.Del("ca")
	q.Del("cert")
	q.Del("key")
	return f
}

// Any reports whether any file is named.
func (f TLSFiles) Any() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Config returns a client configuration for serverName: TLS 1.2 at least,
// the server's certificate checked against f.CA (or the system's CAs),
// and f's client certificate. An error names the file at fault.
func (f TLSFiles) Config(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("ca=: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca=%s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert == "" && f.Key == "":
	case f.Cert == "" || f.Key == "":
		return nil, errors.New("cert= and key= go together: give the client certificate and its key, or neither")
	default:
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate cert=%s key=%s: %w", f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ErrCertificate marks an error whose cause is a server certificate that
// was refused: waiting does not help, the configuration must change.
var ErrCertificate = errors.New("the server's certificate was refused")

// Explain returns err with what to do when a server's certificate was
// refused (signed by a CA not trusted, made for another host, expired),
// marked ErrCertificate; any other error as it is.
func Explain(err error) error {
	if err == nil || errors.Is(err, ErrCertificate) {
		return err
	}
	var (
		unknown  x509.UnknownAuthorityError
		host     x509.HostnameError
		invalid  x509.CertificateInvalidError
		verifErr *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		return certError{err, "it is not signed by a CA stockflow trusts: give the CA that signed it as ca=FILE in the URL (without ca=, the system's CAs are trusted)"}
	case errors.As(err, &host):
		return certError{err, "it was not made for the host the URL names: connect by a name (or address) the certificate lists"}
	case errors.As(err, &invalid):
		return certError{err, "it is not valid (expired, not yet valid, or not for a server)"}
	case errors.As(err, &verifErr):
		return certError{err, "it could not be verified"}
	}
	return err
}

type certError struct {
	err  error
	hint string
}

func (e certError) Error() string {
	return ErrCertificate.Error() + ": " + e.hint + " (" + e.err.Error() + ")"
}

func (e certError) Unwrap() []error { return []error{ErrCertificate, e.err} }
