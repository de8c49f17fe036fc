package flows_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockflow/stockflow/internal/flows"
	"github.com/stockflow/stockflow/internal/messaging"
)

var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// registry returns a registry of channels.
func registry(channels ...string) *messaging.Registry {
	r := messaging.NewRegistry()
	for _, c := range channels {
		messaging.Register(r, c, func(struct{}) string { return "" }, nil)
	}
	return r
}

func TestProducers(t *testing.T) {
	shared := []string{messaging.ChannelReceipts, messaging.DeadLetterChannel}
	services := map[string]*messaging.Registry{
		"orders":     registry(append([]string{"order_placed", "allocated", "order_cancelled"}, shared...)...),
		"allocation": registry(append([]string{"order_placed", "allocated", "batch_created", "order_cancelled"}, shared...)...),
		"warehouse":  registry(append([]string{"allocated", "goods_dispatched", "batch_created"}, shared...)...),
		"crm":        registry(append([]string{"order_placed", "goods_dispatched"}, shared...)...),
	}
	inbound := map[string][]string{
		"orders":     {"allocated"},
		"allocation": {"order_placed", "batch_created"},
		"warehouse":  {"allocated", "batch_created"},
		"crm":        {"order_placed", "goods_dispatched"},
	}
	// Several runs: the registries are read in map order.
	for range 20 {
		channels, producers := flows.Producers(services, inbound)
		wantChannels := []string{"allocated", "batch_created", messaging.DeadLetterChannel, "goods_dispatched",
			messaging.ChannelReceipts, "order_cancelled", "order_placed"}
		if diff := cmp.Diff(wantChannels, channels, cmpSorted); diff != "" {
			t.Fatalf("channels (-want +got):\n%s", diff)
		}
		want := map[string]string{
			"order_placed":     "orders",
			"allocated":        "allocation",
			"goods_dispatched": "warehouse",
			// Raised by several: nobody's.
			"order_cancelled":           "",
			messaging.ChannelReceipts:   "",
			messaging.DeadLetterChannel: "",
			// Raised by none (from outside): nobody's.
			"batch_created": "",
		}
		for c, w := range want {
			if got := producers[c]; got != w {
				t.Errorf("producer of %s = %q, want %q", c, got, w)
			}
		}
		for c := range producers {
			if _, ok := want[c]; !ok {
				t.Errorf("producer of unknown channel %s: %q", c, producers[c])
			}
		}
	}
}

func TestProducersOfNothing(t *testing.T) {
	channels, producers := flows.Producers(nil, nil)
	if len(channels) != 0 || len(producers) != 0 {
		t.Errorf("Producers(nil, nil) = %v, %v", channels, producers)
	}
}
