package openapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
)

// Document is the HTTP API's description, loaded and checked.
type Document struct {
	T *openapi3.T
	// routes are the document's operations by mux pattern
	// ("POST /allocate").
	routes map[string]*routers.Route
	// mux routes a request to its operation as stockflow's mux does.
	mux *http.ServeMux
}

// Load parses an OpenAPI 3.1 document and checks it: well formed, every
// reference resolved, and every path a pattern http.ServeMux takes.
func Load(data []byte) (*Document, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("reading the OpenAPI document: %w", err)
	}
	if !t.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("the document is OpenAPI %s, not 3.1", t.OpenAPI)
	}
	if err := t.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	d := &Document{T: t, routes: map[string]*routers.Route{}, mux: http.NewServeMux()}
	for path, item := range t.Paths.Map() {
		for method, op := range item.Operations() {
			pattern := method + " " + path
			if path == "/" { // the root alone, as the router names it
				pattern = method + " /{$}"
			}
			route := &routers.Route{Spec: t, Path: path, PathItem: item, Method: method, Operation: op}
			if err := register(d.mux, pattern, route); err != nil {
				return nil, err
			}
			d.routes[pattern] = route
		}
	}
	return d, nil
}

// wildcard finds the path parameters of a path template.
var wildcard = regexp.MustCompile(`\{([^}/]+)\}`)

// match is what routing a request found: the operation's pattern and the
// path parameters' values.
type match struct {
	pattern string
	params  map[string]string
}

type matchKey struct{}

// register routes pattern's requests to route, recording the match in the
// request's context.
func register(mux *http.ServeMux, pattern string, route *routers.Route) (err error) {
	defer func() {
		if p := recover(); p != nil { // ServeMux panics on a bad or conflicting pattern
			err = fmt.Errorf("path %s %s is not a pattern stockflow's router takes: %v", route.Method, route.Path, p)
		}
	}()
	var names []string
	for _, m := range wildcard.FindAllStringSubmatch(route.Path, -1) {
		names = append(names, strings.TrimSuffix(m[1], "..."))
	}
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		m := r.Context().Value(matchKey{}).(*match)
		m.pattern = pattern
		m.params = map[string]string{}
		for _, n := range names {
			m.params[n] = r.PathValue(n)
		}
	})
	return nil
}

// Patterns returns the document's operations as mux patterns
// ("POST /allocate"), sorted.
func (d *Document) Patterns() []string {
	out := make([]string, 0, len(d.routes))
	for p := range d.routes {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Operation returns the operation of pattern, nil when the document has
// none.
func (d *Document) Operation(pattern string) *openapi3.Operation {
	if r, ok := d.routes[pattern]; ok {
		return r.Operation
	}
	return nil
}

// Roles returns the roles that may call the operation of pattern, from
// its security requirements (the roles each names), and whether it is
// open: callable without a credential (no requirement, or an empty one).
func (d *Document) Roles(pattern string) (roles []string, open bool) {
	op := d.Operation(pattern)
	if op == nil || op.Security == nil || len(*op.Security) == 0 {
		return nil, true
	}
	for _, req := range *op.Security {
		if len(req) == 0 {
			open = true
		}
		for _, scopes := range req {
			for _, s := range scopes {
				if !slices.Contains(roles, s) {
					roles = append(roles, s)
				}
			}
		}
	}
	slices.Sort(roles)
	return roles, open
}

// find routes r to its operation. Without one it returns the status
// stockflow's router answers: 404, or 405 when the path has operations of
// other methods.
func (d *Document) find(r *http.Request) (*routers.Route, map[string]string, int) {
	m := &match{}
	rec := &statusOnly{header: http.Header{}, status: http.StatusOK}
	d.mux.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), matchKey{}, m)))
	if m.pattern == "" {
		return nil, nil, rec.status
	}
	return d.routes[m.pattern], m.params, 0
}

// statusOnly keeps the status the router answers, and nothing else.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(status int)      { s.status = status }
