package decode_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/fail"
)

type inner struct {
	N int `json:"n"`
}

type item struct {
	SKU    string    `json:"sku"`
	Qty    int       `json:"qty"`
	Small  uint8     `json:"small"`
	Price  float64   `json:"price"`
	Active bool      `json:"active"`
	Tags   []string  `json:"tags"`
	ETA    time.Time `json:"eta"`
	Inner  inner     `json:"inner"`
	Ref    *string   `json:"ref"`
}

func ptr[T any](v T) *T { return &v }

func TestObject(t *testing.T) {
	eta := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name     string
		data     string
		required []string
		want     item   // when wantErr is ""
		wantErr  string // the exact message
	}{
		// Accepted.
		{
			name:     "every field",
			data:     `{"sku":"LAMP","qty":3,"small":255,"price":1.5,"active":true,"tags":["a","b"],"eta":"2024-05-06T07:08:09Z","inner":{"n":4},"ref":"r"}`,
			required: []string{"sku", "qty"},
			want:     item{SKU: "LAMP", Qty: 3, Small: 255, Price: 1.5, Active: true, Tags: []string{"a", "b"}, ETA: eta, Inner: inner{4}, Ref: ptr("r")},
		},
		{name: "extra fields allowed", data: `{"sku":"A","unknown":{"deep":[1,2]},"x":null}`, required: []string{"sku"}, want: item{SKU: "A"}},
		{name: "nothing required", data: `{}`, want: item{}},
		{name: "null optional field", data: `{"sku":"A","qty":null,"ref":null}`, required: []string{"sku"}, want: item{SKU: "A"}},
		{name: "empty string is present", data: `{"sku":""}`, required: []string{"sku"}, want: item{}},
		{name: "zero is present", data: `{"qty":0}`, required: []string{"qty"}, want: item{}},
		{name: "false is present", data: `{"active":false}`, required: []string{"active"}, want: item{}},
		{name: "whitespace around", data: " \n\t{ \"sku\" : \"A\" }\n ", required: []string{"sku"}, want: item{SKU: "A"}},
		{name: "integral exponent into float", data: `{"price":1e3}`, want: item{Price: 1000}},
		{name: "negative int", data: `{"qty":-7}`, want: item{Qty: -7}},
		{name: "integer into float", data: `{"price":2}`, want: item{Price: 2}},
		{name: "field names fold case", data: `{"SKU":"A","Qty":2}`, want: item{SKU: "A", Qty: 2}},

		// Malformed JSON.
		{name: "empty body", data: ``, wantErr: "malformed JSON: unexpected end of JSON input (at byte 0)"},
		{name: "only whitespace", data: "  ", wantErr: "malformed JSON: unexpected end of JSON input (at byte 2)"},
		{name: "truncated", data: `{"sku":`, wantErr: "malformed JSON: unexpected end of JSON input (at byte 7)"},
		{name: "unterminated string", data: `{"sku":"A`, wantErr: "malformed JSON: unexpected end of JSON input (at byte 9)"},
		{name: "trailing comma", data: `{"sku":"A",}`, wantErr: "malformed JSON: invalid character '}' looking for beginning of object key string (at byte 12)"},
		{name: "single quotes", data: `{'sku':'A'}`, wantErr: "malformed JSON: invalid character '\\'' looking for beginning of object key string (at byte 2)"},
		{name: "trailing garbage", data: `{} x`, wantErr: "malformed JSON: invalid character 'x' after top-level value (at byte 4)"},
		{name: "two objects", data: `{"sku":"A"}{}`, wantErr: "malformed JSON: invalid character '{' after top-level value (at byte 12)"},
		{name: "bare word", data: `sku`, wantErr: "malformed JSON: invalid character 's' looking for beginning of value (at byte 1)"},

		// Not an object.
		{name: "null body", data: `null`, wantErr: "body must be a JSON object, got null"},
		{name: "null body with spaces", data: ` null `, wantErr: "body must be a JSON object, got null"},
		{name: "array", data: `[{"sku":"A"}]`, wantErr: "body must be a JSON object, got array"},
		{name: "string", data: `"sku"`, wantErr: "body must be a JSON object, got string"},
		{name: "number", data: `42`, wantErr: "body must be a JSON object, got number"},
		{name: "bool", data: `true`, wantErr: "body must be a JSON object, got bool"},

		// Fields of the wrong type.
		{name: "number for string", data: `{"sku":1}`, wantErr: "field sku must be a string, got number"},
		{name: "object for string", data: `{"sku":{}}`, wantErr: "field sku must be a string, got object"},
		{name: "string for int", data: `{"qty":"3"}`, wantErr: "field qty must be an integer, got string"},
		{name: "bool for int", data: `{"qty":true}`, wantErr: "field qty must be an integer, got bool"},
		{name: "string for bool", data: `{"active":"yes"}`, wantErr: "field active must be a boolean, got string"},
		{name: "string for float", data: `{"price":"1.5"}`, wantErr: "field price must be a number, got string"},
		{name: "nested field", data: `{"inner":{"n":"x"}}`, wantErr: "field inner.n must be an integer, got string"},
		{name: "string for pointer to string", data: `{"ref":5}`, wantErr: "field ref must be a string, got number"},
		{name: "not a time", data: `{"eta":"tomorrow"}`, wantErr: `parsing time "tomorrow" as "2006-01-02T15:04:05Z07:00": cannot parse "tomorrow" as "2006"`},

		// Float into int rejected.
		{name: "fraction into int", data: `{"qty":1.5}`, wantErr: "field qty must be an integer, got number 1.5"},
		{name: "exponent into int", data: `{"qty":1e3}`, wantErr: "field qty must be an integer, got number 1e3"},
		{name: "integral float into int", data: `{"qty":2.0}`, wantErr: "field qty must be an integer, got number 2.0"},
		{name: "overflow", data: `{"small":256}`, wantErr: "field small must be an integer, got number 256"},
		{name: "negative into unsigned", data: `{"small":-1}`, wantErr: "field small must be an integer, got number -1"},
		{name: "int overflow", data: `{"qty":99999999999999999999}`, wantErr: "field qty must be an integer, got number 99999999999999999999"},

		// Missing or null required fields.
		{name: "missing field", data: `{"qty":1}`, required: []string{"sku"}, wantErr: "missing field sku"},
		{name: "missing fields, in the order required", data: `{"price":1}`, required: []string{"sku", "qty", "price"}, wantErr: "missing field sku, qty"},
		{name: "null required field", data: `{"sku":null}`, required: []string{"sku"}, wantErr: "missing field sku"},
		{name: "null required field with spaces", data: `{"sku": null , "qty":1}`, required: []string{"sku"}, wantErr: "missing field sku"},
		{name: "last duplicate wins", data: `{"sku":"A","sku":null}`, required: []string{"sku"}, wantErr: "missing field sku"},
		{name: "required names match exactly", data: `{"SKU":"A"}`, required: []string{"sku"}, wantErr: "missing field sku"},
		{name: "missing is reported before wrong types", data: `{"qty":"x"}`, required: []string{"sku"}, wantErr: "missing field sku"},
		{name: "empty object", data: `{}`, required: []string{"sku"}, wantErr: "missing field sku"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got item
			err := decode.Object([]byte(tt.data), &got, tt.required...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Object(%s) = %v", tt.data, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Object(%s) (-want +got):\n%s", tt.data, diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Object(%s) = nil, want %q", tt.data, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("Object(%s) error\n got: %s\nwant: %s", tt.data, err, tt.wantErr)
			}
			if !errors.Is(err, fail.Invalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var de *decode.Error
			if !errors.As(err, &de) || de.Reason != err.Error() {
				t.Errorf("errors.As(%v, *decode.Error) = %v, %+v", err, de != nil, de)
			}
			// Wrapped, it still matches.
			if !errors.Is(fmt.Errorf("handling request: %w", err), fail.Invalid) {
				t.Errorf("wrapped error does not match ErrInvalid")
			}
		})
	}
}

