package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/nats"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// go test -run '^$' -bench EndToEnd -benchtime 20000x ./internal/transport/nats/
func BenchmarkEndToEnd(b *testing.B) {
	url := testenv.NATS(b)
	for _, rate := range []int{0, 1000} {
		name := "burst"
		if rate > 0 {
			name = fmt.Sprintf("%d/s", rate)
		}
		b.Run(name, func(b *testing.B) {
			stream := testenv.Name("BENCH")
			js, err := nats.New(url, slog.New(slog.DiscardHandler), nats.WithStream(stream, stream))
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				js.JetStream().DeleteStream(context.Background(), stream)
				js.JetStream().DeleteKeyValue(context.Background(), js.LeaseBucket())
				js.Close()
			}()
			transporttest.EndToEnd(b, js, rate)
		})
	}
}
