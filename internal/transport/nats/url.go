package nats

import (
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/stockflow/stockflow/internal/secure"
)

// connectOptions splits a NATS URL into the servers' URL nats.Connect is
// given, with no credentials in it, and the options that carry what the
// rest of it says:
//
//   - tls://host:port, or nats://host:port with any of ca=, cert=, key=:
//     TLS, the server's certificate checked against ca= (the system's CAs
//     when left out), cert= and key= a client certificate for a server
//     that asks one;
//   - user:password@ a user; TOKEN@ (or :TOKEN@, as a password read from
//     a file joins a URL without a user) a token;
//   - creds=FILE a .creds file (a user's JWT and NKey seed, for servers
//     in operator mode).
//
// Several servers, comma-separated, share the credentials and TLS.
func connectOptions(raw string) (string, []nats.Option, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", nil, errors.New("nats: --broker is not a URL: want nats://host:port or tls://host:port")
	}
	q := u.Query()
	files := secure.TakeTLSFiles(q)
	creds := q.Get("creds")
	q.Del("creds")
	if len(q) > 0 {
		for name := range q {
			return "", nil, fmt.Errorf("nats: unknown URL parameter %s= (known: ca, cert, key, creds)", name)
		}
	}
	var opts []nats.Option
	if u.Scheme == "tls" || files.Any() {
		cfg, err := files.Config("") // nats.go names each server it dials
		if err != nil {
			return "", nil, fmt.Errorf("nats TLS: %w", err)
		}
		opts = append(opts, nats.Secure(cfg))
	}
	if u.User != nil {
		user := u.User.Username()
		password, hasPassword := u.User.Password()
		switch {
		case user != "" && hasPassword:
			opts = append(opts, nats.UserInfo(user, password))
		case user != "":
			opts = append(opts, nats.Token(user))
		case password != "":
			opts = append(opts, nats.Token(password))
		}
	}
	if creds != "" {
		if _, err := os.Stat(creds); err != nil {
			return "", nil, fmt.Errorf("nats: creds=: %w", err)
		}
		opts = append(opts, nats.UserCredentials(creds))
	}
	u.User, u.RawQuery = nil, ""
	return u.String(), opts, nil
}