func TestObjectMissingLeavesDstAlone(t *testing.T) {
	got := item{SKU: "keep", Qty: 9}
	if err := decode.Object([]byte(`{"qty":1}`), &got, "sku"); err == nil {
		t.Fatal("Object = nil error")
	}
	if diff := cmp.Diff(item{SKU: "keep", Qty: 9}, got); diff != "" {
		t.Errorf("dst changed by a refused body (-want +got):\n%s", diff)
	}
}

// validated has its own UnmarshalJSON, whose error Object passes on.
type validated struct{ V string }

func (v *validated) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if !strings.HasPrefix(s, "ok") {
		return fmt.Errorf("value %q must start with ok", s)
	}
	v.V = s
	return nil
}

func TestObjectCustomUnmarshaler(t *testing.T) {
	var dst struct {
		F validated `json:"f"`
	}
	if err := decode.Object([]byte(`{"f":"ok then"}`), &dst, "f"); err != nil || dst.F.V != "ok then" {
		t.Fatalf("Object = %v, %+v", err, dst)
	}
	err := decode.Object([]byte(`{"f":"bad"}`), &dst, "f")
	if err == nil || err.Error() != `value "bad" must start with ok` || !errors.Is(err, fail.Invalid) {
		t.Errorf("Object with a refusing field = %v, want its own message, matching ErrInvalid", err)
	}
}

