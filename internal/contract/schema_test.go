package contract

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// mustJSON decodes s as DecodeJSON does, failing the test on bad JSON.
func mustJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := DecodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	return v
}

// testRoot is a document whose schemas the validator tests refer to.
const testRoot = `{
	"components": {"schemas": {
		"Item": {"type": "object", "properties": {"sku": {"type": "string", "minLength": 1}, "qty": {"type": "integer", "minimum": 1}}, "required": ["sku", "qty"]},
		"Loop": {"$ref": "#/components/schemas/Loop"},
		"a/b~c": {"type": "boolean"}
	}},
	"list": [{"type": "null"}]
}`

func TestValidate(t *testing.T) {
	v := NewValidator(mustJSON(t, testRoot))
	tests := []struct {
		name   string
		schema string
		value  string
		// want are the violations, each as "path: a piece of the reason".
		want []string
	}{
		{"true takes anything", `true`, `{"a": [1]}`, nil},
		{"false takes nothing", `false`, `1`, []string{": schema false"}},
		{"empty schema takes anything", `{}`, `"x"`, nil},
		{"string", `{"type": "string"}`, `"x"`, nil},
		{"string, not number", `{"type": "string"}`, `1`, []string{": is number 1, want string"}},
		{"integer", `{"type": "integer"}`, `42`, nil},
		{"integer written with a fraction of zero", `{"type": "integer"}`, `42.0`, nil},
		{"integer in exponent form", `{"type": "integer"}`, `1e3`, nil},
		{"integer, not a fraction", `{"type": "integer"}`, `4.5`, []string{": is number 4.5, want integer"}},
		{"integer, not a string", `{"type": "integer"}`, `"4"`, []string{": is string \"4\", want integer"}},
		{"big integer", `{"type": "integer"}`, `123456789012345678901234567890`, nil},
		{"number takes integers", `{"type": "number"}`, `3`, nil},
		{"number takes fractions", `{"type": "number"}`, `3.25`, nil},
		{"number, not boolean", `{"type": "number"}`, `true`, []string{": is boolean true, want number"}},
		{"boolean", `{"type": "boolean"}`, `false`, nil},
		{"null", `{"type": "null"}`, `null`, nil},
		{"array", `{"type": "array"}`, `[]`, nil},
		{"object", `{"type": "object"}`, `{}`, nil},
		{"object, not array", `{"type": "object"}`, `[]`, []string{": is array [], want object"}},
		{"type list takes string", `{"type": ["string", "null"]}`, `"x"`, nil},
		{"type list takes null", `{"type": ["string", "null"]}`, `null`, nil},
		{"type list refuses others", `{"type": ["string", "null"]}`, `0`, []string{": want string or null"}},
		{"unknown type", `{"type": "text"}`, `"x"`, []string{`: type "text" is not a JSON Schema type`}},
		{"empty type list", `{"type": []}`, `"x"`, []string{": type is an empty list"}},
		{"required present", `{"required": ["a"]}`, `{"a": null}`, nil},
		{"required missing", `{"required": ["a", "b"]}`, `{"b": 1}`, []string{"/a: required member is missing"}},
		{"required ignores non-objects", `{"required": ["a"]}`, `3`, nil},
		{"properties checked", `{"properties": {"a": {"type": "string"}}}`, `{"a": 1}`, []string{"/a: want string"}},
		{"properties absent are fine", `{"properties": {"a": {"type": "string"}}}`, `{}`, nil},
		{"additional members allowed by default", `{"properties": {"a": {}}}`, `{"b": 1}`, nil},
		{"additionalProperties true", `{"properties": {}, "additionalProperties": true}`, `{"b": 1}`, nil},
		{"additionalProperties false", `{"properties": {"a": {}}, "additionalProperties": false}`, `{"a": 1, "b": 1}`, []string{"/b: schema false"}},
		{"additionalProperties schema", `{"additionalProperties": {"type": "integer"}}`, `{"b": "x"}`, []string{"/b: want integer"}},
		{"member names escaped in paths", `{"required": ["a/b~c"]}`, `{}`, []string{"/a~1b~0c: required member is missing"}},
		{"items", `{"items": {"type": "integer"}}`, `[1, 2]`, nil},
		{"items refused", `{"items": {"type": "integer"}}`, `[1, "two", 3, null]`, []string{"/1: want integer", "/3: want integer"}},
		{"items ignore non-arrays", `{"items": {"type": "integer"}}`, `"x"`, nil},
		{"enum", `{"enum": ["a", "b"]}`, `"b"`, nil},
		{"enum refused", `{"enum": ["a", "b"]}`, `"c"`, []string{`: "c" is not one of ["a","b"]`}},
		{"enum numbers by value", `{"enum": [1, 2]}`, `2.0`, nil},
		{"enum not a string for a number", `{"enum": ["1"]}`, `1`, []string{": 1 is not one of"}},
		{"enum of objects", `{"enum": [{"a": [1, null]}]}`, `{"a": [1, null]}`, nil},
		{"enum of null", `{"enum": [null]}`, `null`, nil},
		{"enum not a list", `{"enum": "a"}`, `"a"`, []string{": enum is string, not an array"}},
		{"minimum met", `{"minimum": 1}`, `1`, nil},
		{"minimum missed", `{"minimum": 1}`, `0`, []string{": 0 is below the minimum 1"}},
		{"minimum missed by a fraction", `{"minimum": 0}`, `-0.001`, []string{": -0.001 is below the minimum 0"}},
		{"minimum ignores non-numbers", `{"minimum": 1}`, `"0"`, nil},
		{"minLength met", `{"minLength": 2}`, `"ab"`, nil},
		{"minLength missed", `{"minLength": 1}`, `""`, []string{`: "" is shorter than 1 characters`}},
		{"minLength counts characters", `{"minLength": 2}`, `"é"`, []string{": \"é\" is shorter than 2 characters"}},
		{"maxLength met", `{"maxLength": 2}`, `"éé"`, nil},
		{"maxLength missed", `{"maxLength": 2}`, `"abc"`, []string{`: "abc" is longer than 2 characters`}},
		{"lengths ignore non-strings", `{"minLength": 5, "maxLength": 0}`, `123`, nil},
		{"date", `{"format": "date"}`, `"2011-01-02"`, nil},
		{"date, not a date-time", `{"format": "date"}`, `"2011-01-02T00:00:00Z"`, []string{": \"2011-01-02T00:00:00Z\" is not a date"}},
		{"date, no such day", `{"format": "date"}`, `"2011-02-30"`, []string{": \"2011-02-30\" is not a date"}},
		{"date, short month", `{"format": "date"}`, `"2011-1-02"`, []string{": is not a date"}},
		{"date-time", `{"format": "date-time"}`, `"2026-03-01T10:20:30Z"`, nil},
		{"date-time with fraction and offset", `{"format": "date-time"}`, `"2026-03-01T10:20:30.123456789+02:00"`, nil},
		{"date-time in lower case", `{"format": "date-time"}`, `"2026-03-01t10:20:30z"`, nil},
		{"date-time without zone", `{"format": "date-time"}`, `"2026-03-01T10:20:30"`, []string{": is not a date-time"}},
		{"date-time, a date", `{"format": "date-time"}`, `"2026-03-01"`, []string{": is not a date-time"}},
		{"format ignores non-strings", `{"type": ["string", "null"], "format": "date"}`, `null`, nil},
		{"unknown format", `{"format": "email"}`, `"a@b.c"`, []string{`: format "email" is not supported`}},
		{"$ref", `{"$ref": "#/components/schemas/Item"}`, `{"sku": "A", "qty": 1}`, nil},
		{"$ref refused", `{"$ref": "#/components/schemas/Item"}`, `{"sku": "", "qty": 0}`, []string{"/qty: 0 is below the minimum 1", "/sku: \"\" is shorter than 1"}},
		{"$ref in items", `{"items": {"$ref": "#/components/schemas/Item"}}`, `[{"sku": "A"}]`, []string{"/0/qty: required member is missing"}},
		{"$ref with escapes", `{"$ref": "#/components/schemas/a~1b~0c"}`, `1`, []string{": want boolean"}},
		{"$ref to an array element", `{"$ref": "#/list/0"}`, `null`, nil},
		{"$ref not found", `{"$ref": "#/components/schemas/Nope"}`, `1`, []string{`: no member "Nope"`}},
		{"$ref outside the document", `{"$ref": "other.json#/x"}`, `1`, []string{": does not point within the document"}},
		{"$ref past the end of a list", `{"$ref": "#/list/1"}`, `1`, []string{`: no element "1"`}},
		{"$ref cycle", `{"$ref": "#/components/schemas/Loop"}`, `1`, []string{": a $ref cycle"}},
		{"$ref with siblings applies both", `{"$ref": "#/components/schemas/Item", "required": ["note"]}`, `{"sku": "A", "qty": 1}`, []string{"/note: required member is missing"}},
		{"annotations", `{"title": "T", "description": "D", "examples": [1], "$comment": "C"}`, `1`, nil},
		{"unknown keyword", `{"type": "string", "pattern": "^a"}`, `"b"`, []string{`: schema keyword "pattern" is not supported`}},
		{"schema not an object", `"string"`, `"b"`, []string{": schema is string, not an object or a boolean"}},
		{
			"nested message",
			`{"type": "object", "properties": {"lines": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}, "at": {"type": "string", "format": "date-time"}}, "required": ["lines", "at"]}`,
			`{"lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": "2"}], "at": "yesterday"}`,
			[]string{"/at: \"yesterday\" is not a date-time", "/lines/1/qty: is string \"2\", want integer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := v.Validate(mustJSON(t, tt.schema), mustJSON(t, tt.value))
			if len(got) != len(tt.want) {
				t.Fatalf("Validate(%s, %s) = %q, want %d violations like %q", tt.schema, tt.value, got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				path, reason, _ := strings.Cut(w, ": ")
				if got[i].Path != path || !strings.Contains(got[i].Reason, reason) {
					t.Errorf("violation %d = %q, want path %q and a reason containing %q", i, got[i], path, reason)
				}
			}
		})
	}
}

func TestValidateGoValues(t *testing.T) {
	// Values decoded by encoding/json without UseNumber carry float64.
	v := NewValidator(nil)
	schema := mustJSON(t, `{"type": "integer", "minimum": 1}`)
	for _, tt := range []struct {
		value any
		ok    bool
	}{{float64(3), true}, {float64(3.5), false}, {float64(0), false}, {int64(2), true}, {2, true}, {json.Number("7"), true}} {
		if got := len(v.Validate(schema, tt.value)) == 0; got != tt.ok {
			t.Errorf("Validate(integer >= 1, %#v) conforms = %v, want %v", tt.value, got, tt.ok)
		}
	}
}

func TestUndeclared(t *testing.T) {
	v := NewValidator(mustJSON(t, testRoot))
	tests := []struct {
		name   string
		schema string
		value  string
		want   []string
	}{
		{"all declared", `{"properties": {"a": {}, "b": {}}}`, `{"a": 1}`, nil},
		{"one undeclared", `{"properties": {"a": {}}}`, `{"a": 1, "z": 2}`, []string{"/z"}},
		{"open objects still declare nothing extra", `{"properties": {"a": {}}, "additionalProperties": true}`, `{"a": 1, "b": 2}`, []string{"/b"}},
		{"no properties declare none", `{"type": "object"}`, `{"a": 1}`, []string{"/a"}},
		{"true schema declares none", `true`, `{"a": 1}`, []string{"/a"}},
		{"nested objects", `{"properties": {"o": {"properties": {"x": {}}}}}`, `{"o": {"x": 1, "y": 2}}`, []string{"/o/y"}},
		{"through items and $ref", `{"properties": {"lines": {"items": {"$ref": "#/components/schemas/Item"}}}}`, `{"lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1, "batchref": "b"}]}`, []string{"/lines/1/batchref"}},
		{"arrays without items", `{"properties": {"l": {}}}`, `{"l": [{"a": 1}]}`, nil},
		{"escaped names", `{"properties": {}}`, `{"a/b": 1}`, []string{"/a~1b"}},
		{"scalars", `{"type": "string"}`, `"x"`, nil},
		{"sorted", `{"properties": {}}`, `{"c": 1, "a": 2, "b": 3}`, []string{"/a", "/b", "/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := v.Undeclared(mustJSON(t, tt.schema), mustJSON(t, tt.value))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Undeclared(%s, %s) = %q, want %q", tt.schema, tt.value, got, tt.want)
			}
		})
	}
}

