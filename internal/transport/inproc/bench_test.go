package inproc_test

import (
	"testing"

	"github.com/stockflow/stockflow/internal/transport/inproc"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// go test -run '^$' -bench EndToEnd -benchtime 20000x ./internal/transport/inproc/
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("burst", func(b *testing.B) { transporttest.EndToEnd(b, inproc.New(), 0) })
	b.Run("1000/s", func(b *testing.B) { transporttest.EndToEnd(b, inproc.New(), 1000) })
	// What 100,000 durable timers waiting an hour cost the relay.
	b.Run("burst, 100000 timers", func(b *testing.B) { transporttest.EndToEndWithTimers(b, inproc.New(), 0, 100_000) })
}
