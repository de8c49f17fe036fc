package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
)

var pageT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func pageMsg(id, channel, corr, cause string, at time.Duration, producer string, payload map[string]any) domain.Message {
	b, _ := json.Marshal(payload)
	return domain.Message{ID: id, Channel: channel, CorrelationID: corr, CausationID: cause, OccurredAt: pageT0.Add(at),
		Payload: b, Producer: producer, Keys: domain.KeysOf(b)}
}

// journal records two flows of order o1 (its cart, then its placing, in
// which the warehouse gives a message up and the crm gets one twice) and
// one of a batch, in that order.
func pageJournal(t *testing.T, s service.Store) {
	t.Helper()
	ctx := context.Background()
	flows := [][]domain.Message{
		{
			pageMsg("m1", "cart_item_added", "c-cart", "", 0, "orders", map[string]any{"orderid": "o1", "customer": "ann", "sku": "LAMP", "qty": 2}),
			pageMsg("m2", "line_allocated", "c-cart", "m1", 5*time.Millisecond, "allocation", map[string]any{"orderid": "o1", "sku": "LAMP", "batchref": "b1", "qty": 2}),
		},
		{
			pageMsg("m3", "order_placed", "c-place", "", time.Second, "orders", map[string]any{"orderid": "o1", "customer": "ann",
				"lines": []map[string]any{{"sku": "LAMP", "batchref": "b1", "qty": 2}}}),
		},
		{
			pageMsg("m4", "batch_created", "c-batch", "", 2*time.Second, "allocation", map[string]any{"ref": "b9", "sku": "MUG", "qty": 10}),
		},
	}
	for _, f := range flows {
		for _, m := range f {
			if err := s.RecordMessage(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * time.Millisecond) // seen one after the other
	}
	for _, h := range []domain.Handling{
		{MessageID: "m1", Service: "allocation", Handler: "allocation.reserve", Outcome: domain.Handled, At: pageT0.Add(time.Millisecond), Raised: []string{"m2"}},
		{MessageID: "m2", Service: "orders", Handler: "orders.line_allocated", Outcome: domain.Handled, At: pageT0.Add(6 * time.Millisecond)},
		{MessageID: "m2", Service: "warehouse", Handler: "warehouse.line_allocated", Outcome: domain.Handled, At: pageT0.Add(7 * time.Millisecond)},
		{MessageID: "m3", Service: "crm", Handler: "crm.order_placed", Outcome: domain.Handled, At: pageT0.Add(time.Second + time.Millisecond)},
		{MessageID: "m3", Service: "crm", Handler: "crm.order_placed", Outcome: domain.Duplicate, At: pageT0.Add(time.Second + 2*time.Millisecond)},
		{MessageID: "m3", Service: "warehouse", Handler: "warehouse", Outcome: domain.DeadLettered, At: pageT0.Add(time.Second + 3*time.Millisecond),
			Reason: "no such batch", Attempts: 3},
	} {
		if err := s.RecordHandling(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
}

// Run runs the shared tests on stores open returns, each a fresh one.
// runPageQueries runs the cases of the page's queries (recent flows, the
// service map's traffic, the latest message of a channel).
func runPageQueries(t *testing.T, open func(t *testing.T) service.Store) {
	t.Run("TraceByCustomerAndSKU", func(t *testing.T) {
		s := open(t)
		pageJournal(t, s)
		for _, c := range []struct {
			q    service.Query
			want string
		}{
			{service.Query{Customer: "ann"}, "[m1 m2 m3]"},
			{service.Query{SKU: "LAMP"}, "[m1 m2 m3]"},
			{service.Query{SKU: "MUG"}, "[m4]"},
			{service.Query{Customer: "bob"}, "[]"},
		} {
			c.q.Limit = 100
			msgs, _, err := s.Messages(context.Background(), c.q)
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, m := range msgs {
				ids = append(ids, m.ID)
			}
			if got := fmt.Sprint(ids); got != c.want {
				t.Errorf("%+v: %s, want %s", c.q, got, c.want)
			}
		}
	})
	t.Run("Recent", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		if fs, err := s.Recent(ctx, service.RecentQuery{Limit: 10}); err != nil || len(fs) != 0 {
			t.Fatalf("an empty journal's recent flows: %v, %v", fs, err)
		}
		pageJournal(t, s)
		fs, err := s.Recent(ctx, service.RecentQuery{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 3 {
			t.Fatalf("recent flows: %+v, want 3", fs)
		}
		want := []domain.Flow{
			{CorrelationID: "c-batch", FirstMessage: "m4", FirstChannel: "batch_created", Producer: "allocation",
				Started: pageT0.Add(2 * time.Second), Last: pageT0.Add(2 * time.Second), Messages: 1},
			{CorrelationID: "c-place", FirstMessage: "m3", FirstChannel: "order_placed", Producer: "orders", Order: "o1", Customer: "ann",
				Started: pageT0.Add(time.Second), Last: pageT0.Add(time.Second), Messages: 1, Failed: true},
			{CorrelationID: "c-cart", FirstMessage: "m1", FirstChannel: "cart_item_added", Producer: "orders", Order: "o1", Customer: "ann",
				Started: pageT0, Last: pageT0.Add(5 * time.Millisecond), Messages: 2},
		}
		for i := range want {
			if fmt.Sprintf("%+v", fs[i]) != fmt.Sprintf("%+v", want[i]) {
				t.Errorf("flow %d:\n got %+v\nwant %+v", i, fs[i], want[i])
			}
		}
		if fs, err := s.Recent(ctx, service.RecentQuery{Limit: 2}); err != nil || len(fs) != 2 || fs[0].CorrelationID != "c-batch" {
			t.Errorf("limit 2: %+v, %v", fs, err)
		}
		for match, want := range map[string]string{
			"o1": "[c-place c-cart]", "ann": "[c-place c-cart]", "LAMP": "[c-place c-cart]", "b1": "[c-place c-cart]",
			"b9": "[c-batch]", "MUG": "[c-batch]", "m2": "[c-cart]", "c-place": "[c-place]", "nothing": "[]",
		} {
			fs, err := s.Recent(ctx, service.RecentQuery{Match: match, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, f := range fs {
				ids = append(ids, f.CorrelationID)
			}
			if got := fmt.Sprint(ids); got != want {
				t.Errorf("match %s: %s, want %s", match, got, want)
			}
		}
	})
	t.Run("TrafficAndLatest", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		pageJournal(t, s)
		ts, err := s.Traffic(ctx, time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, x := range ts {
			got[x.Producer+" "+x.Channel+" "+x.Consumer] = fmt.Sprint(x.Messages, x.Handled, x.Duplicates, x.DeadLettered)
		}
		want := map[string]string{
			"orders cart_item_added allocation":   "1 1 0 0",
			"allocation line_allocated orders":    "1 1 0 0",
			"allocation line_allocated warehouse": "1 1 0 0",
			"orders order_placed crm":             "1 1 1 0",
			"orders order_placed warehouse":       "1 0 0 1",
			"allocation batch_created ":           "1 0 0 0",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("traffic:\n got %v\nwant %v", got, want)
		}
		if ts, err := s.Traffic(ctx, time.Now().Add(time.Minute)); err != nil || len(ts) != 0 {
			t.Errorf("traffic of the future: %v, %v", ts, err)
		}
		m, err := s.Latest(ctx, "line_allocated")
		if err != nil || m == nil || m.ID != "m2" || m.Order != "o1" || !m.OccurredAt.Equal(pageT0.Add(5*time.Millisecond)) {
			t.Errorf("latest line_allocated: %+v, %v", m, err)
		}
		if m, err := s.Latest(ctx, "out_of_stock"); err != nil || m != nil {
			t.Errorf("latest out_of_stock: %+v, %v", m, err)
		}
	})
}
