package redis

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// go test -run '^$' -bench EndToEnd -benchtime 20000x ./internal/transport/redis/
func BenchmarkEndToEnd(b *testing.B) {
	url := testenv.Redis(b)
	for _, rate := range []int{0, 1000} {
		name := "burst"
		if rate > 0 {
			name = fmt.Sprintf("%d/s", rate)
		}
		b.Run("streams/"+name, func(b *testing.B) {
			s, err := NewStreams("redis+streams://"+strings.TrimPrefix(url, "redis://"), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			s.Prefix = testenv.Name("bench")
			defer s.Close()
			transporttest.EndToEnd(b, s, rate)
		})
		b.Run("pubsub/"+name, func(b *testing.B) {
			p, err := NewPubSub(url, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			transporttest.EndToEnd(b, p, rate)
		})
	}
}
