package sqlite

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/messaging"
)

func TestSortBySeq(t *testing.T) {
	tests := []struct {
		name string
		seqs []int64
	}{
		{"empty", nil},
		{"one", []int64{7}},
		{"sorted", []int64{1, 2, 3, 4}},
		{"reversed", []int64{9, 7, 5, 3, 1}},
		{"scrambled", []int64{40, 10, 30, 20, 50, 5}},
		{"gaps", []int64{1000, 3, 77}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs := make([]messaging.Envelope, len(tt.seqs))
			seqs := make([]int64, len(tt.seqs))
			for i, s := range tt.seqs {
				envs[i] = messaging.Envelope{ID: fmt.Sprint(s)}
				seqs[i] = s
			}
			sortBySeq(envs, seqs)
			for i := 1; i < len(seqs); i++ {
				if seqs[i-1] > seqs[i] {
					t.Errorf("seqs not sorted: %v", seqs)
				}
			}
			for i := range envs {
				if want := fmt.Sprint(seqs[i]); envs[i].ID != want {
					t.Errorf("envs[%d] = %s, want %s (moved with its seq)", i, envs[i].ID, want)
				}
			}
			if len(envs) != len(tt.seqs) {
				t.Errorf("lost envelopes")
			}
		})
	}
	// The envelopes keep all their fields.
	envs := []messaging.Envelope{{ID: "b", Channel: "cb", Key: "kb"}, {ID: "a", Channel: "ca", Key: "ka"}}
	sortBySeq(envs, []int64{2, 1})
	want := []messaging.Envelope{{ID: "a", Channel: "ca", Key: "ka"}, {ID: "b", Channel: "cb", Key: "kb"}}
	if diff := cmp.Diff(want, envs); diff != "" {
		t.Errorf("sorted (-want +got):\n%s", diff)
	}
}
