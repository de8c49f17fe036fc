package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Violation is one way a JSON value breaks its schema.
type Violation struct {
	// Path is where in the value, as a JSON Pointer: "" for the whole
	// value, "/lines/0/qty" for a member of an element of a member.
	Path string
	// Reason says what is wrong.
	Reason string
}

func (v Violation) String() string {
	if v.Path == "" {
		return "(the value): " + v.Reason
	}
	return v.Path + ": " + v.Reason
}

// Validator validates JSON values against the schemas of one document,
// within which it resolves their $refs. It knows this subset of JSON
// Schema (draft 2020-12, as AsyncAPI 3 uses it):
//
//   - $ref to a JSON Pointer within the document ("#/components/schemas/X");
//   - type, a name or a list of names ("integer" is a number without a
//     fractional part; "number" takes integers too);
//   - properties, required, additionalProperties (a boolean or a schema);
//   - items (a schema for every element);
//   - enum, minimum, minLength, maxLength (lengths in characters);
//   - format "date" (RFC 3339 full-date) and "date-time" (RFC 3339),
//     checked on strings only;
//   - the annotations title, description, examples and $comment;
//   - the boolean schemas true and false.
//
// A schema that uses any other keyword, or another format, breaks the
// check rather than passing unchecked: a Violation names it.
type Validator struct {
	root any
}

// NewValidator returns a validator of the schemas of root, a document as
// DecodeJSON returns it.
func NewValidator(root any) *Validator { return &Validator{root: root} }

// DecodeJSON decodes one JSON value into what Validator works on:
// map[string]any, []any, string, bool, nil, and json.Number for numbers,
// so that 1 and 1.0 stay as they were written.
func DecodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// maxDepth bounds how deep validation goes, a guard against $ref cycles.
const maxDepth = 128

// knownKeywords are the schema keywords Validator understands.
var knownKeywords = map[string]bool{
	"$ref": true, "type": true, "properties": true, "required": true, "additionalProperties": true,
	"items": true, "enum": true, "minimum": true, "minLength": true, "maxLength": true, "format": true,
	"title": true, "description": true, "examples": true, "$comment": true,
}

// Validate returns how value breaks schema, in a stable order; nil when
// it conforms.
func (v *Validator) Validate(schema, value any) []Violation {
	var out []Violation
	v.validate(schema, value, "", 0, &out)
	return out
}

func (v *Validator) validate(schema, value any, path string, depth int, out *[]Violation) {
	fail := func(format string, args ...any) {
		*out = append(*out, Violation{Path: path, Reason: fmt.Sprintf(format, args...)})
	}
	if depth > maxDepth {
		fail("schema nests deeper than %d levels (a $ref cycle?)", maxDepth)
		return
	}
	switch s := schema.(type) {
	case bool:
		if !s {
			fail("no value is allowed here (schema false)")
		}
		return
	case map[string]any:
		v.validateObject(s, value, path, depth, out, fail)
	default:
		fail("schema is %s, not an object or a boolean", jsonType(schema))
	}
}

