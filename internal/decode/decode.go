// Package decode reads JSON objects from outside (HTTP bodies, broker
// messages) strictly enough to name what is wrong with them: malformed
// JSON, a field of the wrong type, a missing or null required field.
package decode

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/stockflow/stockflow/internal/fail"
)

// Error says what is wrong with the data. It is of kind fail.Invalid.
type Error struct{ Reason string }

func (e *Error) Error() string        { return e.Reason }
func (e *Error) Is(target error) bool { return target == fail.Invalid }

func invalid(format string, args ...any) error { return &Error{fmt.Sprintf(format, args...)} }

// Object decodes the JSON object data into dst (a pointer to a struct),
// after checking that each required field is present and not null. Unknown
// fields are allowed.
func Object(data []byte, dst any, required ...string) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return describe(err)
	}
	if fields == nil {
		return invalid("body must be a JSON object, got null")
	}
	var missing []string
	for _, f := range required {
		if v, ok := fields[f]; !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return invalid("missing field %s", strings.Join(missing, ", "))
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return describe(err)
	}
	return nil
}

// Reader decodes one JSON object read from r, as Object does.
func Reader(r io.Reader, dst any, required ...string) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return Object(data, dst, required...)
}

func describe(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalid("body must be a JSON object, got %s", typeErr.Value)
		}
		return invalid("field %s must be %s, got %s", typeErr.Field, kind(typeErr.Type), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return invalid("malformed JSON: %s (at byte %d)", syntaxErr.Error(), syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("malformed JSON: unexpected end of input")
	}
	// An error of a field's own UnmarshalJSON says what is wrong already.
	return &Error{err.Error()}
}

func kind(t reflect.Type) string {
	if reflect.PointerTo(t).Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return "a string" // dates and other values written as text
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "a " + t.Kind().String()
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// Strict returns a decoder of JSON objects into Ts that requires fields
// (for messaging.Register).
func Strict[T any](required ...string) func(json.RawMessage) (T, error) {
	return func(b json.RawMessage) (T, error) {
		var v T
		err := Object(b, &v, required...)
		return v, err
	}
}
