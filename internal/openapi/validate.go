package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// Exchange is a request and the answer it got, as a client saw them.
type Exchange struct {
	Method string
	// Target is the request's path, with its query if any
	// ("/orders?customer=ann").
	Target string
	Header http.Header
	Body   []byte

	Status         int
	ResponseHeader http.Header
	ResponseBody   []byte
}

func (e Exchange) String() string { return fmt.Sprintf("%s %s -> %d", e.Method, e.Target, e.Status) }

// Validator checks exchanges against the document (see the package doc)
// and records what they exercised. It is safe for concurrent use.
type Validator struct {
	doc   *Document
	error *openapi3.Schema // the body of an answer no route gave

	mu       sync.Mutex
	coverage Coverage
}

// NewValidator returns a validator of the document data.
func NewValidator(data []byte) (*Validator, error) {
	d, err := Load(data)
	if err != nil {
		return nil, err
	}
	tighten(d.T)
	errSchema := d.T.Components.Schemas["Error"]
	if errSchema == nil || errSchema.Value == nil {
		return nil, errors.New("the document has no Error schema (components.schemas.Error), the body of every error")
	}
	return &Validator{doc: d, error: errSchema.Value, coverage: newCoverage(d)}, nil
}

// Document returns the document the validator checks against.
func (v *Validator) Document() *Document { return v.doc }

// options are the validation's: every status must be documented;
// credentials are the server's business (the document describes a
// server with authentication, the tests run it with and without).
// A schema's complaint names where in the value it is and why, not the
// whole schema and value.
var options = func() *openapi3filter.Options {
	o := &openapi3filter.Options{
		IncludeResponseStatus: true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		MultiError:            true,
	}
	o.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
	})
	return o
}()

// Check checks e, records it, and returns what does not match the
// document: an error that names the route, the status and the schema's
// complaint.
func (v *Validator) Check(ctx context.Context, e Exchange) error {
	req, err := http.NewRequestWithContext(ctx, e.Method, "http://stockflow"+e.Target, bytes.NewReader(e.Body))
	if err != nil {
		return fmt.Errorf("%s: %w", e, err)
	}
	req.Header = e.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	route, params, routerStatus := v.doc.find(req)
	if route == nil {
		v.record(Unrouted, e.Status, true)
		return v.checkUnrouted(e, routerStatus)
	}
	pattern := route.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: options}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	v.record(pattern, e.Status, reqErr == nil)
	var errs []error
	if reqErr != nil && (e.Status < 400 || e.Status >= 500) {
		errs = append(errs, fmt.Errorf("the document refuses the request, but it was answered %d: %s", e.Status, oneLine(reqErr)))
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 e.Status,
		Header:                 e.ResponseHeader,
		Options:                options,
	}
	out.SetBodyBytes(e.ResponseBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		errs = append(errs, fmt.Errorf("the answer does not match the document: %s", oneLine(err)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("OpenAPI: %s (route %s, status %d): %w\n\tanswer: %s", e, pattern, e.Status, errors.Join(errs...), clip(e.ResponseBody))
	}
	return nil
}

// checkUnrouted checks the answer to a request no route takes: the
// router's 404 or 405, with an error body; the router's redirection of a
// path that is not clean; or a browser's preflight, answered by the CORS
// layer.
func (v *Validator) checkUnrouted(e Exchange, routerStatus int) error {
	if e.Method == http.MethodOptions && e.Status == http.StatusNoContent {
		return nil
	}
	if routerStatus == http.StatusTemporaryRedirect && e.Status == routerStatus && e.ResponseHeader.Get("Location") != "" {
		return nil // a path not clean ("//allocate"), sent to its clean form
	}
	var errs []error
	if e.Status != routerStatus {
		errs = append(errs, fmt.Errorf("no route of the document takes it (the router answers %d), but it was answered %d", routerStatus, e.Status))
	}
	if mt, _, err := mime.ParseMediaType(e.ResponseHeader.Get("Content-Type")); err != nil || mt != "application/json" {
		errs = append(errs, fmt.Errorf("the error is not JSON (Content-Type %q)", e.ResponseHeader.Get("Content-Type")))
	} else {
		var body any
		if err := json.Unmarshal(e.ResponseBody, &body); err != nil {
			errs = append(errs, fmt.Errorf("the error body is not JSON: %w", err))
		} else if err := v.error.VisitJSON(body, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
			errs = append(errs, fmt.Errorf("the error body does not match schema Error: %s", oneLine(err)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("OpenAPI: %s (no route): %w\n\tanswer: %s", e, errors.Join(errs...), clip(e.ResponseBody))
	}
	return nil
}

func (v *Validator) record(route string, status int, requestValid bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.coverage.add(route, status, requestValid)
}

// Coverage returns what the exchanges checked so far exercised.
func (v *Validator) Coverage() Coverage {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.coverage.clone()
}

// tighten makes the schemas of answers refuse members they do not
// declare (see the package doc): an object schema with properties and no
// additionalProperties of its own. Schemas that request bodies use too
// are left open, since a request may carry members stockflow ignores.
func tighten(t *openapi3.T) {
	requests := map[*openapi3.Schema]bool{}
	answers := map[*openapi3.Schema]bool{}
	for _, item := range t.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walk(mt.Schema, requests)
				}
			}
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					walk(mt.Schema, answers)
				}
			}
		}
	}
	closed := false
	for s := range answers {
		if !requests[s] && len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = &closed
		}
	}
}

// walk collects s and the schemas below it.
func walk(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
	if ref == nil || ref.Value == nil || seen[ref.Value] {
		return
	}
	s := ref.Value
	seen[s] = true
	for _, p := range s.Properties {
		walk(p, seen)
	}
	walk(s.Items, seen)
	walk(s.AdditionalProperties.Schema, seen)
	for _, list := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, r := range list {
			walk(r, seen)
		}
	}
}

// oneLine flattens a validation error's lines.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// clip shortens a body for an error message.
func clip(b []byte) string {
	const max = 500
	s := string(bytes.TrimSpace(b))
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