func TestObjectIntoMap(t *testing.T) {
	var m map[string]any
	if err := decode.Object([]byte(`{"a":1,"b":"x"}`), &m, "a"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"a": 1.0, "b": "x"}, m); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestErrorType(t *testing.T) {
	e := &decode.Error{Reason: "field x must be a string, got number"}
	if e.Error() != e.Reason {
		t.Errorf("Error() = %q", e.Error())
	}
	if !errors.Is(e, fail.Invalid) {
		t.Errorf("*Error does not match ErrInvalid")
	}
	if errors.Is(e, io.EOF) {
		t.Errorf("*Error matches io.EOF")
	}
	if errors.Is(errors.New("invalid message"), fail.Invalid) {
		t.Errorf("an unrelated error matches ErrInvalid")
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name     string
		r        io.Reader
		wantSKU  string
		wantErr  string
		invalid  bool // errors.Is(err, ErrInvalid)
		required []string
	}{
		{name: "ok", r: strings.NewReader(`{"sku":"A"}`), wantSKU: "A", required: []string{"sku"}},
		{name: "one byte at a time", r: iotest.OneByteReader(strings.NewReader(`{"sku":"B","qty":2}`)), wantSKU: "B", required: []string{"sku"}},
		{name: "invalid data", r: strings.NewReader(`{"qty":1}`), wantErr: "missing field sku", invalid: true, required: []string{"sku"}},
		{name: "malformed", r: strings.NewReader(`{`), wantErr: "malformed JSON: unexpected end of JSON input (at byte 1)", invalid: true},
		{name: "empty", r: bytes.NewReader(nil), wantErr: "malformed JSON: unexpected end of JSON input (at byte 0)", invalid: true},
		// A failing reader is not the data's fault.
		{name: "read error", r: iotest.ErrReader(io.ErrClosedPipe), wantErr: io.ErrClosedPipe.Error()},
		{name: "read error midway", r: io.MultiReader(strings.NewReader(`{"sku":`), iotest.ErrReader(io.ErrUnexpectedEOF)), wantErr: io.ErrUnexpectedEOF.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got item
			err := decode.Reader(tt.r, &got, tt.required...)
			if tt.wantErr == "" {
				if err != nil || got.SKU != tt.wantSKU {
					t.Errorf("Reader = %v, sku %q; want nil, %q", err, got.SKU, tt.wantSKU)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Reader error = %v, want %q", err, tt.wantErr)
			}
			if errors.Is(err, fail.Invalid) != tt.invalid {
				t.Errorf("errors.Is(%v, ErrInvalid) = %v, want %v", err, !tt.invalid, tt.invalid)
			}
		})
	}
}

// TestObjectKindNames checks the names given to Go kinds that have no
// string, integer, boolean or number name.
func TestObjectKindNames(t *testing.T) {
	var dst struct {
		Inner inner          `json:"inner"`
		Arr   [2]int         `json:"arr"`
		List  []int          `json:"list"`
		Map   map[string]int `json:"map"`
	}
	tests := []struct {
		data, want string
	}{
		{`{"inner":1}`, "field inner must be an object, got number"},
		{`{"arr":"x"}`, "field arr must be an array, got string"},
		{`{"list":{}}`, "field list must be an array, got object"},
		{`{"map":[]}`, "field map must be an object, got array"},
	}
	for _, tt := range tests {
		err := decode.Object([]byte(tt.data), &dst)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Object(%s) = %v, want %q", tt.data, err, tt.want)
		}
	}
}

func FuzzObject(f *testing.F) {
	seeds := []string{
		``, ` `, `{`, `}`, `{}`, `[]`, `null`, `true`, `0`, `"s"`, `{"sku":"A"}`,
		`{"sku":null}`, `{"sku":1}`, `{"qty":1.5}`, `{"qty":1e400}`, `{"small":-1}`,
		`{"sku":"A","qty":2,"price":1.5,"active":true,"tags":["a"],"eta":"2024-05-06T07:08:09Z","inner":{"n":1},"ref":"r"}`,
		`{"eta":"nope"}`, `{"inner":{"n":"x"}}`, `{"inner":1}`, `{"tags":{}}`, `{"sku":"\ud800"}`,
		"{\"sku\":\"\xff\"}", `{"a":{"b":{"c":[[[[]]]]}}}`, `{} {}`, `{"sku":"A",}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got item
		err := decode.Object(data, &got, "sku")
		if err != nil {
			if !errors.Is(err, fail.Invalid) {
				t.Fatalf("Object(%q) = %v (%T), which does not match ErrInvalid", data, err, err)
			}
			if err.Error() == "" {
				t.Fatalf("Object(%q) gave an empty error message", data)
			}
			return
		}
		// Accepted: it is a JSON object with a non-null sku, which
		// encoding/json also accepts.
		if !json.Valid(data) {
			t.Fatalf("Object accepted invalid JSON %q", data)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
			t.Fatalf("Object accepted %q, which is not an object", data)
		}
		if v, ok := fields["sku"]; !ok || string(bytes.TrimSpace(v)) == "null" {
			t.Fatalf("Object accepted %q without its required sku", data)
		}
		var want item
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("Object accepted %q, which json.Unmarshal refuses: %v", data, err)
		}

		// Into a map too: no panic, and only ErrInvalid errors.
		var m map[string]any
		if err := decode.Object(data, &m); err != nil && !errors.Is(err, fail.Invalid) {
			t.Fatalf("Object(%q, map) = %v, which does not match ErrInvalid", data, err)
		}
	})
}
