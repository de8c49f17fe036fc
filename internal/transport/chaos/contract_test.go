package chaos_test

import (
	"testing"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/transport/chaos"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// The transport contract, durable cases included, on one broker that every
// transport of the suite connects to (Conn). Duplicates and rewinds are
// off: some cases count deliveries exactly. Delays, retries and the random
// order across keys stay on. There is no broker process to restart.
func TestContract(t *testing.T) {
	b := chaos.New(chaos.Options{Seed: 1, DuplicateRate: -1, RewindRate: -1})
	t.Cleanup(func() { b.Close() })
	t.Logf("seed %d", b.Seed())
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return b.Conn() },
		Durable: true,
	})
}
