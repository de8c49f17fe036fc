package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/docs"
	"github.com/stockflow/stockflow/internal/auth"
	"github.com/stockflow/stockflow/internal/openapi"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/transport/broker"
)

// routeRecorder is a mux that also lists the patterns registered on it.
type routeRecorder struct {
	*http.ServeMux
	patterns []string
}

func (r *routeRecorder) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.Handle(pattern, h)
}

func (r *routeRecorder) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.HandleFunc(pattern, h)
}

// servedRoutes returns the routes "stockflow up" serves: every service
// opened as up opens it (on SQLite in a temporary directory, messages in
// the process), each registering its routes, and the process's own.
func servedRoutes(t *testing.T) []string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	transport, err := broker.Open("", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { transport.Close() })
	cfg := platform.Config{DataDir: t.TempDir(), Transport: transport, Log: log}
	mux := &routeRecorder{ServeMux: http.NewServeMux()}
	var svcs []platform.Service
	for _, def := range services {
		svc, err := def.open(t.Context(), cfg, &serverFlags{})
		if err != nil {
			t.Fatalf("opening %s: %v", def.name, err)
		}
		t.Cleanup(svc.Close)
		svc.Routes(mux)
		svcs = append(svcs, svc)
	}
	processRoutes(mux, http.NotFoundHandler(), http.NotFoundHandler())
	deadLetterRoutes(mux, newConsole(names(services), svcs), log)
	if len(mux.patterns) < 20 {
		t.Fatalf("the services registered %d routes: %v", len(mux.patterns), mux.patterns)
	}
	return mux.patterns
}

func loadOpenAPI(t *testing.T) *openapi.Document {
	t.Helper()
	d, err := openapi.Load(docs.OpenAPI)
	if err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	return d
}

// docs/openapi.json describes every route the services and the process
// register, and no other.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	served := servedRoutes(t)
	described := doc.Patterns()
	for _, r := range served {
		if !slices.Contains(described, r) {
			t.Errorf("route %q is registered, but docs/openapi.json does not describe it", r)
		}
	}
	for _, r := range described {
		if !slices.Contains(served, r) {
			t.Errorf("docs/openapi.json describes %q, which no service registers", r)
		}
	}
}

// The security docs/openapi.json gives each route is the roles
// routes.go gives it: the route's role, and read for a GET; none for the
// open routes; /metrics open, or ops and read with --metrics-auth.
func TestOpenAPIRoles(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	for _, r := range doc.Patterns() {
		roles, open := doc.Roles(r)
		var want []string
		if role, ok := routeRoles[r]; ok {
			want = append(want, string(role))
			if strings.HasPrefix(r, "GET ") && role != auth.Read {
				want = append(want, string(auth.Read))
			}
		}
		slices.Sort(want)
		wantOpen := openRoutes(false)[r]
		if !slices.Equal(roles, want) || open != wantOpen {
			t.Errorf("docs/openapi.json: %s may be called by %v (open %v); routes.go says %v (open %v)", r, roles, open, want, wantOpen)
		}
	}
}

// GET /openapi.json serves the document, open to anyone.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	processRoutes(mux, http.NotFoundHandler(), http.NotFoundHandler())
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), docs.OpenAPI) {
		t.Errorf("GET /openapi.json: %d %q, %d bytes; want 200, application/json and the document", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
	if !openRoutes(true)["GET /openapi.json"] {
		t.Error("GET /openapi.json needs a credential")
	}
}
