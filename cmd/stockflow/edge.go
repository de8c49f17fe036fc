package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stockflow/stockflow/internal/auth"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/metrics"
	"github.com/stockflow/stockflow/internal/secure"
)

// edgeFlags are the flags of the HTTP listener's edge: who may call what,
// TLS, CORS.
type edgeFlags struct {
	authKeys                   string
	jwks, issuer, audience     string
	rolesClaim                 string
	insecureNoAuth             bool
	metricsAuth                bool
	cors                       string
	tlsCert, tlsKey, tlsClient string
}

func addEdgeFlags(fs *flag.FlagSet) *edgeFlags {
	e := &edgeFlags{}
	fs.StringVar(&e.authKeys, "auth-keys", "", "`file` of the API keys callers may send (Authorization: Bearer KEY), kept hashed; made by \"stockflow keys add\", read again on SIGHUP")
	fs.StringVar(&e.jwks, "auth-jwks", "", "`URL` of an identity provider's JSON Web Key Set: callers may send its JWTs (RS256 or ES256) instead of API keys")
	fs.StringVar(&e.issuer, "auth-issuer", "", "the `issuer` (iss) a JWT must name; required with --auth-jwks")
	fs.StringVar(&e.audience, "auth-audience", "", "the `audience` (aud) a JWT must name; required with --auth-jwks")
	fs.StringVar(&e.rolesClaim, "auth-roles-claim", "roles", "the JWT `claim` holding the caller's roles (a dotted name reaches into objects: realm_access.roles)")
	fs.BoolVar(&e.insecureNoAuth, "insecure-no-auth", false, "serve a non-loopback --http address without authentication (behind a proxy that authenticates, say)")
	fs.BoolVar(&e.metricsAuth, "metrics-auth", false, "require the ops or read role on /metrics (open by default)")
	fs.StringVar(&e.cors, "cors-origin", "", "`origins` whose pages may call the API from a browser, comma-separated (https://shop.example), or *")
	fs.StringVar(&e.tlsCert, "tls-cert", "", "PEM certificate `file` (its chain after it): serve HTTPS; read again on SIGHUP")
	fs.StringVar(&e.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert; read again on SIGHUP")
	fs.StringVar(&e.tlsClient, "tls-client-ca", "", "PEM `file` of the CAs whose client certificates are required of every caller")
	return e
}

// authConfigured reports whether callers must show a credential.
func (e *edgeFlags) authConfigured() bool { return e.authKeys != "" || e.jwks != "" }

// edge is the listener's edge, as the flags made it.
type edge struct {
	guard  *auth.Guard        // nil: no authentication
	layers []httpx.Layer      // CORS, then the guard
	cert   *httpx.Certificate // nil: plain HTTP
	tls    *tls.Config
}

// checkExposure refuses to serve addr to the network without
// authentication: with none, only a loopback address is served, unless
// --insecure-no-auth says to.
func (e *edgeFlags) checkExposure(addr string, log *slog.Logger) error {
	if e.authConfigured() {
		return nil
	}
	if listensOnLoopback(addr) {
		return nil
	}
	if e.insecureNoAuth {
		log.Warn("serving without authentication on a non-loopback address (--insecure-no-auth): anyone who reaches it may change stock and orders", "http", addr)
		return nil
	}
	return usageError{fmt.Errorf("--http %s is reachable from other machines, and no authentication is configured: anyone who reaches it could change stock and cancel orders. "+
		"Give --auth-keys FILE (stockflow keys add makes keys) or --auth-jwks URL with --auth-issuer and --auth-audience; "+
		"or --insecure-no-auth to serve it open anyway (behind a proxy that authenticates); or listen on 127.0.0.1", addr)}
}

// listensOnLoopback reports whether addr (host:port) names only this
// machine: a loopback address, or a name all of whose addresses are.
func listensOnLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false // ":5005" listens on every interface
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// build reads what the flags name (key file, certificate, CAs) and
// fetches the JWT key set; what is wrong is said before anything listens.
func (e *edgeFlags) build(ctx context.Context, log *slog.Logger, m *metrics.Metrics) (*edge, error) {
	out := &edge{}
	if e.cors != "" {
		c, err := httpx.NewCORS(e.cors)
		if err != nil {
			return nil, usageError{fmt.Errorf("--cors-origin: %w", err)}
		}
		out.layers = append(out.layers, c.Layer)
	}
	if e.authConfigured() {
		g := &auth.Guard{
			Policy:  auth.Policy{Routes: routeRoles, Open: openRoutes(e.metricsAuth)},
			Log:     log,
			Refused: m.AuthFailed,
		}
		if e.authKeys != "" {
			keys, err := auth.LoadKeys(e.authKeys)
			if err != nil {
				return nil, usageError{fmt.Errorf("--auth-keys: %w", err)}
			}
			g.Keys = keys
		}
		if e.jwks != "" {
			j, err := auth.NewJWKS(auth.JWTConfig{JWKSURL: e.jwks, Issuer: e.issuer, Audience: e.audience, RolesClaim: e.rolesClaim})
			if err != nil {
				return nil, usageError{fmt.Errorf("--auth-jwks: %w", err)}
			}
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			n, err := j.Fetch(fctx)
			cancel()
			if err != nil {
				// The provider may be away for a while: tokens are refused
				// until its keys are had, and the fetch is tried again.
				log.Warn("JWT key set unavailable; tokens are refused until it is fetched", "err", err)
			} else {
				log.Info("JWT key set fetched", "keys", n, "url", secure.URL(e.jwks))
			}
			g.JWT = j
		}
		out.guard = g
		out.layers = append(out.layers, g.Layer)
	} else if e.metricsAuth {
		return nil, usageError{errors.New("--metrics-auth needs authentication: --auth-keys or --auth-jwks")}
	}
	switch {
	case e.tlsCert == "" && e.tlsKey == "":
		if e.tlsClient != "" {
			return nil, usageError{errors.New("--tls-client-ca needs --tls-cert and --tls-key")}
		}
		return out, nil
	case e.tlsCert == "" || e.tlsKey == "":
		return nil, usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	cert, err := httpx.LoadCertificate(e.tlsCert, e.tlsKey)
	if err != nil {
		return nil, usageError{fmt.Errorf("--tls-cert: %w", err)}
	}
	cfg, err := cert.TLSConfig(e.tlsClient)
	if err != nil {
		return nil, usageError{fmt.Errorf("--tls-client-ca: %w", err)}
	}
	out.cert, out.tls = cert, cfg
	return out, nil
}

// describe returns the log attributes saying how the edge is set up.
func (e *edge) describe(f *edgeFlags) []any {
	a := "none"
	switch {
	case f.authKeys != "" && f.jwks != "":
		a = "api keys, jwt"
	case f.authKeys != "":
		a = "api keys"
	case f.jwks != "":
		a = "jwt"
	}
	attrs := []any{"auth", a, "tls", e.tls != nil}
	if e.tls != nil && e.tls.ClientCAs != nil {
		attrs = append(attrs, "client_certificates", "required")
	}
	return attrs
}

// reload reads the key file and the certificate again; what fails is
// logged, and what was read before stays in force.
func (e *edge) reload(log *slog.Logger) {
	if e.guard != nil && e.guard.Keys != nil {
		if n, err := e.guard.Keys.Reload(); err != nil {
			log.Error("reloading the API keys failed; the keys read before stay in force", "err", err)
		} else {
			log.Info("API keys reloaded", "keys", n, "file", e.guard.Keys.Path())
		}
	}
	if e.cert != nil {
		if expiry, err := e.cert.Reload(); err != nil {
			log.Error("reloading the TLS certificate failed; the one read before is still served", "err", err)
		} else {
			log.Info("TLS certificate reloaded", "expires", expiry)
		}
	}
	if (e.guard == nil || e.guard.Keys == nil) && e.cert == nil {
		log.Info("SIGHUP: nothing to reload (no --auth-keys, no --tls-cert)")
	}
}

// reloadOnHangup calls e.reload at each SIGHUP (caught from now on, so
// that it no longer ends the process) until stop is called.
func (e *edge) reloadOnHangup(log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-hup:
				e.reload(log)
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-exited
	}
}
