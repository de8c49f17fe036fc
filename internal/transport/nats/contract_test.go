package nats_test

import (
	"log/slog"
	"testing"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/nats"
	"github.com/stockflow/stockflow/internal/transport/transporttest"
)

// The transport contract, on a nats-server of the test's own (so that
// BrokerRestart can restart it), or on the machine's when nats-server is
// not installed here (without BrokerRestart). The transports share one
// stream of the test's own.
func TestContract(t *testing.T) {
	t.Parallel()
	var url string
	var restart func(t *testing.T)
	if testenv.Installed("nats-server") {
		srv := testenv.StartNATS(t)
		url = srv.URL
		restart = func(t *testing.T) {
			srv.Stop()
			srv.Restart(t)
		}
	} else {
		url = testenv.NATS(t)
	}
	s := newStream(t, url)
	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) messaging.Transport {
			js, err := nats.New(s.url, testenv.Logger(t, slog.LevelDebug), nats.WithStream(s.name, s.prefix))
			if err != nil {
				t.Fatal(err)
			}
			return js
		},
		Durable: true,
		Restart: restart,
	})
}
