// Package broker opens the transport a URL names.
package broker

import (
	"fmt"
	"log/slog"
	"net/url"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/transport/inproc"
	"github.com/stockflow/stockflow/internal/transport/kafka"
	"github.com/stockflow/stockflow/internal/transport/nats"
	"github.com/stockflow/stockflow/internal/transport/redis"
)

// Schemes lists the transports a broker URL can name.
const Schemes = `"" or inproc:// (in-process, the default), redis://host:port (Redis pub/sub, as in the book), ` +
	`redis+streams://host:port (Redis Streams), nats://host:port (NATS JetStream), kafka://host:port[,host:port...] (Kafka); ` +
	`rediss://, rediss+streams://, tls:// (NATS) and kafka+tls:// for TLS (see the README's Production section)`

// Check reports what is wrong with a broker URL, without connecting.
func Check(rawURL string) error {
	if rawURL == "" {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("--broker: not a URL: use %s", Schemes) // url.Parse's error would show the URL, password and all
	}
	switch u.Scheme {
	case "inproc", "redis", "rediss", "redis+streams", "rediss+streams", "nats", "tls":
		return nil
	case "kafka", "kafka+tls":
		_, err := kafka.ParseURL(rawURL)
		return err
	}
	return fmt.Errorf("--broker: unsupported scheme %s://: use %s", u.Scheme, Schemes)
}

// Open returns the transport rawURL names.
func Open(rawURL string, log *slog.Logger) (messaging.Transport, error) {
	if err := Check(rawURL); err != nil {
		return nil, err
	}
	if rawURL == "" {
		return inproc.New(), nil
	}
	u, _ := url.Parse(rawURL)
	if u.Host == "" && u.Scheme != "inproc" {
		log.Info("the broker URL names no host: using the default", "broker", secure.URL(rawURL), "means", u.Scheme+"://localhost (the default port)")
	}
	switch u.Scheme {
	case "inproc":
		return inproc.New(), nil
	case "redis", "rediss":
		return redis.NewPubSub(rawURL, log)
	case "redis+streams", "rediss+streams":
		return redis.NewStreams(rawURL, log)
	case "nats", "tls":
		return nats.New(rawURL, log)
	case "kafka", "kafka+tls":
		return kafka.Open(rawURL, log)
	}
	return nil, fmt.Errorf("--broker: unsupported scheme %s://: use %s", u.Scheme, Schemes)
}
