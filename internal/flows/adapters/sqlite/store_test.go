package sqlite_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	flowsqlite "github.com/stockflow/stockflow/internal/flows/adapters/sqlite"
	"github.com/stockflow/stockflow/internal/flows/domain"
	"github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/flows/service/storetest"
)

func open(t testing.TB, file string) *flowsqlite.Store {
	t.Helper()
	s, err := flowsqlite.Open(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) service.Store {
		s := open(t, filepath.Join(t.TempDir(), "flows.db"))
		t.Cleanup(s.Close)
		return s
	})
}

// The journal outlives the process, and opening it again applies no
// migration twice.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "flows.db")
	s := open(t, file)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Messaging() == nil {
		t.Error("Messaging() = nil")
	}
	m := domain.Message{ID: "m1", Channel: "order_placed", CorrelationID: "m1", OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
		Payload: json.RawMessage(`{"orderid":"o1"}`), Keys: domain.Keys{Order: "o1"}}
	if err := s.RecordMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, file)
	defer s.Close()
	msgs, _, err := s.Messages(ctx, service.Query{Order: "o1", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != "m1" {
		t.Fatalf("after reopening: %+v, want m1", msgs)
	}
}
