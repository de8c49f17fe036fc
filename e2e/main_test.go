package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

const module = "github.com/stockflow/stockflow"

// binary is the stockflow binary TestMain built.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "stockflow-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "stockflow")
	build := exec.Command("go", "build", "-o", binary, "./cmd/stockflow")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/stockflow: %v\n%s", err, out)
		return 1
	}
	if err := newAPICheck(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := m.Run()
	if err := writeAPICoverage(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: writing the OpenAPI coverage:", err)
	}
	return code
}

// moduleRoot finds the directory of the go.mod of module, walking up from
// the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", module)
		}
		dir = parent
	}
}

// server is one running "stockflow up".
type server struct {
	t      testing.TB
	Dir    string // data directory
	Addr   string // host:port
	Base   string // http://host:port
	logs   *testenv.LogBuffer
	cmd    *exec.Cmd
	client *http.Client

	exited  chan struct{} // closed when the process has exited
	waitErr error         // cmd.Wait's error, once exited is closed
	stopped atomic.Bool   // stop or kill was called
}

// start starts stockflow on a fresh data directory.
func start(t testing.TB) *server {
	t.Helper()
	return startOn(t, t.TempDir())
}

// startOn starts stockflow on data directory dir and waits until it is
// healthy. At cleanup it stops it with SIGTERM, expecting exit code 0,
// unless the test stopped or killed it already. Its logs are printed when
// the test fails.
func startOn(t testing.TB, dir string) *server {
	t.Helper()
	return startWith(t, options{Args: []string{"up", "--data", dir}, Dir: dir})
}

// options says how startWith launches stockflow.
type options struct {
	// Args are the command and its flags, without --http and --log-format,
	// which are added: {"up", "--data", dir}, or {"serve", "allocation",
	// "--db", url, "--broker", redisURL}.
	Args []string
	// Env is added to the process's environment, from which every
	// STOCKFLOW_* variable of the test's own is removed.
	Env []string
	// HTTPFromEnv passes the address as STOCKFLOW_HTTP instead of --http.
	HTTPFromEnv bool
	// Dir is the data directory, when Args name one; otherwise the process
	// gets a temporary one in STOCKFLOW_DATA (used only if it ignores its
	// database).
	Dir string
	// KillAtCleanup makes the cleanup kill the process (SIGKILL) instead of
	// stopping it with SIGTERM and expecting exit code 0.
	KillAtCleanup bool
	// TLS, when set, is the client's side of a process serving HTTPS
	// (--tls-cert in Args): Base is https://, and the test's client uses it.
	TLS *tls.Config
}

// startWith starts stockflow as opts says, as startOn does.
func startWith(t testing.TB, opts options) *server {
	t.Helper()
	// The free port may be taken between our probe and the binary's listen:
	// try again with another one in that case.
	for attempt := 1; ; attempt++ {
		s, err := launchWith(t, opts)
		if err == nil {
			return s
		}
		if attempt < 3 && strings.Contains(s.logs.String(), "address already in use") {
			t.Logf("port %s was taken, trying another", s.Addr)
			continue
		}
		t.Fatalf("starting stockflow %s: %v", strings.Join(opts.Args, " "), err)
	}
}

func launch(t testing.TB, dir string) (*server, error) {
	t.Helper()
	return launchWith(t, options{Args: []string{"up", "--data", dir}, Dir: dir})
}

// environ returns the test's environment without its STOCKFLOW_*
// variables, plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STOCKFLOW_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func launchWith(t testing.TB, opts options) (*server, error) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	dir := opts.Dir
	env := append([]string(nil), opts.Env...)
	if dir == "" {
		dir = t.TempDir()
		env = append([]string{"STOCKFLOW_DATA=" + dir}, env...)
	}
	s := &server{
		t:      t,
		Dir:    dir,
		Addr:   addr,
		Base:   "http://" + addr,
		logs:   &testenv.LogBuffer{},
		exited: make(chan struct{}),
		client: &http.Client{
			Timeout:   15 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: opts.TLS},
		},
	}
	if opts.TLS != nil {
		s.Base = "https://" + addr
	}
	args := append([]string(nil), opts.Args...)
	if opts.HTTPFromEnv {
		env = append(env, "STOCKFLOW_HTTP="+addr)
	} else {
		args = append(args, "--http", addr)
	}
	args = append(args, "--log-format", "text")
	s.cmd = exec.Command(binary, args...)
	s.cmd.Env = environ(env...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		return s, err
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stockflow logs (pid %d, %s, %s):\n%s", s.cmd.Process.Pid, s.Addr, strings.Join(args, " "), s.logs.String())
		}
	})
	t.Cleanup(func() {
		if !s.stopped.Load() {
			if opts.KillAtCleanup {
				s.kill()
			} else {
				s.stop()
			}
		}
	})
	if err := s.waitHealthy(10 * time.Second); err != nil {
		if !s.stopped.Load() {
			s.stopped.Store(true)
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		return s, err
	}
	return s, nil
}

