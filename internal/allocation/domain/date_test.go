package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/fail"
)

func TestParseDate(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "2011-01-02", want: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)},
		{in: "2024-02-29", want: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{in: "1999-12-31", want: time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)},
		{in: "9999-12-31", want: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
		{in: "", wantErr: true},
		{in: "2011-1-2", wantErr: true},
		{in: "2011-01-2", wantErr: true},
		{in: "11-01-02", wantErr: true},
		{in: "2011/01/02", wantErr: true},
		{in: "02/01/2011", wantErr: true},
		{in: "2011-13-01", wantErr: true},
		{in: "2011-00-10", wantErr: true},
		{in: "2011-01-32", wantErr: true},
		{in: "2011-01-00", wantErr: true},
		{in: "2023-02-29", wantErr: true},
		{in: "2011-04-31", wantErr: true},
		{in: " 2011-01-02", wantErr: true},
		{in: "2011-01-02 ", wantErr: true},
		{in: "2011-01-02T00:00:00Z", wantErr: true},
		{in: "tomorrow", wantErr: true},
		{in: "null", wantErr: true},
		{in: `"2011-01-02"`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := domain.ParseDate(tt.in)
			if tt.wantErr {
				if !errors.Is(err, fail.Invalid) {
					t.Errorf("ParseDate(%q) error = %v, want one wrapping ErrInvalid", tt.in, err)
				}
				if !got.IsZero() {
					t.Errorf("ParseDate(%q) = %v with its error, want zero", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDate(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(domain.Date{Time: tt.want}, got); diff != "" {
				t.Errorf("ParseDate(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if got.Location() != time.UTC {
				t.Errorf("ParseDate(%q) location = %v, want UTC", tt.in, got.Location())
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

func TestDateString(t *testing.T) {
	tests := []struct {
		name string
		d    domain.Date
		want string
	}{
		{"zero", domain.Date{}, ""},
		{"date", domain.Date{Time: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)}, "2011-01-02"},
		{"time of day is dropped", domain.Date{Time: time.Date(2011, 1, 2, 23, 59, 0, 0, time.UTC)}, "2011-01-02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

type withETA struct {
	ETA domain.Date `json:"eta"`
}

func TestDateMarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		d    domain.Date
		want string
	}{
		{"zero is null", domain.Date{}, `{"eta":null}`},
		{"date", domain.Date{Time: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)}, `{"eta":"2011-01-02"}`},
		{"time of day is dropped", domain.Date{Time: time.Date(2011, 1, 2, 15, 4, 5, 6, time.UTC)}, `{"eta":"2011-01-02"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(withETA{tt.d})
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s, want %s", b, tt.want)
			}
		})
	}
}

func TestDateUnmarshalJSON(t *testing.T) {
	preset := domain.Date{Time: time.Date(2000, 6, 15, 0, 0, 0, 0, time.UTC)}
	tests := []struct {
		name    string
		in      string
		want    domain.Date
		wantErr bool
	}{
		{name: "date", in: `{"eta":"2011-01-02","version":0}`, want: domain.Date{Time: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{name: "null clears", in: `{"eta":null,"version":0}`, want: domain.Date{}},
		{name: "missing keeps", in: `{}`, want: preset},
		{name: "whitespace around value", in: `{"eta":  "2011-01-02" }`, want: domain.Date{Time: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{name: "number", in: `{"eta":20110102}`, wantErr: true},
		{name: "bool", in: `{"eta":true}`, wantErr: true},
		{name: "object", in: `{"eta":{}}`, wantErr: true},
		{name: "array", in: `{"eta":["2011-01-02"]}`, wantErr: true},
		{name: "empty string", in: `{"eta":""}`, wantErr: true},
		{name: "bad format", in: `{"eta":"02/01/2011"}`, wantErr: true},
		{name: "timestamp", in: `{"eta":"2011-01-02T00:00:00Z"}`, wantErr: true},
		{name: "impossible day", in: `{"eta":"2011-02-30"}`, wantErr: true},
		{name: "quoted null", in: `{"eta":"null"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := withETA{preset}
			err := json.Unmarshal([]byte(tt.in), &v)
			if tt.wantErr {
				if !errors.Is(err, fail.Invalid) {
					t.Errorf("Unmarshal(%s) error = %v, want one wrapping ErrInvalid", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, v.ETA); diff != "" {
				t.Errorf("Unmarshal(%s) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// UnmarshalJSON called directly, with bytes encoding/json would never pass.
func TestDateUnmarshalJSONRaw(t *testing.T) {
	tests := []string{``, `"`, `x`, `"2011-01-02`, `2011-01-02"`, `'2011-01-02'`, `nul`, `NULL`, ` null`}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			d := domain.Date{Time: today}
			err := d.UnmarshalJSON([]byte(in))
			if !errors.Is(err, fail.Invalid) {
				t.Errorf("UnmarshalJSON(%q) error = %v, want one wrapping ErrInvalid", in, err)
			}
			if !d.Equal(today) {
				t.Errorf("UnmarshalJSON(%q) changed the date to %v on error", in, d)
			}
		})
	}
}

func TestDateJSONRoundTrip(t *testing.T) {
	tests := []domain.Date{
		{},
		{Time: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
	}
	for _, d := range tests {
		t.Run(d.String(), func(t *testing.T) {
			b, err := json.Marshal(withETA{d})
			if err != nil {
				t.Fatal(err)
			}
			var got withETA
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if diff := cmp.Diff(d, got.ETA); diff != "" {
				t.Errorf("round trip through %s mismatch (-want +got):\n%s", b, diff)
			}
		})
	}
}

func TestBatchCreatedJSON(t *testing.T) {
	tests := []struct {
		name string
		ev   domain.BatchCreated
		want string
	}{
		{
			name: "warehouse",
			ev:   domain.BatchCreated{Ref: "b1", SKU: "LAMP", Qty: 10},
			want: `{"ref":"b1","sku":"LAMP","qty":10,"eta":null,"version":0}`,
		},
		{
			name: "shipment",
			ev:   domain.BatchCreated{Ref: "b1", SKU: "LAMP", Qty: 10, ETA: domain.Date{Time: time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC)}},
			want: `{"ref":"b1","sku":"LAMP","qty":10,"eta":"2011-01-02","version":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s, want %s", b, tt.want)
			}
			var back domain.BatchCreated
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.ev, back); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzDateUnmarshalJSON(f *testing.F) {
	for _, seed := range []string{
		`null`, `"2011-01-02"`, `"2024-02-29"`, `"2023-02-29"`, `"9999-12-31"`,
		`"0001-01-01"`, `"0000-01-01"`, `""`, `"`, ``, `20110102`, `true`,
		`"2011-1-2"`, `"2011-01-02T00:00:00Z"`, `"02/01/2011"`, `"+2011-01-02"`,
		`"2011-01-02"x`, `"\u0032011-01-02"`, `{}`, `[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var d domain.Date
		if err := d.UnmarshalJSON(in); err != nil {
			if !errors.Is(err, fail.Invalid) {
				t.Fatalf("UnmarshalJSON(%q) error = %v, want one wrapping ErrInvalid", in, err)
			}
			if !d.IsZero() {
				t.Fatalf("UnmarshalJSON(%q) failed but set the date to %v", in, d)
			}
			return
		}
		out, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of %v (parsed from %q): %v", d, in, err)
		}
		if !json.Valid(out) {
			t.Fatalf("MarshalJSON of %v produced invalid JSON %q", d, out)
		}
		var back domain.Date
		if err := back.UnmarshalJSON(out); err != nil {
			t.Fatalf("UnmarshalJSON(%q) (from MarshalJSON of %q): %v", out, in, err)
		}
		if !back.Equal(d.Time) {
			t.Fatalf("round trip %q -> %v -> %q -> %v", in, d, out, back)
		}
		if !d.IsZero() && !bytes.ContainsRune(in, '\\') && !bytes.Equal(out, in) {
			t.Fatalf("UnmarshalJSON(%q) then MarshalJSON gave %q, want the input back", in, out)
		}
	})
}

// A valid JSON encoding of a valid date that uses escapes is a valid date.
func TestDateUnmarshalJSONEscapedString(t *testing.T) {
	var v withETA
	if err := json.Unmarshal([]byte(`{"eta":"2011\u002d01-02"}`), &v); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if want := time.Date(2011, 1, 2, 0, 0, 0, 0, time.UTC); !v.ETA.Equal(want) {
		t.Errorf("ETA = %v, want %v", v.ETA, want)
	}
}