func (v *Validator) validateObject(s map[string]any, value any, path string, depth int, out *[]Violation, fail func(string, ...any)) {
	for _, k := range sortedKeys(s) {
		if !knownKeywords[k] {
			fail("schema keyword %q is not supported by the contract's validator", k)
		}
	}
	if ref, ok := s["$ref"]; ok {
		target, err := v.resolveRef(ref)
		if err != nil {
			fail("%v", err)
		} else {
			v.validate(target, value, path, depth+1, out)
		}
	}
	if t, ok := s["type"]; ok {
		names, err := typeNames(t)
		if err != nil {
			fail("%v", err)
		} else if !slices.ContainsFunc(names, func(n string) bool { return hasType(value, n) }) {
			fail("is %s %s, want %s", jsonType(value), brief(value), strings.Join(names, " or "))
			return // the other keywords would only repeat it
		}
	}
	if e, ok := s["enum"]; ok {
		list, isList := e.([]any)
		switch {
		case !isList:
			fail("enum is %s, not an array", jsonType(e))
		case !slices.ContainsFunc(list, func(x any) bool { return jsonEqual(x, value) }):
			fail("%s is not one of %s", brief(value), brief(e))
		}
	}
	if m, ok := s["minimum"]; ok {
		min, okMin := toRat(m)
		n, okVal := toRat(value)
		switch {
		case !okMin:
			fail("minimum is %s, not a number", jsonType(m))
		case okVal && n.Cmp(min) < 0:
			fail("%s is below the minimum %s", brief(value), brief(m))
		}
	}
	if str, isString := value.(string); isString {
		length := utf8.RuneCountInString(str)
		if m, ok := s["minLength"]; ok {
			if n, err := nonNegativeInt(m); err != nil {
				fail("minLength: %v", err)
			} else if length < n {
				fail("%s is shorter than %d characters", brief(value), n)
			}
		}
		if m, ok := s["maxLength"]; ok {
			if n, err := nonNegativeInt(m); err != nil {
				fail("maxLength: %v", err)
			} else if length > n {
				fail("%s is longer than %d characters", brief(value), n)
			}
		}
	}
	if f, ok := s["format"]; ok {
		if err := checkFormat(f, value); err != nil {
			fail("%v", err)
		}
	}
	if items, ok := s["items"]; ok {
		if list, isList := value.([]any); isList {
			for i, x := range list {
				v.validate(items, x, path+"/"+strconv.Itoa(i), depth+1, out)
			}
		}
	}
	obj, isObject := value.(map[string]any)
	var props map[string]any
	if p, ok := s["properties"]; ok {
		if props, ok = p.(map[string]any); !ok {
			fail("properties is %s, not an object", jsonType(p))
		}
	}
	if r, ok := s["required"]; ok {
		names, err := stringList(r)
		if err != nil {
			fail("required: %v", err)
		} else if isObject {
			for _, name := range names {
				if _, present := obj[name]; !present {
					*out = append(*out, Violation{Path: path + "/" + escapePointer(name), Reason: "required member is missing"})
				}
			}
		}
	}
	if !isObject {
		return
	}
	for _, k := range sortedKeys(obj) {
		member := path + "/" + escapePointer(k)
		if ps, declared := props[k]; declared {
			v.validate(ps, obj[k], member, depth+1, out)
		} else if ap, ok := s["additionalProperties"]; ok {
			v.validate(ap, obj[k], member, depth+1, out)
		}
	}
}

// Undeclared returns the JSON Pointers of the object members within value
// that its schema does not name in properties, in a stable order. Even
// where additionalProperties lets such members through (consumers ignore
// what they do not know), a member a publisher sends ought to be
// documented; this finds those that are not. It descends through $ref,
// properties and items; a schema that names no properties declares none.
func (v *Validator) Undeclared(schema, value any) []string {
	var out []string
	v.undeclared(schema, value, "", 0, &out)
	return out
}

func (v *Validator) undeclared(schema, value any, path string, depth int, out *[]string) {
	if depth > maxDepth {
		return
	}
	s, _ := schema.(map[string]any)
	if ref, ok := s["$ref"]; ok {
		if target, err := v.resolveRef(ref); err == nil {
			v.undeclared(target, value, path, depth+1, out)
			return
		}
	}
	switch x := value.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, k := range sortedKeys(x) {
			member := path + "/" + escapePointer(k)
			if ps, declared := props[k]; declared {
				v.undeclared(ps, x[k], member, depth+1, out)
			} else {
				*out = append(*out, member)
			}
		}
	case []any:
		if items, ok := s["items"]; ok {
			for i, e := range x {
				v.undeclared(items, e, path+"/"+strconv.Itoa(i), depth+1, out)
			}
		}
	}
}

// Resolve returns what ref, a reference within the document ("#" or
// "#/a/b~1c/0"), points to.
func (v *Validator) Resolve(ref string) (any, error) { return resolvePointer(v.root, ref) }