// waitHealthy polls GET /healthz until it answers 200.
func (s *server) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second, Transport: s.client.Transport}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("stockflow exited before it was healthy: %v", s.waitErr)
		default:
		}
		resp, err := c.Get(s.Base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("GET /healthz not 200 within %v; last: %s", timeout, last)
}

// stop sends SIGTERM and expects a clean exit (code 0) within 20 seconds.
func (s *server) stop() {
	s.t.Helper()
	s.stopped.Store(true)
	s.client.CloseIdleConnections()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Errorf("SIGTERM to stockflow: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		// SIGQUIT first: the goroutines' stacks go to the logs, to show
		// what it waited for.
		s.t.Errorf("stockflow did not exit within 20s of SIGTERM; killing it (its goroutines are in its logs)")
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.exited:
		case <-time.After(2 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		return
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("stockflow exited with code %d after SIGTERM (%v), want 0", code, s.waitErr)
	}
}

// kill sends SIGKILL and waits for the process to go. It may be called
// from any goroutine.
func (s *server) kill() {
	s.t.Helper()
	s.stopped.Store(true)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Errorf("SIGKILL to stockflow: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("stockflow did not exit within 10s of SIGKILL")
	}
	s.client.CloseIdleConnections()
}

// response is an HTTP answer, read whole.
type response struct {
	Method, Path string
	Status       int
	Header       http.Header
	Body         []byte
}

func (r *response) String() string {
	return fmt.Sprintf("%s %s -> %d %s", r.Method, r.Path, r.Status, bytes.TrimSpace(r.Body))
}

// decode decodes the JSON body into v.
func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("%s: body is not the JSON expected (%T): %v", r, v, err)
	}
}

