package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/fail"
)

func TestCommandValidate(t *testing.T) {
	maxRef := strings.Repeat("x", domain.MaxRefLen)
	tooLong := strings.Repeat("x", domain.MaxRefLen+1)
	// 128 two-byte runes: 128 characters but 256 bytes.
	tooLongBytes := strings.Repeat("é", (domain.MaxRefLen+1)/2)

	tests := []struct {
		name  string
		cmd   domain.Command
		valid bool
	}{
		// CreateBatch
		{"CreateBatch warehouse", domain.CreateBatch{Ref: "b1", SKU: "LAMP", Qty: 10}, true},
		{"CreateBatch shipment", domain.CreateBatch{Ref: "b1", SKU: "LAMP", Qty: 10, ETA: tomorrow}, true},
		{"CreateBatch qty 1", domain.CreateBatch{Ref: "b1", SKU: "LAMP", Qty: 1}, true},
		{"CreateBatch ids at MaxRefLen", domain.CreateBatch{Ref: maxRef, SKU: maxRef, Qty: 1}, true},
		{"CreateBatch empty ref", domain.CreateBatch{Ref: "", SKU: "LAMP", Qty: 10}, false},
		{"CreateBatch blank ref", domain.CreateBatch{Ref: " \t\n", SKU: "LAMP", Qty: 10}, false},
		{"CreateBatch empty sku", domain.CreateBatch{Ref: "b1", SKU: "", Qty: 10}, false},
		{"CreateBatch blank sku", domain.CreateBatch{Ref: "b1", SKU: "   ", Qty: 10}, false},
		{"CreateBatch ref too long", domain.CreateBatch{Ref: tooLong, SKU: "LAMP", Qty: 10}, false},
		{"CreateBatch sku too long", domain.CreateBatch{Ref: "b1", SKU: tooLong, Qty: 10}, false},
		{"CreateBatch sku too long in bytes", domain.CreateBatch{Ref: "b1", SKU: tooLongBytes, Qty: 10}, false},
		{"CreateBatch zero qty", domain.CreateBatch{Ref: "b1", SKU: "LAMP", Qty: 0}, false},
		{"CreateBatch negative qty", domain.CreateBatch{Ref: "b1", SKU: "LAMP", Qty: -1}, false},
		{"CreateBatch zero value", domain.CreateBatch{}, false},

		// Allocate
		{"Allocate", domain.Allocate{OrderID: "o1", SKU: "LAMP", Qty: 3}, true},
		{"Allocate ids at MaxRefLen", domain.Allocate{OrderID: maxRef, SKU: maxRef, Qty: 3}, true},
		{"Allocate ids padded with spaces", domain.Allocate{OrderID: " o1 ", SKU: " LAMP ", Qty: 3}, true},
		{"Allocate empty orderid", domain.Allocate{OrderID: "", SKU: "LAMP", Qty: 3}, false},
		{"Allocate blank orderid", domain.Allocate{OrderID: "\t", SKU: "LAMP", Qty: 3}, false},
		{"Allocate empty sku", domain.Allocate{OrderID: "o1", SKU: "", Qty: 3}, false},
		{"Allocate blank sku", domain.Allocate{OrderID: "o1", SKU: " ", Qty: 3}, false},
		{"Allocate orderid too long", domain.Allocate{OrderID: tooLong, SKU: "LAMP", Qty: 3}, false},
		{"Allocate sku too long", domain.Allocate{OrderID: "o1", SKU: tooLong, Qty: 3}, false},
		{"Allocate zero qty", domain.Allocate{OrderID: "o1", SKU: "LAMP", Qty: 0}, false},
		{"Allocate negative qty", domain.Allocate{OrderID: "o1", SKU: "LAMP", Qty: -3}, false},
		{"Allocate zero value", domain.Allocate{}, false},

		// ChangeBatchQuantity
		{"ChangeBatchQuantity", domain.ChangeBatchQuantity{Ref: "b1", Qty: 5}, true},
		{"ChangeBatchQuantity qty 0", domain.ChangeBatchQuantity{Ref: "b1", Qty: 0}, true},
		{"ChangeBatchQuantity ref at MaxRefLen", domain.ChangeBatchQuantity{Ref: maxRef, Qty: 5}, true},
		{"ChangeBatchQuantity negative qty", domain.ChangeBatchQuantity{Ref: "b1", Qty: -1}, false},
		{"ChangeBatchQuantity empty ref", domain.ChangeBatchQuantity{Ref: "", Qty: 5}, false},
		{"ChangeBatchQuantity blank ref", domain.ChangeBatchQuantity{Ref: "  ", Qty: 5}, false},
		{"ChangeBatchQuantity ref too long", domain.ChangeBatchQuantity{Ref: tooLong, Qty: 5}, false},
		{"ChangeBatchQuantity empty ref and negative qty", domain.ChangeBatchQuantity{Ref: "", Qty: -5}, false},
		{"ChangeBatchQuantity zero value", domain.ChangeBatchQuantity{}, false},

		// Deallocate
		{"Deallocate", domain.Deallocate{OrderID: "o1", SKU: "LAMP", Qty: 3}, true},
		{"Deallocate ids at MaxRefLen", domain.Deallocate{OrderID: maxRef, SKU: maxRef, Qty: 3}, true},
		{"Deallocate empty orderid", domain.Deallocate{OrderID: "", SKU: "LAMP", Qty: 3}, false},
		{"Deallocate blank orderid", domain.Deallocate{OrderID: "\n", SKU: "LAMP", Qty: 3}, false},
		{"Deallocate empty sku", domain.Deallocate{OrderID: "o1", SKU: "", Qty: 3}, false},
		{"Deallocate blank sku", domain.Deallocate{OrderID: "o1", SKU: "\t ", Qty: 3}, false},
		{"Deallocate orderid too long", domain.Deallocate{OrderID: tooLong, SKU: "LAMP", Qty: 3}, false},
		{"Deallocate sku too long", domain.Deallocate{OrderID: "o1", SKU: tooLong, Qty: 3}, false},
		{"Deallocate zero qty", domain.Deallocate{OrderID: "o1", SKU: "LAMP", Qty: 0}, false},
		{"Deallocate negative qty", domain.Deallocate{OrderID: "o1", SKU: "LAMP", Qty: -3}, false},
		{"Deallocate zero value", domain.Deallocate{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate()
			if tt.valid {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !errors.Is(err, fail.Invalid) {
				t.Errorf("Validate() = %v, want an error wrapping ErrInvalid", err)
			}
			if err.Error() == fail.Invalid.Error() {
				t.Errorf("Validate() = %q says nothing about what is wrong", err)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	want := line("o1", "LAMP", 3)
	if diff := cmp.Diff(want, domain.Allocate{OrderID: "o1", SKU: "LAMP", Qty: 3}.Line()); diff != "" {
		t.Errorf("Allocate.Line() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, domain.Deallocate{OrderID: "o1", SKU: "LAMP", Qty: 3}.Line()); diff != "" {
		t.Errorf("Deallocate.Line() mismatch (-want +got):\n%s", diff)
	}
}

// Identifiers that a database cannot keep as text are refused up front.
func TestIdentifiersMustBeText(t *testing.T) {
	for _, id := range []string{"a\x00b", "\xff\xfe", "tab\there", "new\nline"} {
		if err := (domain.Allocate{OrderID: id, SKU: "S", Qty: 1}).Validate(); !errors.Is(err, fail.Invalid) {
			t.Errorf("orderid %q: Validate = %v, want ErrInvalid", id, err)
		}
		if err := domain.ValidateRef("sku", id); !errors.Is(err, fail.Invalid) {
			t.Errorf("ValidateRef(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if err := domain.ValidateRef("sku", "RED-CHAIR é"); err != nil {
		t.Errorf("ValidateRef of a plain sku: %v", err)
	}
}