func (v *Validator) resolveRef(ref any) (any, error) {
	s, ok := ref.(string)
	if !ok {
		return nil, fmt.Errorf("$ref is %s, not a string", jsonType(ref))
	}
	return v.Resolve(s)
}

// resolvePointer returns what ref points to within root.
func resolvePointer(root any, ref string) (any, error) {
	if ref == "#" {
		return root, nil
	}
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("$ref %q does not point within the document (want #/...)", ref)
	}
	cur := root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("$ref %q does not resolve: no member %q", ref, tok)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("$ref %q does not resolve: no element %q", ref, tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("$ref %q does not resolve: %q is inside %s", ref, tok, jsonType(cur))
		}
	}
	return cur, nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// jsonTypes are the type names JSON Schema knows.
var jsonTypes = []string{"object", "array", "string", "integer", "number", "boolean", "null"}

func typeNames(t any) ([]string, error) {
	var names []string
	switch x := t.(type) {
	case string:
		names = []string{x}
	case []any:
		var err error
		if names, err = stringList(x); err != nil {
			return nil, fmt.Errorf("type: %v", err)
		}
		if len(names) == 0 {
			return nil, errors.New("type is an empty list")
		}
	default:
		return nil, fmt.Errorf("type is %s, not a string or a list of strings", jsonType(t))
	}
	for _, n := range names {
		if !slices.Contains(jsonTypes, n) {
			return nil, fmt.Errorf("type %q is not a JSON Schema type", n)
		}
	}
	return names, nil
}

// hasType reports whether value is of the JSON Schema type name.
func hasType(value any, name string) bool {
	switch name {
	case "integer":
		r, ok := toRat(value)
		return ok && r.IsInt()
	case "number":
		_, ok := toRat(value)
		return ok
	}
	return jsonType(value) == name
}

// jsonType names the JSON type of value ("number" for any number).
func jsonType(value any) string {
	switch value.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	if _, ok := toRat(value); ok {
		return "number"
	}
	return fmt.Sprintf("a Go %T", value)
}

// toRat returns the number value is, exactly.
func toRat(value any) (*big.Rat, bool) {
	switch n := value.(type) {
	case json.Number:
		return new(big.Rat).SetString(string(n))
	case float64:
		if math.IsInf(n, 0) || math.IsNaN(n) {
			return nil, false
		}
		return new(big.Rat).SetFloat64(n), true
	case int:
		return new(big.Rat).SetInt64(int64(n)), true
	case int64:
		return new(big.Rat).SetInt64(n), true
	}
	return nil, false
}

// jsonEqual reports whether a and b are the same JSON value (numbers by
// value: 1 equals 1.0).
func jsonEqual(a, b any) bool {
	if ra, ok := toRat(a); ok {
		rb, ok := toRat(b)
		return ok && ra.Cmp(rb) == 0
	}
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		return ok && slices.EqualFunc(x, y, jsonEqual)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			if yv, ok := y[k]; !ok || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	case nil, bool, string:
		return a == b
	}
	return false
}

func nonNegativeInt(v any) (int, error) {
	r, ok := toRat(v)
	if !ok || !r.IsInt() || r.Sign() < 0 || !r.Num().IsInt64() || r.Num().Int64() > math.MaxInt32 {
		return 0, fmt.Errorf("%s is not a non-negative integer", brief(v))
	}
	return int(r.Num().Int64()), nil
}

func stringList(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is not an array", jsonType(v))
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("element %d is %s, not a string", i, jsonType(x))
		}
		out[i] = s
	}
	return out, nil
}

