package kafka

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/stockflow/stockflow/internal/secure"
)

// URLForm is the form of a Kafka URL, for errors.
const URLForm = "kafka[+tls]://[user:password@]host:port[,host:port...][?sasl=plain|scram-sha-256|scram-sha-512&ca=FILE&cert=FILE&key=FILE]"

// URL is what a Kafka URL says: the brokers, and the franz-go options of
// its TLS and SASL.
type URL struct {
	Brokers []string
	// TLS: kafka+tls://, with the server's CA (ca=; the system's when
	// left out) and a client certificate (cert=, key=).
	TLS bool
	// SASL is the mechanism of the URL's user (sasl=): PLAIN,
	// SCRAM-SHA-256 or SCRAM-SHA-512; empty without a user.
	SASL string
	Opts []kgo.Opt
}

// ParseURL reads a Kafka URL (URLForm): kafka:// or kafka+tls:// (TLS),
// the brokers (port 9092 when left out), and a user authenticated by
// SASL with the mechanism sasl= names, through franz-go's own sasl
// packages. SASL over kafka:// sends the password over plain TCP with
// PLAIN, and is meant for networks the brokers' operators trust.
func ParseURL(rawURL string) (URL, error) {
	bad := func(format string, a ...any) (URL, error) {
		return URL{}, fmt.Errorf("kafka: %s: %s; want %s", secure.URL(rawURL), fmt.Sprintf(format, a...), URLForm)
	}
	var out URL
	rest, ok := strings.CutPrefix(rawURL, "kafka://")
	if !ok {
		if rest, ok = strings.CutPrefix(rawURL, "kafka+tls://"); !ok {
			return bad("not a Kafka URL")
		}
		out.TLS = true
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return bad("its query does not parse")
	}
	var user *url.Userinfo
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		u, err := url.Parse("kafka://" + rest[:i+1] + "h")
		if err != nil || u.User == nil {
			return bad("its user does not parse")
		}
		user, rest = u.User, rest[i+1:]
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/#@") {
		return bad("no brokers")
	}
	for _, hp := range strings.Split(rest, ",") {
		if hp == "" {
			return bad("empty broker address")
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			// no port: host, or [ipv6]
			host, port = strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), "9092"
			if strings.ContainsAny(host, "[]") {
				return bad("bad broker address %q", hp)
			}
		}
		if host == "" || port == "" {
			return bad("bad broker address %q", hp)
		}
		out.Brokers = append(out.Brokers, net.JoinHostPort(host, port))
	}

	files := secure.TakeTLSFiles(q)
	mechanism := strings.ToUpper(q.Get("sasl"))
	q.Del("sasl")
	for name := range q {
		return bad("unknown parameter %s=", name)
	}
	if files.Any() && !out.TLS {
		return bad("ca=, cert= and key= are for TLS: use kafka+tls://")
	}
	if out.TLS {
		cfg, err := files.Config("") // franz-go names each broker it dials
		if err != nil {
			return URL{}, fmt.Errorf("kafka TLS: %w", err)
		}
		out.Opts = append(out.Opts, kgo.DialTLSConfig(cfg))
	}
	switch {
	case user == nil && mechanism == "":
		return out, nil
	case user == nil:
		return bad("sasl=%s names no user: give user:password@", strings.ToLower(mechanism))
	case mechanism == "":
		return bad("a user with no sasl=: name the mechanism the brokers take")
	}
	name := user.Username()
	password, _ := user.Password()
	var m sasl.Mechanism
	switch mechanism {
	case "PLAIN":
		m = plain.Auth{User: name, Pass: password}.AsMechanism()
	case "SCRAM-SHA-256":
		m = scram.Auth{User: name, Pass: password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		m = scram.Auth{User: name, Pass: password}.AsSha512Mechanism()
	default:
		return bad("unknown sasl=%s", strings.ToLower(mechanism))
	}
	out.SASL = mechanism
	out.Opts = append(out.Opts, kgo.SASL(m))
	return out, nil
}

// Open returns a transport on the brokers of a Kafka URL, with its TLS
// and SASL; opts come after (and win).
func Open(rawURL string, log *slog.Logger, opts ...Option) (*Kafka, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(u.Brokers, log, append([]Option{ClientOpts(u.Opts...)}, opts...)...)
}
