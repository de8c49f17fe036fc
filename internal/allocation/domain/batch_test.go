package domain_test

import (
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

func TestBatchCanAllocate(t *testing.T) {
	tests := []struct {
		name  string
		batch domain.Batch
		line  domain.OrderLine
		want  bool
	}{
		{
			name:  "available greater than required",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 20},
			line:  line("o1", "ELEGANT-LAMP", 2),
			want:  true,
		},
		{
			name:  "available smaller than required",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 2},
			line:  line("o1", "ELEGANT-LAMP", 20),
			want:  false,
		},
		{
			name:  "available equal to required",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 2},
			line:  line("o1", "ELEGANT-LAMP", 2),
			want:  true,
		},
		{
			name:  "available one short of required",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 2},
			line:  line("o1", "ELEGANT-LAMP", 3),
			want:  false,
		},
		{
			name:  "sku mismatch with plenty of stock",
			batch: domain.Batch{Ref: "b1", SKU: "UNCOMFORTABLE-CHAIR", Purchased: 100},
			line:  line("o1", "EXPENSIVE-TOASTER", 10),
			want:  false,
		},
		{
			name:  "sku match is case sensitive",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 100},
			line:  line("o1", "elegant-lamp", 1),
			want:  false,
		},
		{
			name:  "shipment batch can allocate too",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 5, ETA: tomorrow},
			line:  line("o1", "ELEGANT-LAMP", 5),
			want:  true,
		},
		{
			name:  "allocated quantity counts even when its lines are not loaded",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 10, Allocated: 8},
			line:  line("o1", "ELEGANT-LAMP", 3),
			want:  false,
		},
		{
			name:  "fits exactly in what is left after unloaded allocations",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 10, Allocated: 8},
			line:  line("o1", "ELEGANT-LAMP", 2),
			want:  true,
		},
		{
			name:  "batch that shrank below its allocations takes nothing",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP", Purchased: 5, Allocated: 8},
			line:  line("o1", "ELEGANT-LAMP", 1),
			want:  false,
		},
		{
			name:  "empty batch",
			batch: domain.Batch{Ref: "b1", SKU: "ELEGANT-LAMP"},
			line:  line("o1", "ELEGANT-LAMP", 1),
			want:  false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.batch
			if got := b.CanAllocate(tt.line); got != tt.want {
				t.Errorf("CanAllocate(%+v) on %+v = %v, want %v", tt.line, tt.batch, got, tt.want)
			}
		})
	}
}

func TestBatchAvailable(t *testing.T) {
	tests := []struct {
		name      string
		purchased int
		allocated int
		want      int
	}{
		{"nothing allocated", 20, 0, 20},
		{"partly allocated", 20, 2, 18},
		{"fully allocated", 20, 20, 0},
		{"shrank below allocated", 5, 8, -3},
		{"empty", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := domain.Batch{Ref: "b1", SKU: "SKU", Purchased: tt.purchased, Allocated: tt.allocated}
			if got := b.Available(); got != tt.want {
				t.Errorf("Available() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBatchInWarehouse(t *testing.T) {
	tests := []struct {
		name string
		eta  time.Time
		want bool
	}{
		{"zero eta is warehouse stock", noETA, true},
		{"future eta is a shipment", tomorrow, false},
		{"past eta is still a shipment", today.AddDate(-1, 0, 0), false},
		{"eta in another zone is a shipment", tomorrow.In(time.FixedZone("X", 3600)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatch("b1", "SKU", 1, tt.eta)
			if got := b.InWarehouse(); got != tt.want {
				t.Errorf("InWarehouse() = %v, want %v", got, tt.want)
			}
		})
	}
}

// Allocation goes through the aggregate; this checks what it does to a batch.
func TestAllocatingReducesAvailableQuantity(t *testing.T) {
	steps := []struct {
		line          domain.OrderLine
		wantErr       bool
		wantAvailable int
	}{
		{line("o1", "SMALL-TABLE", 2), false, 18},
		{line("o2", "SMALL-TABLE", 10), false, 8},
		{line("o3", "SMALL-TABLE", 9), true, 8},  // smaller than required
		{line("o4", "SMALL-TABLE", 8), false, 0}, // equal to required
		{line("o5", "SMALL-TABLE", 1), true, 0},
	}
	p := domain.NewProduct("SMALL-TABLE", 0, newBatch("batch-001", "SMALL-TABLE", 20, noETA))
	b := mustBatch(t, p, "batch-001")
	var allocated []domain.OrderLine
	for _, s := range steps {
		_, err := p.Allocate(s.line)
		if gotErr := err != nil; gotErr != s.wantErr {
			t.Fatalf("Allocate(%+v) error = %v, want error: %v", s.line, err, s.wantErr)
		}
		if err == nil {
			allocated = append(allocated, s.line)
		}
		if got := b.Available(); got != s.wantAvailable {
			t.Errorf("after Allocate(%+v): Available() = %d, want %d", s.line, got, s.wantAvailable)
		}
		if got, want := b.Allocated, b.Purchased-s.wantAvailable; got != want {
			t.Errorf("after Allocate(%+v): Allocated = %d, want %d", s.line, got, want)
		}
	}
	assertLines(t, b, allocated)
}
