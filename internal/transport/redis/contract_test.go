package redis

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// The contract suite runs twice per transport: on the test Redis
// (testenv.Redis), and on a private redis-server (testenv.StartRedis) that
// BrokerRestart restarts (SIGKILL, then started again on its port, without
// persistence: it comes back empty).

// pubSubSkips are the contract cases Redis pub/sub skips: none.
var pubSubSkips = map[string]string{}

func TestPubSubContract(t *testing.T) {
	url := testenv.Redis(t)
	transporttest.Run(t, transporttest.Factory{
		New:  func(t *testing.T) messaging.Transport { return newTestPubSub(t, url) },
		Skip: pubSubSkips,
	})
}

func TestPubSubContractPrivateServer(t *testing.T) {
	s := testenv.StartRedis(t)
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return newTestPubSub(t, s.URL) },
		Restart: func(t *testing.T) { s.Restart(t) },
		Skip:    pubSubSkips,
	})
}

func TestStreamsContract(t *testing.T) {
	url := testenv.Redis(t)
	prefix := streamsPrefix(t, url)
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return newTestStreams(t, url, prefix) },
		Durable: true,
	})
}

func TestStreamsContractPrivateServer(t *testing.T) {
	s := testenv.StartRedis(t)
	prefix := streamsPrefix(t, s.URL)
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return newTestStreams(t, s.URL, prefix) },
		Durable: true,
		Restart: func(t *testing.T) { s.Restart(t) },
	})
}

func newTestPubSub(t *testing.T, url string) *PubSub {
	t.Helper()
	p, err := NewPubSub(url, testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// streamsPrefix returns a key prefix of the test's own; its keys are
// deleted at cleanup.
func streamsPrefix(t *testing.T, url string) string {
	prefix := testenv.Name("sftest")
	t.Cleanup(func() {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			c.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
	})
	return prefix
}

// newTestStreams returns a Streams transport under prefix, quick to stop
// and to retry; the caller closes it.
func newTestStreams(t *testing.T, url, prefix string) *Streams {
	t.Helper()
	s, err := NewStreams("redis+streams://"+strings.TrimPrefix(url, "redis://"), testenv.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	s.Prefix = prefix
	s.Block = 200 * time.Millisecond
	s.LeaseTTL = 3 * time.Second
	s.RetryBackoff = 20 * time.Millisecond
	return s
}