func TestCheckSchema(t *testing.T) {
	v := NewValidator(mustJSON(t, testRoot))
	tests := []struct {
		name   string
		schema string
		// want are pieces of the violations, in order.
		want []string
	}{
		{"fine", `{"type": "object", "description": "d", "properties": {"a": {"type": ["string", "null"], "format": "date"}, "n": {"type": "integer", "minimum": 0}}, "required": ["a"], "additionalProperties": true}`, nil},
		{"fine $ref", `{"$ref": "#/components/schemas/Item"}`, nil},
		{"boolean", `false`, nil},
		{"not a schema", `3`, []string{"schema is number"}},
		{"unknown keyword", `{"minItems": 1}`, []string{`/minItems: schema keyword "minItems" is not supported`}},
		{"misspelt required", `{"requried": ["a"]}`, []string{`/requried: schema keyword "requried"`}},
		{"required not among properties", `{"properties": {"a": {}}, "required": ["a", "b"]}`, []string{`/required: required member "b" is not among properties`}},
		{"required not a list", `{"required": "a"}`, []string{"/required: required: string is not an array"}},
		{"bad type", `{"type": "int"}`, []string{`/type: type "int" is not a JSON Schema type`}},
		{"bad nested type", `{"properties": {"a": {"items": {"type": 1}}}}`, []string{"/properties/a/items/type: type is number"}},
		{"bad additionalProperties", `{"additionalProperties": "no"}`, []string{"/additionalProperties: schema is string"}},
		{"bad enum", `{"enum": {}}`, []string{"/enum: enum is object"}},
		{"bad minimum", `{"minimum": "1"}`, []string{"/minimum: minimum is string"}},
		{"bad minLength", `{"minLength": -1}`, []string{"/minLength: minLength: -1 is not a non-negative integer"}},
		{"bad maxLength", `{"maxLength": 1.5}`, []string{"/maxLength: maxLength: 1.5 is not"}},
		{"unsupported format", `{"format": "uuid"}`, []string{`/format: format "uuid" is not supported`}},
		{"bad description", `{"description": 1}`, []string{"/description: description is number"}},
		{"bad examples", `{"examples": 1}`, []string{"/examples: examples is number"}},
		{"unresolved $ref", `{"$ref": "#/components/schemas/Nope"}`, []string{`/$ref: $ref "#/components/schemas/Nope" does not resolve`}},
		{"$ref cycle is checked once", `{"$ref": "#/components/schemas/Loop"}`, nil},
		{"bad schema behind a $ref", `{"$ref": "#/list/0", "properties": {"x": {"$ref": "#/list"}}}`, []string{"/list: schema is array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := v.CheckSchema(mustJSON(t, tt.schema))
			if len(got) != len(tt.want) {
				t.Fatalf("CheckSchema(%s) = %q, want %d violations like %q", tt.schema, got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].String(), w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	root := mustJSON(t, testRoot)
	v := NewValidator(root)
	for _, tt := range []struct {
		ref  string
		want string // the target as JSON; "" for an error
	}{
		{"#/list/0", `{"type":"null"}`},
		{"#/components/schemas/a~1b~0c/type", `"boolean"`},
		{"#/list/x", ""},
		{"#/list/-1", ""},
		{"#/list/0/type/deeper", ""},
		{"components/schemas", ""},
		{"", ""},
	} {
		got, err := v.Resolve(tt.ref)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Resolve(%q) = %v, want an error", tt.ref, got)
			}
			continue
		}
		if err != nil || brief(got) != tt.want {
			t.Errorf("Resolve(%q) = %s, %v; want %s", tt.ref, brief(got), err, tt.want)
		}
	}
	if got, err := v.Resolve("#"); err != nil || !jsonEqual(got, root) {
		t.Errorf("Resolve(#) = %v, %v; want the document", got, err)
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{`{"a": 1}`, true},
		{` [1, 2] `, true},
		{`1.50`, true},
		{`{"a": 1} {"b": 2}`, false},
		{`{"a": 1`, false},
		{``, false},
	} {
		v, err := DecodeJSON([]byte(tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("DecodeJSON(%q) = %v, %v; want ok %v", tt.in, v, err, tt.ok)
		}
	}
	v, _ := DecodeJSON([]byte(`1.50`))
	if v != json.Number("1.50") {
		t.Errorf("DecodeJSON(1.50) = %#v, want json.Number(\"1.50\")", v)
	}
}
