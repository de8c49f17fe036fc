package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/warehouse/domain"
)

// ship dispatches qty units of b with an order of its own, as the service
// does; it fails the test if they do not leave.
func ship(t *testing.T, b *domain.Batch, qty int) {
	t.Helper()
	s := domain.NewShipment(fmt.Sprintf("o-%d-%d", len(b.Reports), b.Dispatched))
	s.Place("alice", []domain.ShipLine{{SKU: b.SKU, Qty: qty}})
	s.LineAllocated(b.SKU, b.Ref, 0)
	if short := s.Dispatch(map[string]*domain.Batch{b.Ref: b}, t0); short != nil || len(s.Events()) != 1 {
		t.Fatalf("shipping %d of %s (qty %d): short %v, events %+v", qty, b.Ref, b.Qty, short, s.Events())
	}
}

func TestBatchReckonsQty(t *testing.T) {
	type step func(t *testing.T, b *domain.Batch)
	announce := func(qty, dispatched, reportSeq, version int) step {
		return func(t *testing.T, b *domain.Batch) {
			b.Announce(domain.Announcement{Qty: qty, Dispatched: dispatched, ReportSeq: reportSeq, Version: version})
		}
	}
	shipped := func(qty int) step { return func(t *testing.T, b *domain.Batch) { ship(t, b, qty) } }
	count := func(qty int) step {
		return func(t *testing.T, b *domain.Batch) {
			if err := b.Count(qty, "", t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	damage := func(qty int) step {
		return func(t *testing.T, b *domain.Batch) {
			if err := b.Damage(qty, "", t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name  string
		steps []step
		want  int
	}{
		{"announcement only", []step{announce(10, 0, 0, 1)}, 10},
		{"a newer announcement", []step{announce(10, 0, 0, 1), announce(12, 0, 0, 2)}, 12},
		{"dispatches since the announcement", []step{announce(10, 0, 0, 1), shipped(3), shipped(2)}, 5},
		{"an announcement including some dispatches", []step{announce(10, 0, 0, 1), shipped(3), shipped(2), announce(7, 3, 0, 2)}, 5},
		{"an announcement including every dispatch", []step{announce(10, 0, 0, 1), shipped(3), shipped(2), announce(5, 5, 0, 2)}, 5},
		{"a pending count", []step{announce(10, 0, 0, 1), count(7)}, 7},
		{"a pending count, then a dispatch", []step{announce(10, 0, 0, 1), count(7), shipped(2)}, 5},
		{"a pending count after a dispatch, then a later announcement", []step{announce(10, 0, 0, 1), shipped(2), count(6), shipped(1), announce(8, 2, 0, 2)}, 5},
		{"a pending damage", []step{announce(10, 0, 0, 1), damage(2)}, 8},
		{"a pending damage survives an announcement without it", []step{announce(10, 0, 0, 1), damage(2), announce(10, 0, 0, 2)}, 8},
		{"a count then damage, both pending", []step{announce(10, 0, 0, 1), count(7), damage(2)}, 5},
		{"a count then damage, both pending after a later announcement", []step{announce(10, 0, 0, 1), count(7), damage(2), announce(12, 0, 0, 2)}, 5},
		{"an announcement including the count alone", []step{announce(10, 0, 0, 1), count(7), damage(2), announce(7, 0, 1, 2)}, 5},
		{"an announcement including the reports", []step{announce(10, 0, 0, 1), count(7), damage(2), announce(5, 0, 2, 2)}, 5},
		{"a book change after the reports", []step{announce(10, 0, 0, 1), count(7), damage(2), announce(5, 0, 2, 2), announce(9, 0, 2, 3)}, 9},
		{"stale announcement ignored", []step{announce(10, 0, 0, 3), announce(4, 0, 0, 2), announce(6, 0, 0, 3)}, 10},
		{"stale announcement ignored after reports", []step{announce(10, 0, 0, 1), damage(2), announce(8, 0, 1, 3), announce(10, 0, 0, 2)}, 8},
		{"version 0 always applied", []step{announce(10, 0, 0, 3), announce(4, 0, 0, 0)}, 4},
		{"scenario A", []step{announce(10, 0, 0, 1), shipped(3), damage(1), announce(7, 3, 0, 3), announce(6, 3, 1, 4)}, 6},
		// The allocation service may apply a dispatch made after a damage
		// report before the report: its announcement then includes the
		// dispatch but not the damage, which still takes its units out.
		{"a dispatch after a pending damage, announced first", []step{announce(7, 0, 0, 1), damage(3), shipped(2), announce(5, 2, 0, 2)}, 2},
		{"... then the damage announced", []step{announce(7, 0, 0, 1), damage(3), shipped(2), announce(5, 2, 0, 2), announce(2, 2, 1, 3)}, 2},
		{"a dispatch after a pending count, announced first", []step{announce(7, 0, 0, 1), count(4), shipped(2), announce(5, 2, 0, 2)}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := domain.NewBatch("b1", "LAMP")
			for _, s := range c.steps {
				s(t, b)
			}
			if b.Qty != c.want {
				t.Errorf("qty %d, want %d (announced %+v, dispatched %d, reports %+v)", b.Qty, c.want, b.Announced, b.Dispatched, b.Reports)
			}
		})
	}
}

func TestBatchScenarioAStepByStep(t *testing.T) {
	b := domain.NewBatch("b1", "LAMP")
	check := func(when string, want int) {
		t.Helper()
		if b.Qty != want {
			t.Fatalf("%s: qty %d, want %d", when, b.Qty, want)
		}
	}
	if !b.Announce(domain.Announcement{Qty: 10, Version: 1}) {
		t.Fatal("batch_created: no rise reported")
	}
	check("created", 10)
	ship(t, b, 3)
	check("dispatched 3", 7)
	if err := b.Damage(1, "dropped", t0); err != nil {
		t.Fatal(err)
	}
	check("1 damaged", 6)
	if b.Announce(domain.Announcement{Qty: 7, Dispatched: 3, ReportSeq: 0, Version: 3}) {
		t.Error("an announcement without the damage reported a rise")
	}
	check("announced 7 without the damage", 6)
	b.Announce(domain.Announcement{Qty: 6, Dispatched: 3, ReportSeq: 1, Version: 4})
	check("announced 6 with the damage", 6)
	if b.Announce(domain.Announcement{Qty: 7, Dispatched: 3, ReportSeq: 0, Version: 3}) {
		t.Error("a stale announcement reported a rise")
	}
	check("the stale announcement redelivered", 6)
	if b.Announced.Version != 4 {
		t.Errorf("announced %+v, want version 4", b.Announced)
	}
}

func TestAnnounceReportsARise(t *testing.T) {
	b := domain.NewBatch("b1", "LAMP")
	for i, c := range []struct {
		a    domain.Announcement
		rose bool
	}{
		{domain.Announcement{Qty: 5, Version: 1}, true},
		{domain.Announcement{Qty: 5, Version: 2}, false},
		{domain.Announcement{Qty: 3, Version: 3}, false},
		{domain.Announcement{Qty: 9, Version: 2}, false}, // stale
		{domain.Announcement{Qty: 9, Version: 4}, true},
	} {
		if got := b.Announce(c.a); got != c.rose {
			t.Errorf("announcement %d %+v: rose %v, want %v", i, c.a, got, c.rose)
		}
	}
	if b.Qty != 9 || !b.Changed() {
		t.Errorf("qty %d changed %v", b.Qty, b.Changed())
	}
	fresh := domain.NewBatch("b2", "LAMP")
	fresh.Announce(domain.Announcement{Qty: 0, Version: 1})
	if fresh.Announce(domain.Announcement{Qty: 0, Version: 1}) || fresh.Qty != 0 {
		t.Errorf("redelivered announcement: qty %d", fresh.Qty)
	}
}

func TestReportsAreNumbered(t *testing.T) {
	b := domain.NewBatch("b1", "LAMP")
	b.Announce(domain.Announcement{Qty: 10, Version: 1})
	ship(t, b, 3)
	if err := b.Damage(1, "leak", t0); err != nil {
		t.Fatal(err)
	}
	if err := b.Damage(7, "", t0); !errors.Is(err, fail.Conflict) { // 6 left
		t.Fatalf("damaging 7 of 6: %v, want a conflict", err)
	}
	if err := b.Count(-1, "", t0); !errors.Is(err, fail.Invalid) {
		t.Fatalf("negative count: %v", err)
	}
	ship(t, b, 2)
	if err := b.Count(5, "recount", t0); err != nil {
		t.Fatal(err)
	}
	if err := b.Damage(5, "", t0); err != nil {
		t.Fatal(err)
	}
	want := []any{
		domain.StockReported{BatchRef: "b1", SKU: "LAMP", Kind: domain.ReportDamage, Qty: 1, Seq: 1, Dispatched: 3, Note: "leak"},
		domain.StockReported{BatchRef: "b1", SKU: "LAMP", Kind: domain.ReportCount, Qty: 5, Seq: 2, Dispatched: 5, Note: "recount"},
		domain.StockReported{BatchRef: "b1", SKU: "LAMP", Kind: domain.ReportDamage, Qty: 5, Seq: 3, Dispatched: 5},
	}
	if got := b.Events(); !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n%+v\nwant\n%+v", got, want)
	}
	var seqs, dispatched, results []int
	for _, r := range b.Reports {
		seqs, dispatched, results = append(seqs, r.Seq), append(dispatched, r.Dispatched), append(results, r.Result)
	}
	if !reflect.DeepEqual(seqs, []int{1, 2, 3}) || !reflect.DeepEqual(dispatched, []int{3, 5, 5}) || !reflect.DeepEqual(results, []int{6, 5, 0}) {
		t.Errorf("reports: seq %v dispatched %v result %v", seqs, dispatched, results)
	}
	if b.Qty != 0 {
		t.Errorf("qty %d, want 0", b.Qty)
	}
	body, _ := json.Marshal(want[0])
	if string(body) != `{"batchref":"b1","sku":"LAMP","kind":"damage","qty":1,"seq":1,"dispatched":3,"note":"leak"}` {
		t.Errorf("stock_reported payload %s", body)
	}
	if body, _ := json.Marshal(want[2]); string(body) != `{"batchref":"b1","sku":"LAMP","kind":"damage","qty":5,"seq":3,"dispatched":5}` {
		t.Errorf("stock_reported payload %s", body)
	}
}

func TestBatchSurvivesTheStore(t *testing.T) {
	b := domain.NewBatch("b1", "LAMP")
	b.Announce(domain.Announcement{Qty: 10, Version: 1})
	ship(t, b, 3)
	if err := b.Damage(1, "", t0); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(b)
	var kept domain.Batch
	if err := json.Unmarshal(body, &kept); err != nil {
		t.Fatal(err)
	}
	kept.Loaded()
	if kept.Qty != 6 || kept.Announced != b.Announced || kept.Dispatched != 3 || len(kept.Reports) != 1 {
		t.Fatalf("kept %+v, want %+v", kept, b)
	}
	kept.Announce(domain.Announcement{Qty: 7, Dispatched: 3, Version: 3})
	if kept.Qty != 6 {
		t.Errorf("qty %d after an announcement without the damage, want 6", kept.Qty)
	}
}

func TestLegacyBatchDocument(t *testing.T) {
	// A batch kept by an earlier version: its quantity, and reports
	// without numbers, already counted in it.
	const doc = `{"batchref":"b1","sku":"LAMP","qty":10,"reports":[{"at":"2026-11-22T09:00:00Z","kind":"damage","qty":2,"result":10}]}`
	load := func(t *testing.T) *domain.Batch {
		t.Helper()
		var b domain.Batch
		if err := json.Unmarshal([]byte(doc), &b); err != nil {
			t.Fatal(err)
		}
		b.Loaded()
		return &b
	}
	t.Run("loaded", func(t *testing.T) {
		b := load(t)
		if b.Qty != 10 || b.Announced.Qty != 10 || b.Announced.Version != 0 {
			t.Fatalf("loaded %+v", b)
		}
		b.Loaded() // twice: no change
		if b.Qty != 10 || b.Announced.Qty != 10 {
			t.Fatalf("loaded twice %+v", b)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		b := load(t)
		if err := b.Damage(1, "", t0); err != nil {
			t.Fatal(err)
		}
		if b.Qty != 9 {
			t.Errorf("qty %d, want 9 (the old report counted once)", b.Qty)
		}
		want := domain.StockReported{BatchRef: "b1", SKU: "LAMP", Kind: domain.ReportDamage, Qty: 1, Seq: 1}
		if evs := b.Events(); len(evs) != 1 || evs[0] != want {
			t.Errorf("events %+v, want %+v", evs, want)
		}
	})
	t.Run("dispatched from", func(t *testing.T) {
		b := load(t)
		ship(t, b, 3)
		if b.Qty != 7 {
			t.Errorf("qty %d, want 7", b.Qty)
		}
	})
	t.Run("announced", func(t *testing.T) {
		b := load(t)
		b.Announce(domain.Announcement{Qty: 4, Version: 2})
		if b.Qty != 4 {
			t.Errorf("qty %d, want 4", b.Qty)
		}
	})
}
