package secure

import (
	"errors"
	"net/url"
	"strings"
)

// hidden replaces a secret in what is printed.
const hidden = "xxxxx"

// secretParams are query parameters that hold a secret rather than name a
// file: libpq's password and sslpassword, a token.
var secretParams = []string{"password", "sslpassword", "token", "sasl_password"}

// URL returns raw fit for logs, errors and answers: its password, a user
// name that is a token (NATS takes nats://TOKEN@host), and secret query
// parameters replaced by xxxxx. Something that does not parse as a URL is
// not printed at all, since where its secret sits is unknown.
func URL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), hidden)
		} else if strings.HasPrefix(u.Scheme, "nats") || u.Scheme == "tls" {
			u.User = url.User(hidden)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for name := range q {
			for _, s := range secretParams {
				if strings.EqualFold(name, s) {
					q[name] = []string{hidden}
					changed = true
				}
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// WithPassword returns raw with password as its password (its user
// kept): how a password read from a file joins its URL. A URL that has a
// password already is refused, since which one is meant is unclear.
func WithPassword(raw, password string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errNotURL
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return "", errTwoPasswords
		}
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	return u.String(), nil
}

var (
	errNotURL       = errors.New("not a URL")
	errTwoPasswords = errors.New("the URL has a password already: give it in the URL or in the file, not both")
)