// checkFormat checks a string value against format; other values pass,
// as JSON Schema has it.
func checkFormat(format, value any) error {
	f, ok := format.(string)
	if !ok {
		return fmt.Errorf("format is %s, not a string", jsonType(format))
	}
	s, isString := value.(string)
	switch f {
	case "date":
		if !isString {
			return nil
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return fmt.Errorf("%s is not a date (RFC 3339 full-date, YYYY-MM-DD)", brief(value))
		}
	case "date-time":
		if !isString {
			return nil
		}
		// RFC 3339 lets "T" and "Z" be lower case; Go's layout does not.
		if _, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s)); err != nil {
			return fmt.Errorf("%s is not a date-time (RFC 3339)", brief(value))
		}
	default:
		return fmt.Errorf("format %q is not supported by the contract's validator", f)
	}
	return nil
}

// brief renders value as JSON, cut short when long.
func brief(value any) string {
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprintf("%v", value)
	}
	const max = 120
	if len(b) <= max {
		return string(b)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// CheckSchema returns what is wrong with schema itself, with no value to
// validate: keywords the validator does not know, keyword values of the
// wrong kind, types and formats it does not know, $refs that do not
// resolve, and required members that properties does not name (a typo,
// likely). Path is where in the schema, as a JSON Pointer.
func (v *Validator) CheckSchema(schema any) []Violation {
	var out []Violation
	v.checkSchema(schema, "", 0, map[string]bool{}, &out)
	return out
}

func (v *Validator) checkSchema(schema any, path string, depth int, seen map[string]bool, out *[]Violation) {
	fail := func(at, format string, args ...any) {
		*out = append(*out, Violation{Path: at, Reason: fmt.Sprintf(format, args...)})
	}
	if depth > maxDepth {
		fail(path, "schema nests deeper than %d levels", maxDepth)
		return
	}
	s, ok := schema.(map[string]any)
	if !ok {
		if _, isBool := schema.(bool); !isBool {
			fail(path, "schema is %s, not an object or a boolean", jsonType(schema))
		}
		return
	}
	at := func(k string) string { return path + "/" + escapePointer(k) }
	for _, k := range sortedKeys(s) {
		val := s[k]
		switch k {
		case "$ref":
			target, err := v.resolveRef(val)
			if err != nil {
				fail(at(k), "%v", err)
			} else if ref := val.(string); !seen[ref] {
				seen[ref] = true
				v.checkSchema(target, ref[1:], depth+1, seen, out)
			}
		case "type":
			if _, err := typeNames(val); err != nil {
				fail(at(k), "%v", err)
			}
		case "properties":
			props, ok := val.(map[string]any)
			if !ok {
				fail(at(k), "properties is %s, not an object", jsonType(val))
				continue
			}
			for _, name := range sortedKeys(props) {
				v.checkSchema(props[name], at(k)+"/"+escapePointer(name), depth+1, seen, out)
			}
		case "required":
			names, err := stringList(val)
			if err != nil {
				fail(at(k), "required: %v", err)
				continue
			}
			props, _ := s["properties"].(map[string]any)
			for _, name := range names {
				if _, ok := props[name]; !ok {
					fail(at(k), "required member %q is not among properties", name)
				}
			}
		case "additionalProperties", "items":
			v.checkSchema(val, at(k), depth+1, seen, out)
		case "enum":
			if _, ok := val.([]any); !ok {
				fail(at(k), "enum is %s, not an array", jsonType(val))
			}
		case "minimum":
			if _, ok := toRat(val); !ok {
				fail(at(k), "minimum is %s, not a number", jsonType(val))
			}
		case "minLength", "maxLength":
			if _, err := nonNegativeInt(val); err != nil {
				fail(at(k), "%s: %v", k, err)
			}
		case "format":
			if err := checkFormat(val, nil); err != nil {
				fail(at(k), "%v", err)
			}
		case "title", "description", "$comment":
			if _, ok := val.(string); !ok {
				fail(at(k), "%s is %s, not a string", k, jsonType(val))
			}
		case "examples":
			if _, ok := val.([]any); !ok {
				fail(at(k), "examples is %s, not an array", jsonType(val))
			}
		default:
			fail(at(k), "schema keyword %q is not supported by the contract's validator", k)
		}
	}
}