// message returns the body's "message", and whether the body is a JSON
// object with a string message.
func (r *response) message() (string, bool) {
	var m struct {
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil || m.Message == nil {
		return "", false
	}
	return *m.Message, true
}

// isJSON reports whether the answer's Content-Type is application/json.
func (r *response) isJSON() bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// request sends a request. body is nil (no body), a string or []byte (sent
// as is, with its length), an io.Reader (sent chunked, length unknown) or
// anything else (sent as JSON). The request and its answer are checked
// against docs/openapi.json (apiCheck): a mismatch fails the server's
// test.
func (s *server) request(ctx context.Context, method, path string, body any, header http.Header) (*response, error) {
	var rd io.Reader
	var sent func() []byte // the body sent, for the check
	length := int64(0)
	switch b := body.(type) {
	case nil:
		sent = func() []byte { return nil }
	case string:
		rd, length = strings.NewReader(b), int64(len(b))
		sent = func() []byte { return []byte(b) }
	case []byte:
		rd, length = bytes.NewReader(b), int64(len(b))
		sent = func() []byte { return b }
	case io.Reader:
		tee := &teeBody{r: b}
		rd, length, sent = tee, -1, tee.bytes
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, length = bytes.NewReader(data), int64(len(data))
		sent = func() []byte { return data }
	}
	req, err := http.NewRequestWithContext(ctx, method, s.Base+path, rd)
	if err != nil {
		return nil, err
	}
	req.ContentLength = length
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	r := &response{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header, Body: data}
	checkExchange(s.t, req, sent(), r)
	return r, nil
}

// do sends a request and fails the test when it gets no answer.
func (s *server) do(t testing.TB, method, path string, body any) *response {
	t.Helper()
	r, err := s.request(context.Background(), method, path, body, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (s *server) post(t testing.TB, path string, body any) *response {
	t.Helper()
	return s.do(t, http.MethodPost, path, body)
}

// expect fails the test unless r has status want.
func expect(t testing.TB, r *response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: want status %d", r, want)
	}
}

// expectMessage fails the test unless r has status want and the JSON body
// {"message": msg}.
func expectMessage(t testing.TB, r *response, want int, msg string) {
	t.Helper()
	expect(t, r, want)
	if !r.isJSON() {
		t.Errorf("%s: Content-Type %q, want application/json", r, r.Header.Get("Content-Type"))
	}
	got, ok := r.message()
	if !ok {
		t.Fatalf("%s: body has no string \"message\"", r)
	}
	if got != msg {
		t.Fatalf("%s: message %q, want %q", r, got, msg)
	}
}

// expectMessageContains fails the test unless r has status want and a JSON
// body with a message that contains part.
func expectMessageContains(t testing.TB, r *response, want int, part string) {
	t.Helper()
	expect(t, r, want)
	if !r.isJSON() {
		t.Errorf("%s: Content-Type %q, want application/json", r, r.Header.Get("Content-Type"))
	}
	got, ok := r.message()
	if !ok || !strings.Contains(got, part) {
		t.Fatalf("%s: want a JSON message naming %q", r, part)
	}
}

// batch is the body of POST /add_batch; ETA "" is sent as null.
type batch struct {
	Ref string
	SKU string
	Qty int
	ETA string
}

func (b batch) body() map[string]any {
	m := map[string]any{"ref": b.Ref, "sku": b.SKU, "qty": b.Qty, "eta": nil}
	if b.ETA != "" {
		m["eta"] = b.ETA
	}
	return m
}

// addBatch adds a batch, expecting 201.
func (s *server) addBatch(t testing.TB, ref, sku string, qty int, eta string) {
	t.Helper()
	expect(t, s.post(t, "/add_batch", batch{ref, sku, qty, eta}.body()), http.StatusCreated)
}

func lineBody(orderID, sku string, qty int) map[string]any {
	return map[string]any{"orderid": orderID, "sku": sku, "qty": qty}
}

// allocate posts /allocate.
func (s *server) allocate(t testing.TB, orderID, sku string, qty int) *response {
	t.Helper()
	return s.post(t, "/allocate", lineBody(orderID, sku, qty))
}

// mustAllocate allocates, expecting 201, and returns the batch ref.
func (s *server) mustAllocate(t testing.TB, orderID, sku string, qty int) string {
	t.Helper()
	r := s.allocate(t, orderID, sku, qty)
	expect(t, r, http.StatusCreated)
	var b struct {
		BatchRef string `json:"batchref"`
	}
	r.decode(t, &b)
	if b.BatchRef == "" {
		t.Fatalf("%s: empty batchref", r)
	}
	return b.BatchRef
}

// allocation is a row of GET /allocations/{orderid}.
type allocation struct {
	SKU      string `json:"sku"`
	BatchRef string `json:"batchref"`
}

// allocations gets an order's allocations: nil on 404, the rows on 200;
// any other answer fails the test.
func (s *server) allocations(t testing.TB, orderID string) []allocation {
	t.Helper()
	r := s.do(t, http.MethodGet, "/allocations/"+orderID, nil)
	switch r.Status {
	case http.StatusNotFound:
		if _, ok := r.message(); !ok {
			t.Errorf("%s: 404 without a JSON message", r)
		}
		return nil
	case http.StatusOK:
		var rows []allocation
		r.decode(t, &rows)
		if len(rows) == 0 {
			t.Fatalf("%s: 200 with no rows (want 404 when none)", r)
		}
		return rows
	}
	t.Fatalf("%s: want 200 or 404", r)
	return nil
}

// remaining allocates lines of qty 1 of sku until it runs out of stock and
// returns how many it allocated; at most limit+1 are tried.
func (s *server) remaining(t testing.TB, prefix, sku string, limit int) int {
	t.Helper()
	for n := 0; n <= limit; n++ {
		r := s.allocate(t, fmt.Sprintf("%s-%d", prefix, n), sku, 1)
		switch r.Status {
		case http.StatusCreated:
			continue
		case http.StatusConflict:
			return n
		}
		t.Fatalf("%s: want 201 or 409", r)
	}
	t.Fatalf("more than %d units of %s left", limit, sku)
	return -1
}

// names hands out unique names.
var names atomic.Int64

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, names.Add(1))
}

// eventually retries check until it returns nil or timeout passes.
func eventually(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}
