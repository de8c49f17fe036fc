package kafka_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/stockflow/stockflow/internal/transport/kafka"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// On kfake, the in-process fake broker: a measure of the transport's own
// cost, not of a Kafka cluster's.
//
//	go test -run '^$' -bench EndToEnd -benchtime 20000x ./internal/transport/kafka/
func BenchmarkEndToEnd(b *testing.B) {
	for _, rate := range []int{0, 1000} {
		name := "burst"
		if rate > 0 {
			name = fmt.Sprintf("%d/s", rate)
		}
		b.Run(name, func(b *testing.B) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			k, err := kafka.New(c.ListenAddrs(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer k.Close()
			transporttest.EndToEnd(b, k, rate)
		})
	}
}
