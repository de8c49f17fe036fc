package inproc_test

import (
	"testing"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/transport/inproc"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// The in-process transport keeps nothing: it runs the contract's
// non-durable cases (transporttest's package doc lists them); there is no
// broker to restart.
func TestTransportContract(t *testing.T) {
	transporttest.Run(t, transporttest.Factory{
		New:     func(t *testing.T) messaging.Transport { return inproc.New() },
		Durable: false,
	})
}
