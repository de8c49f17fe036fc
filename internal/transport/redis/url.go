package redis

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/secure"
)

// options returns the client options of a Redis URL: go-redis's own
// (redis://, or rediss:// for TLS; user:password@ for an ACL user, or
// :password@ for the default one; /db; its query options such as
// dial_timeout), and the PEM files of its TLS: ca= (the CAs that sign the
// server's certificate; the system's when left out), cert= and key= (a
// client certificate, for a server that asks one, as Redis does unless
// tls-auth-clients is no).
func options(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		return nil, errors.New("--broker: not a URL: want redis://[user:password@]host:port[/db]")
	}
	q := u.Query()
	files := secure.TakeTLSFiles(q)
	u.RawQuery = q.Encode()
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("--broker: %w", err) // the error names redis already
	}
	if !files.Any() {
		return opts, nil
	}
	if opts.TLSConfig == nil {
		return nil, fmt.Errorf("--broker: ca=, cert= and key= are for TLS: use %s", "rediss://")
	}
	cfg, err := files.Config(opts.TLSConfig.ServerName)
	if err != nil {
		return nil, fmt.Errorf("--broker: redis TLS: %w", err)
	}
	cfg.InsecureSkipVerify = opts.TLSConfig.InsecureSkipVerify // skip_verify=true
	opts.TLSConfig = cfg
	return opts, nil
}
