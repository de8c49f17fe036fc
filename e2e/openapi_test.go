package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stockflow/stockflow/docs"
	"github.com/stockflow/stockflow/internal/openapi"
)

// apiCheck checks every exchange of the tests' HTTP helpers (server.request
// and opProc.do) against docs/openapi.json: a mismatch fails the test that
// made the request, naming the route, the status and the schema's
// complaint. TestMain makes it.
var apiCheck *openapi.Validator

// coverageEnv names a file where TestMain writes, after the tests, which
// routes and statuses the exchanges exercised and which are documented
// only.
const coverageEnv = "STOCKFLOW_OPENAPI_COVERAGE"

func newAPICheck() error {
	v, err := openapi.NewValidator(docs.OpenAPI)
	if err != nil {
		return fmt.Errorf("docs/openapi.json: %w", err)
	}
	apiCheck = v
	return nil
}

// writeAPICoverage writes the coverage table where coverageEnv says.
func writeAPICoverage() error {
	path := os.Getenv(coverageEnv)
	if path == "" || apiCheck == nil {
		return nil
	}
	table := "Routes and statuses the end-to-end tests exercised (docs/openapi.json):\n" + apiCheck.Coverage().String()
	return os.WriteFile(path, []byte(table), 0o644)
}

// checkExchange checks a request and its answer against the document.
func checkExchange(t testing.TB, req *http.Request, body []byte, r *response) {
	t.Helper()
	err := apiCheck.Check(context.WithoutCancel(req.Context()), openapi.Exchange{
		Method: req.Method, Target: req.URL.RequestURI(), Header: req.Header, Body: body,
		Status: r.Status, ResponseHeader: r.Header, ResponseBody: r.Body,
	})
	if err != nil {
		t.Error(err)
	}
}

// teeBody keeps what a streamed request body sent, up to a limit, for the
// check once the answer is in.
type teeBody struct {
	r   io.Reader
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxKept bounds what teeBody keeps: more than any body stockflow reads.
const maxKept = 16 << 20

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.mu.Lock()
	if b.buf.Len() < maxKept {
		b.buf.Write(p[:min(n, maxKept-b.buf.Len())])
	}
	b.mu.Unlock()
	return n, err
}

func (b *teeBody) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// GET /openapi.json serves docs/openapi.json as it is in the sources.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(root, "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := start(t)
	r := s.do(t, http.MethodGet, "/openapi.json", nil)
	expect(t, r, http.StatusOK)
	if !r.isJSON() || !bytes.Equal(r.Body, want) {
		t.Errorf("GET /openapi.json: Content-Type %q, %d bytes; want application/json and docs/openapi.json (%d bytes)", r.Header.Get("Content-Type"), len(r.Body), len(want))
	}
}
