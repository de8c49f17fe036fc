package inproc_test

import (
	"testing"

	"github.com/stockflow/stockflow/internal/messaging/inproc"
	"github.com/stockflow/stockflow/internal/messaging/transporttest"
)

// go test -run '^$' -bench EndToEnd -benchtime 20000x ./internal/messaging/inproc/
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("burst", func(b *testing.B) { transporttest.EndToEnd(b, inproc.New(), 0) })
	b.Run("1000/s", func(b *testing.B) { transporttest.EndToEnd(b, inproc.New(), 1000) })
}
