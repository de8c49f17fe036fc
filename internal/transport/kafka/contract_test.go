package kafka_test

import (
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/kafka"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// TestContract runs the transport contract on one kfake broker that keeps
// its data on disk, so that Restart can stop it and start it again on the
// same port with its topics, records and group offsets.
func TestContract(t *testing.T) {
	dir := t.TempDir()
	var (
		mu      sync.Mutex
		cluster *kfake.Cluster
	)
	start := func(t *testing.T, opts ...kfake.Opt) {
		c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(dir)}, opts...)...)
		if err != nil {
			t.Fatalf("starting kfake: %v", err)
		}
		cluster = c
	}
	start(t)
	addrs := cluster.ListenAddrs()
	_, p, _ := net.SplitHostPort(addrs[0])
	port, _ := strconv.Atoi(p)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		cluster.Close()
	})

	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) messaging.Transport {
			k, err := kafka.New(addrs, testenv.Logger(t, slog.LevelWarn),
				kafka.RetryBackoff(10*time.Millisecond, 200*time.Millisecond),
				kafka.ClientOpts(
					kgo.HeartbeatInterval(100*time.Millisecond),
					// Find the broker again soon after a restart
					// (franz-go waits 5s between metadata refreshes).
					kgo.MetadataMinAge(100*time.Millisecond),
				))
			if err != nil {
				t.Fatal(err)
			}
			return k
		},
		Durable: true,
		Restart: func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			cluster.Close()
			start(t, kfake.Ports(port))
		},
	})
}
