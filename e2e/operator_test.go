package e2e

// What an operator meets: the command line (version, typos, environment
// variables, help), failing fast and clearly at start, refusing bad
// configuration before creating anything, /readyz and "stockflow status"
// through a broker outage, the logs, and GET /orders.
//
// opRegression marks the checks of behaviours that were once broken (a
// Streams outage logged per partition, NATS unreachable read as a usage
// error, ids of one millisecond out of order, the environment overriding
// the command line, serve --help without its variables).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

// opRegression fails the test: a behaviour once broken is back.
func opRegression(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Errorf("regression: "+format, args...)
}

// opResult is what a one-shot stockflow printed, its exit code and how
// long it ran.
type opResult struct {
	Stdout, Stderr string
	Code           int
	Took           time.Duration
	Dir            string // its working directory
}

func (r opResult) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout: %s\nstderr: %s", r.Code, r.Took.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// opRun runs stockflow with args, in an empty working directory of its
// own, with the test's environment less its STOCKFLOW_* variables plus
// env; it waits at most 30s.
func opRun(t testing.TB, env []string, args ...string) opResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = environ(env...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := opResult{Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(start), Dir: cmd.Dir}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("stockflow %s did not finish within 30s:\n%s", strings.Join(args, " "), res)
	case err == nil:
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	default:
		t.Fatalf("stockflow %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// opExpectEmpty fails the test unless dir has no entries or does not
// exist.
func opExpectEmpty(t testing.TB, dir string, what string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s %s holds %v, want nothing", what, dir, names)
	}
}

// opProc is a stockflow the test starts itself, when the e2e launcher's
// --log-format text is in the way.
type opProc struct {
	Base   string
	cmd    *exec.Cmd
	stderr *testenv.LogBuffer
	exited chan struct{}
	client *http.Client
}

// opLaunch starts stockflow with args plus --http on a free port, and
// waits until GET /healthz answers 200. The cleanup kills it if the test
// has not stopped it.
func opLaunch(t testing.TB, env []string, args ...string) *opProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := testenv.FreeAddr(t)
		p := &opProc{
			Base:   "http://" + addr,
			stderr: &testenv.LogBuffer{},
			exited: make(chan struct{}),
			client: &http.Client{Timeout: 10 * time.Second},
		}
		all := append(slices.Clone(args), "--http", addr)
		p.cmd = exec.Command(binary, all...)
		p.cmd.Env = environ(env...)
		p.cmd.Dir = t.TempDir()
		p.cmd.Stdout = p.stderr
		p.cmd.Stderr = p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("starting stockflow: %v", err)
		}
		go func() {
			p.cmd.Wait()
			close(p.exited)
		}()
		t.Cleanup(func() {
			select {
			case <-p.exited:
			default:
				p.cmd.Process.Kill()
				<-p.exited
			}
			if t.Failed() {
				t.Logf("stockflow %s logs:\n%s", strings.Join(all, " "), p.stderr.String())
			}
		})
		err := eventually(10*time.Second, func() error {
			select {
			case <-p.exited:
				return nil
			default:
			}
			resp, err := p.client.Get(p.Base + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /healthz: %s", resp.Status)
			}
			return nil
		})
		select {
		case <-p.exited:
			if attempt < 3 && strings.Contains(p.stderr.String(), "address already in use") {
				continue
			}
			t.Fatalf("stockflow %s exited at start (%v):\n%s", strings.Join(all, " "), p.cmd.ProcessState, p.stderr.String())
		default:
		}
		if err != nil {
			t.Fatalf("stockflow %s not healthy within 10s: %v", strings.Join(all, " "), err)
		}
		return p
	}
}

// stop sends SIGTERM and expects exit code 0 within 20s.
func (p *opProc) stop(t testing.TB) {
	t.Helper()
	p.client.CloseIdleConnections()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("stockflow did not exit within 20s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("stockflow exited with code %d after SIGTERM, want 0", code)
	}
}

// do sends a request with a JSON body (nil for none).
func (p *opProc) do(t testing.TB, method, path string, body any) *response {
	t.Helper()
	var rd io.Reader
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, p.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	r := &response{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header, Body: answer}
	checkExchange(t, req, data, r)
	return r
}

// opLines returns the non-empty lines of s.
func opLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestOperatorVersion: version and --version print one line naming
// stockflow and the Go that built it.
func TestOperatorVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-version"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			res := opRun(t, nil, arg)
			if res.Code != 0 {
				t.Fatalf("stockflow %s: %s", arg, res)
			}
			if !strings.HasPrefix(res.Stdout, "stockflow ") || strings.Count(res.Stdout, "\n") != 1 || !strings.HasSuffix(res.Stdout, "\n") {
				t.Errorf("stockflow %s printed %q, want one line starting \"stockflow \"", arg, res.Stdout)
			}
			if !strings.Contains(res.Stdout, runtime.Version()) {
				t.Errorf("stockflow %s printed %q, without the Go version %s", arg, res.Stdout, runtime.Version())
			}
			if res.Stderr != "" {
				t.Errorf("stockflow %s wrote %q on stderr, want nothing", arg, res.Stderr)
			}
		})
	}
}

// TestOperatorTypos: a mistyped command or flag is refused (exit 2) with
// what was meant, the usage said at most once, and nothing created.
func TestOperatorTypos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"command", []string{"vresion"}, `did you mean "version"`},
		{"command status", []string{"stauts"}, `did you mean "status"`},
		{"command unlike any", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"flag of up", []string{"up", "--htp", ":0"}, "did you mean --http?"},
		{"flag of serve", []string{"serve", "allocation", "--brokr", "redis://x"}, "did you mean --broker?"},
		{"flag of dead-letters", []string{"dead-letters", "--limt", "3"}, "did you mean --limit?"},
		{"flag unlike any", []string{"up", "--frobnicate"}, "stockflow up --help lists the flags"},
		{"argument left over", []string{"up", "now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := opRun(t, nil, tt.args...)
			if res.Code != 2 {
				t.Errorf("stockflow %s: %s\nwant exit code 2", strings.Join(tt.args, " "), res)
			}
			if !strings.Contains(res.Stderr, tt.want) {
				t.Errorf("stockflow %s: stderr %q, want %q in it", strings.Join(tt.args, " "), res.Stderr, tt.want)
			}
			if n := strings.Count(res.Stderr+res.Stdout, "Usage:"); n > 1 {
				t.Errorf("stockflow %s printed the usage %d times:\n%s", strings.Join(tt.args, " "), n, res.Stderr)
			}
			if res.Stdout != "" {
				t.Errorf("stockflow %s printed %q on stdout, want nothing", strings.Join(tt.args, " "), res.Stdout)
			}
			opExpectEmpty(t, res.Dir, "working directory")
		})
	}
}

// TestOperatorEnvironment: every flag has a STOCKFLOW_* variable, named by
// the help; the command line wins; a bad value is refused naming it.
func TestOperatorEnvironment(t *testing.T) {
	t.Parallel()

	// The log format, from the environment and from the command line.
	formats := []struct {
		name  string
		env   []string
		args  []string
		check func(first string) error
	}{
		{"STOCKFLOW_LOG_FORMAT=text", []string{"STOCKFLOW_LOG_FORMAT=text"}, nil, func(first string) error {
			if !strings.HasPrefix(first, "time=") {
				return errors.New(`want a text line, starting "time="`)
			}
			return nil
		}},
		{"command line wins", []string{"STOCKFLOW_LOG_FORMAT=text"}, []string{"--log-format", "json"}, func(first string) error {
			var m map[string]any
			return json.Unmarshal([]byte(first), &m)
		}},
		{"default json", nil, nil, func(first string) error {
			var m map[string]any
			return json.Unmarshal([]byte(first), &m)
		}},
	}
	for _, tt := range formats {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := opLaunch(t, tt.env, append([]string{"up", "--data", t.TempDir()}, tt.args...)...)
			p.stop(t)
			lines := opLines(p.stderr.String())
			if len(lines) == 0 {
				t.Fatal("stockflow logged nothing")
			}
			if err := tt.check(lines[0]); err != nil {
				t.Errorf("first log line %q: %v", lines[0], err)
			}
		})
	}

	// STOCKFLOW_LOG_LEVEL=debug shows each request.
	t.Run("STOCKFLOW_LOG_LEVEL=debug", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s := startWith(t, options{Args: []string{"up", "--data", dir}, Dir: dir, Env: []string{"STOCKFLOW_LOG_LEVEL=debug"}})
		expect(t, s.do(t, http.MethodGet, "/readyz", nil), http.StatusOK)
		if err := eventually(5*time.Second, func() error {
			if !strings.Contains(s.logs.String(), "path=/readyz") {
				return errors.New("no request line for GET /readyz at debug level")
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	})

	// STOCKFLOW_HTTP names a port taken: --http, given too, wins.
	t.Run("STOCKFLOW_HTTP: command line wins", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		dir := t.TempDir()
		s := startWith(t, options{Args: []string{"up", "--data", dir}, Dir: dir, Env: []string{"STOCKFLOW_HTTP=" + ln.Addr().String()}})
		expect(t, s.do(t, http.MethodGet, "/healthz", nil), http.StatusOK)
	})

	// Bad values in the environment are refused before anything is made.
	bad := []struct {
		name  string
		env   []string
		args  []string
		names []string // one of them in stderr
	}{
		{"STOCKFLOW_LOG_LEVEL=bogus", []string{"STOCKFLOW_LOG_LEVEL=bogus"}, nil, []string{"STOCKFLOW_LOG_LEVEL", "--log-level"}},
		{"STOCKFLOW_LOG_FORMAT=xml", []string{"STOCKFLOW_LOG_FORMAT=xml"}, nil, []string{"STOCKFLOW_LOG_FORMAT", "--log-format"}},
		{"STOCKFLOW_GRACE=bogus", []string{"STOCKFLOW_GRACE=bogus"}, nil, []string{"STOCKFLOW_GRACE"}},
		{"STOCKFLOW_CONNECT_TIMEOUT=soon", []string{"STOCKFLOW_CONNECT_TIMEOUT=soon"}, nil, []string{"STOCKFLOW_CONNECT_TIMEOUT"}},
		{"STOCKFLOW_REPLAY=maybe", []string{"STOCKFLOW_REPLAY=maybe"}, nil, []string{"STOCKFLOW_REPLAY"}},
		{"STOCKFLOW_DB=mysql", []string{"STOCKFLOW_DB=mysql://u:p@h/db"}, nil, []string{"unsupported scheme mysql://"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "data")
			res := opRun(t, tt.env, append([]string{"up", "--data", data, "--http", testenv.FreeAddr(t)}, tt.args...)...)
			if res.Code != 2 {
				t.Errorf("%s stockflow up: %s\nwant exit code 2", strings.Join(tt.env, " "), res)
			}
			if !slices.ContainsFunc(tt.names, func(n string) bool { return strings.Contains(res.Stderr, n) }) {
				t.Errorf("%s stockflow up: stderr %q names none of %q", strings.Join(tt.env, " "), res.Stderr, tt.names)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s stockflow up: the data directory was created (%v)", strings.Join(tt.env, " "), err)
			}
		})
	}

	// A bad value in the environment that the command line overrides.
	t.Run("bad variable overridden", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		// --http names a port taken: the command fails there if it gets
		// that far, with exit code 1.
		res := opRun(t, []string{"STOCKFLOW_GRACE=bogus"}, "up", "--grace", "1s", "--data", filepath.Join(t.TempDir(), "data"), "--http", ln.Addr().String())
		if res.Code == 2 && strings.Contains(res.Stderr, "STOCKFLOW_GRACE") {
			opRegression(t, "STOCKFLOW_GRACE=bogus stockflow up --grace 1s exits 2 on the variable the command line overrides: %q", res.Stderr)
		}
	})

	// Every flag of every command names its variable in the help.
	helps := []struct {
		args []string
		bug  string
	}{
		{[]string{"up", "--help"}, ""},
		{[]string{"help", "up"}, ""},
		{[]string{"serve", "allocation", "--help"}, ""},
		{[]string{"serve", "--help"}, "stockflow serve --help shows the flags before the environment is applied: without their (env ...)"},
		{[]string{"migrate", "--help"}, ""},
		{[]string{"dead-letters", "--help"}, ""},
		{[]string{"load", "--help"}, ""},
		{[]string{"status", "--help"}, ""},
	}
	flagLine := regexp.MustCompile(`^  -([a-z][a-z0-9-]*)`)
	for _, tt := range helps {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			res := opRun(t, nil, tt.args...)
			if res.Code != 0 {
				t.Fatalf("stockflow %s: %s", strings.Join(tt.args, " "), res)
			}
			help := res.Stderr + res.Stdout
			if n := strings.Count(help, "Usage:"); n != 1 {
				t.Errorf("stockflow %s shows the usage %d times, want once", strings.Join(tt.args, " "), n)
			}
			// Each flag: its line, then its indented description.
			blocks := map[string]string{}
			var current string
			for _, l := range strings.Split(help, "\n") {
				if m := flagLine.FindStringSubmatch(l); m != nil {
					current = m[1]
				}
				if current != "" {
					blocks[current] += l + "\n"
				}
			}
			if len(blocks) == 0 {
				t.Fatalf("stockflow %s lists no flags:\n%s", strings.Join(tt.args, " "), help)
			}
			var missing []string
			for name, block := range blocks {
				want := "(env STOCKFLOW_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + ")"
				if !strings.Contains(block, want) {
					missing = append(missing, "--"+name+" "+want)
				}
			}
			slices.Sort(missing)
			if len(missing) > 0 {
				if tt.bug != "" {
					opRegression(t, "%s; missing: %v", tt.bug, missing)
				} else {
					t.Errorf("stockflow %s: flags without their variable: %v\n%s", strings.Join(tt.args, " "), missing, help)
				}
			}
			if tt.args[0] == "up" || tt.args[1] == "up" {
				if !strings.Contains(blocks["smtp-from"], "(env STOCKFLOW_SMTP_FROM)") {
					t.Errorf("stockflow %s: --smtp-from does not show (env STOCKFLOW_SMTP_FROM):\n%s", strings.Join(tt.args, " "), blocks["smtp-from"])
				}
			}
		})
	}
}

// TestOperatorUnreachableAtStart: a database or broker that does not
// answer at start makes stockflow exit promptly, saying which and where,
// without its password, and without creating databases.
func TestOperatorUnreachableAtStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		flags  string // with %d, the closed port
		want   string // in stderr
		secret string // never in stderr
		bug    string // a known bug: the exit code and want are opRegression's
	}{
		{"redis", "--broker redis://127.0.0.1:%d", "cannot reach the broker", "", ""},
		{"redis with a password", "--broker redis://:hunter2@127.0.0.1:%d", "cannot reach the broker", "hunter2", ""},
		{"redis+streams", "--broker redis+streams://127.0.0.1:%d", "cannot reach the broker", "", ""},
		{"kafka", "--broker kafka://127.0.0.1:%d", "cannot reach the broker", "", ""},
		{"nats", "--broker nats://127.0.0.1:%d", "cannot reach the broker", "",
			"an unreachable NATS is a usage error (exit 2), at once, not retried for --connect-timeout and not said as \"cannot reach the broker\""},
		{"postgres", "--db postgres://postgres@127.0.0.1:%d/x?sslmode=disable", "cannot reach PostgreSQL", "", ""},
		{"postgres with a password", "--db postgres://postgres:hunter2@127.0.0.1:%d/x?sslmode=disable", "cannot reach PostgreSQL", "hunter2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			port := testenv.FreePort(t) // free a moment ago: nothing listens
			addr := "127.0.0.1:" + strconv.Itoa(port)
			data := filepath.Join(t.TempDir(), "data")
			args := append([]string{"up", "--data", data, "--http", testenv.FreeAddr(t), "--connect-timeout", "1s"},
				strings.Fields(fmt.Sprintf(tt.flags, port))...)
			res := opRun(t, nil, args...)
			cmdline := "stockflow " + strings.Join(args, " ")
			if res.Code == 0 {
				t.Fatalf("%s: %s\nwant a failure", cmdline, res)
			}
			if res.Took > 5*time.Second {
				t.Errorf("%s took %v to fail, want at most ~5s with --connect-timeout 1s", cmdline, res.Took)
			}
			if !strings.Contains(res.Stderr, addr) {
				t.Errorf("%s: stderr does not name %s:\n%s", cmdline, addr, res.Stderr)
			}
			if tt.secret != "" && strings.Contains(res.Stderr+res.Stdout, tt.secret) {
				t.Errorf("%s: the password shows:\n%s", cmdline, res.Stderr)
			}
			if res.Code != 1 || !strings.Contains(res.Stderr, tt.want) {
				if tt.bug != "" {
					opRegression(t, "%s: %s (exit %d: %s)", cmdline, tt.bug, res.Code, strings.TrimSpace(res.Stderr))
				} else {
					t.Errorf("%s: %s\nwant exit code 1 and %q", cmdline, res, tt.want)
				}
			}
			// PostgreSQL needs no data directory, and none is made. The
			// broker is reached after the data directory is checked (and
			// made), but before any database is created in it.
			if strings.HasPrefix(tt.flags, "--db") {
				if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: the data directory was created (%v), want nothing", cmdline, err)
				}
			} else {
				opExpectEmpty(t, data, "data directory")
			}
			opExpectEmpty(t, res.Dir, "working directory")
		})
	}
}

// TestOperatorBadConfiguration: configuration that cannot work is refused
// before anything is created.
func TestOperatorBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    func(t *testing.T, data string) []string
		code    int
		want    string   // in stderr
		secrets []string // never in stderr
		mkdata  bool     // the data directory exists, empty, beforehand
	}{
		{"db mysql", func(t *testing.T, data string) []string {
			return []string{"up", "--data", data, "--http", testenv.FreeAddr(t), "--db", "mysql://u:p@h/db"}
		}, 2, "unsupported scheme mysql://", []string{"u:p@", "mysql://u:p"}, false},
		{"db mysql with a long password", func(t *testing.T, data string) []string {
			return []string{"up", "--data", data, "--http", testenv.FreeAddr(t), "--db", "mysql://admin:hunter2@db.example:3306/shop"}
		}, 2, "unsupported scheme mysql://", []string{"hunter2"}, false},
		{"db sqlite", func(t *testing.T, data string) []string {
			return []string{"up", "--data", data, "--http", testenv.FreeAddr(t), "--db", "sqlite:///x.db"}
		}, 2, "unsupported scheme sqlite://", nil, false},
		{"serve db sqlite", func(t *testing.T, data string) []string {
			return []string{"serve", "allocation", "--data", data, "--http", testenv.FreeAddr(t), "--db", "sqlite:///x.db"}
		}, 2, "unsupported scheme sqlite://", nil, false},
		{"broker foo", func(t *testing.T, data string) []string {
			return []string{"up", "--data", data, "--http", testenv.FreeAddr(t), "--broker", "foo://x"}
		}, 2, "unsupported scheme", nil, false},
		{"broker foo with a password", func(t *testing.T, data string) []string {
			return []string{"up", "--data", data, "--http", testenv.FreeAddr(t), "--broker", "foo://u:hunter2@x"}
		}, 2, "unsupported scheme foo://", []string{"hunter2"}, false},
		{"http port busy", func(t *testing.T, data string) []string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return []string{"up", "--data", data, "--http", ln.Addr().String()}
		}, 1, "address already in use", nil, true},
		{"dead-letters without its directory", func(t *testing.T, data string) []string {
			return []string{"dead-letters", "--data", data}
		}, 2, "does not exist", nil, false},
		{"unknown service", func(t *testing.T, data string) []string {
			return []string{"serve", "billing", "--data", data, "--http", testenv.FreeAddr(t)}
		}, 2, `unknown service "billing"`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "data")
			if tt.mkdata {
				if err := os.Mkdir(data, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			args := tt.args(t, data)
			cmdline := "stockflow " + strings.Join(args, " ")
			res := opRun(t, nil, args...)
			if res.Code != tt.code {
				t.Errorf("%s: %s\nwant exit code %d", cmdline, res, tt.code)
			}
			if !strings.Contains(res.Stderr, tt.want) {
				t.Errorf("%s: stderr %q, want %q in it", cmdline, res.Stderr, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(res.Stderr+res.Stdout, s) {
					t.Errorf("%s: the credentials %q show:\n%s", cmdline, s, res.Stderr)
				}
			}
			if tt.mkdata {
				opExpectEmpty(t, data, "data directory")
			} else if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: the data directory was created (%v)", cmdline, err)
			}
			opExpectEmpty(t, res.Dir, "working directory")
		})
	}
}

// opReport is the body of GET /readyz.
type opReport struct {
	Status       string `json:"status"`
	Dependencies []struct {
		Name  string    `json:"name"`
		OK    bool      `json:"ok"`
		Since time.Time `json:"since"`
		Error string    `json:"error"`
	} `json:"dependencies"`
}

// dep returns the dependency called name, and whether there is one.
func (r opReport) dep(name string) (ok bool, since time.Time, errText string, found bool) {
	for _, d := range r.Dependencies {
		if d.Name == name {
			return d.OK, d.Since, d.Error, true
		}
	}
	return false, time.Time{}, "", false
}

// readyz gets GET /readyz, expecting a readiness report.
func opReadyz(t testing.TB, s *server) (int, opReport) {
	t.Helper()
	r, err := s.request(context.Background(), http.MethodGet, "/readyz", nil, nil)
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	var rep opReport
	if err := json.Unmarshal(r.Body, &rep); err != nil || !r.isJSON() {
		t.Fatalf("%s: not a JSON readiness report (%v)", r, err)
	}
	return r.Status, rep
}

// TestOperatorReadiness: /readyz names what stockflow needs and whether it
// answers; "stockflow status" says it; a broker outage makes it 503 (not
// /healthz) for as long as it lasts, logged once, not per retry.
func TestOperatorReadiness(t *testing.T) {
	t.Parallel()

	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		started := time.Now()
		s := start(t)
		status, rep := opReadyz(t, s)
		if status != http.StatusOK || rep.Status != "ready" {
			t.Fatalf("GET /readyz: %d %+v, want 200 ready", status, rep)
		}
		stores := []string{"allocation store", "orders store", "warehouse store", "crm store", "notifications store", "flows store"}
		var names []string
		for _, d := range rep.Dependencies {
			names = append(names, d.Name)
		}
		slices.Sort(names)
		want := slices.Sorted(slices.Values(stores))
		if !slices.Equal(names, want) {
			t.Errorf("GET /readyz names %v, want %v", names, want)
		}
		for _, d := range rep.Dependencies {
			if !d.OK || d.Error != "" {
				t.Errorf("GET /readyz: %s ok=%v error=%q, want ok", d.Name, d.OK, d.Error)
			}
			if d.Since.Before(started.Add(-time.Minute)) || d.Since.After(time.Now().Add(time.Minute)) {
				t.Errorf("GET /readyz: %s since %v, want a time since it started (%v)", d.Name, d.Since, started)
			}
		}
		r := s.do(t, http.MethodGet, "/healthz", nil)
		expect(t, r, http.StatusOK)
		var h struct{ Status string }
		r.decode(t, &h)
		if h.Status != "ok" {
			t.Errorf("%s: want {\"status\":\"ok\"}", r)
		}
		res := opRun(t, nil, "status", "--url", s.Base)
		if res.Code != 0 || !strings.Contains(res.Stdout, ": ready") || strings.Contains(res.Stdout, "DOWN") {
			t.Errorf("stockflow status --url %s: %s\nwant exit 0, ready, nothing DOWN", s.Base, res)
		}
		for _, name := range stores {
			if !strings.Contains(res.Stdout, name) {
				t.Errorf("stockflow status does not list %q:\n%s", name, res.Stdout)
			}
		}
	})

	t.Run("status of nothing", func(t *testing.T) {
		t.Parallel()
		url := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		res := opRun(t, nil, "status", "--url", url)
		if res.Code != 2 || !strings.Contains(res.Stderr, "cannot connect to") {
			t.Errorf("stockflow status --url %s: %s\nwant exit code 2 and \"cannot connect to\"", url, res)
		}
	})

	for _, scheme := range []string{"redis+streams", "redis"} {
		t.Run("outage of "+scheme, func(t *testing.T) {
			t.Parallel()
			opBrokerOutage(t, scheme)
		})
	}
}

// opWarnTime, opWarnErr and opWarnRetry are what differs between two warnings
// of the same kind.
var (
	opWarnTime  = regexp.MustCompile(`^time=\S+ `)
	opWarnErr   = regexp.MustCompile(` err=("(\\.|[^"\\])*"|\S+)`)
	opWarnRetry = regexp.MustCompile(` retry_in_ms=\d+`)
)

// opRedisWarnings returns the text log's warning lines that mention Redis.
func opRedisWarnings(logs string) []string {
	var out []string
	for _, l := range opLines(logs) {
		if strings.Contains(l, "level=WARN") && strings.Contains(strings.ToLower(l), "redis") {
			out = append(out, l)
		}
	}
	return out
}

func opBrokerOutage(t *testing.T, scheme string) {
	rds := testenv.StartRedis(t)
	brokerURL := scheme + "://" + rds.Addr
	brokerDep := "broker " + brokerURL
	s := startWith(t, options{Args: []string{"serve", "allocation", "--broker", brokerURL}})

	status, rep := opReadyz(t, s)
	if status != http.StatusOK || rep.Status != "ready" {
		t.Fatalf("GET /readyz before the outage: %d %+v, want 200 ready", status, rep)
	}
	ok, brokerSince, _, found := rep.dep(brokerDep)
	if !found || !ok {
		t.Fatalf("GET /readyz before the outage: %+v, want %q ok", rep, brokerDep)
	}
	_, storeSince, _, found := rep.dep("allocation store")
	if !found {
		t.Fatalf("GET /readyz: %+v, want the allocation store", rep)
	}
	before := len(opRedisWarnings(s.logs.String()))

	killed := time.Now()
	rds.Kill()
	var down opReport
	if err := eventually(10*time.Second, func() error {
		status, rep := opReadyz(t, s)
		ok, _, errText, _ := rep.dep(brokerDep)
		if status != http.StatusServiceUnavailable || rep.Status != "unavailable" || ok || errText == "" {
			return fmt.Errorf("GET /readyz: %d %+v, want 503 unavailable with %q not ok and its error", status, rep, brokerDep)
		}
		down = rep
		return nil
	}); err != nil {
		t.Fatalf("after killing %s: %v", rds.Addr, err)
	}
	if _, since, _, _ := down.dep(brokerDep); !since.After(brokerSince) || since.Before(killed.Add(-time.Second)) {
		t.Errorf("GET /readyz: broker down since %v, want a time after the kill (%v)", since, killed)
	}
	if ok, since, _, _ := down.dep("allocation store"); !ok || !since.Equal(storeSince) {
		t.Errorf("GET /readyz during the outage: allocation store ok=%v since %v, want ok since %v", ok, since, storeSince)
	}
	expect(t, s.do(t, http.MethodGet, "/healthz", nil), http.StatusOK)

	res := opRun(t, nil, "status", "--url", s.Base)
	if res.Code != 1 || !strings.Contains(res.Stdout, "DOWN") || !strings.Contains(res.Stdout, brokerDep) {
		t.Errorf("stockflow status --url %s during the outage: %s\nwant exit code 1, %s DOWN", s.Base, res, brokerDep)
	}

	// About 3s of outage, for the retries to show in the logs if each is
	// logged.
	time.Sleep(time.Until(killed.Add(3 * time.Second)))
	expect(t, s.do(t, http.MethodGet, "/healthz", nil), http.StatusOK)
	warnings := opRedisWarnings(s.logs.String())[before:]
	if len(warnings) == 0 {
		t.Errorf("no warning line about Redis after 3s of outage")
	}
	seen := map[string]int{}
	for _, w := range warnings {
		key := opWarnRetry.ReplaceAllString(opWarnErr.ReplaceAllString(opWarnTime.ReplaceAllString(w, ""), ""), "")
		seen[key]++
	}
	for key, n := range seen {
		if n > 1 {
			t.Errorf("logged %d times in 3s of outage, want once: %s", n, key)
		}
	}
	if len(warnings) > 3 {
		opRegression(t, "%s: one Redis outage of 3s is logged as %d warning lines (one per stream and partition), want one; the first: %s",
			scheme, len(warnings), warnings[0])
	}

	restarted := time.Now()
	rds.Restart(t)
	if err := eventually(15*time.Second, func() error {
		status, rep := opReadyz(t, s)
		if ok, since, _, _ := rep.dep(brokerDep); status != http.StatusOK || rep.Status != "ready" || !ok || since.Before(restarted.Add(-time.Second)) {
			return fmt.Errorf("GET /readyz: %d %+v, want 200 ready, %q ok since the restart (%v)", status, rep, brokerDep, restarted)
		}
		return nil
	}); err != nil {
		t.Errorf("after restarting %s: %v", rds.Addr, err)
	}
	expect(t, s.do(t, http.MethodGet, "/healthz", nil), http.StatusOK)
}

// TestOperatorJSONLogs: in JSON mode every line is a JSON object; request
// lines carry duration_ms, a number; at the default level fast requests
// are not logged.
func TestOperatorJSONLogs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		level []string
		debug bool
	}{
		{"debug", []string{"--log-level", "debug"}, true},
		{"default level", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := opLaunch(t, nil, append([]string{"up", "--data", t.TempDir(), "--log-format", "json"}, tt.level...)...)
			sku, ref := uniq("sku"), uniq("batch")
			expect(t, p.do(t, http.MethodPost, "/add_batch", batch{ref, sku, 10, ""}.body()), http.StatusCreated)
			expect(t, p.do(t, http.MethodPost, "/allocate", lineBody(uniq("order"), sku, 2)), http.StatusCreated)
			expect(t, p.do(t, http.MethodPost, "/allocate", lineBody(uniq("order"), sku, 20)), http.StatusConflict)
			expect(t, p.do(t, http.MethodGet, "/no/such/route", nil), http.StatusNotFound)
			p.stop(t)

			requests := map[string]bool{}
			lines := opLines(p.stderr.String())
			if len(lines) == 0 {
				t.Fatal("nothing logged")
			}
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Errorf("log line is not a JSON object (%v): %s", err, l)
					continue
				}
				for _, k := range []string{"time", "level", "msg"} {
					if _, ok := m[k].(string); !ok {
						t.Errorf("log line without a string %q: %s", k, l)
					}
				}
				if m["msg"] != "request" {
					continue
				}
				if _, ok := m["duration_ms"].(float64); !ok {
					t.Errorf("request line without a number duration_ms: %s", l)
				}
				if _, ok := m["duration"]; ok {
					t.Errorf("request line with a \"duration\" key: %s", l)
				}
				requests[fmt.Sprint(m["method"], " ", m["path"])] = true
				if !tt.debug {
					// Only a slow request or a failure is logged at info.
					slow, _ := m["slow"].(bool)
					status, _ := m["status"].(float64)
					if !slow && status < 500 {
						t.Errorf("a fast request logged at the default level: %s", l)
					}
				}
			}
			if tt.debug {
				for _, want := range []string{"POST /add_batch", "POST /allocate", "GET /no/such/route"} {
					if !requests[want] {
						t.Errorf("no request line for %s at debug level; logged: %v", want, requests)
					}
				}
			}
			if !strings.Contains(p.stderr.String(), `"msg":"stockflow up"`) {
				t.Errorf("no \"stockflow up\" line:\n%s", p.stderr.String())
			}
		})
	}
}

// opOrder is an order as GET /orders lists it.
type opOrder struct {
	ID        string    `json:"orderid"`
	Customer  string    `json:"customer"`
	CreatedAt time.Time `json:"created_at"`
}

// opOrders gets a page of GET /orders and its next link ("" for none).
func opOrders(t testing.TB, s *server, path string) ([]opOrder, string) {
	t.Helper()
	r := s.do(t, http.MethodGet, path, nil)
	expect(t, r, http.StatusOK)
	var list []opOrder
	r.decode(t, &list)
	link := r.Header.Get("Link")
	if link == "" {
		return list, ""
	}
	m := regexp.MustCompile(`^<([^>]+)>;\s*rel="next"$`).FindStringSubmatch(link)
	if m == nil {
		t.Fatalf("%s: Link %q, want <URL>; rel=\"next\"", r, link)
	}
	return list, m[1]
}

func opIDs(list []opOrder) []string {
	ids := make([]string, len(list))
	for i, o := range list {
		ids[i] = o.ID
	}
	return ids
}

// TestOperatorOrders: GET /orders lists orders newest first, a customer's
// alone, by pages linked with rel="next"; a bad limit is a 400.
func TestOperatorOrders(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, bob := uniq("alice o'neil & co"), uniq("bob")
	create := func(t *testing.T, customer string) opOrder {
		t.Helper()
		r := s.post(t, "/orders", map[string]any{"customer": customer, "email": "shop@example.com"})
		expect(t, r, http.StatusCreated)
		var o opOrder
		r.decode(t, &o)
		if o.ID == "" || o.Customer != customer {
			t.Fatalf("%s: want an order of %s", r, customer)
		}
		return o
	}
	// Each order in a millisecond of its own: see "same millisecond".
	var created []opOrder
	for _, c := range []string{alice, bob, alice, bob, alice} {
		if n := len(created); n > 0 {
			for time.Now().UnixMilli() <= created[n-1].CreatedAt.UnixMilli() {
				time.Sleep(200 * time.Microsecond)
			}
		}
		created = append(created, create(t, c))
	}
	newestFirst := func(customer string) []string {
		var ids []string
		for _, o := range slices.Backward(created) {
			if customer == "" || o.Customer == customer {
				ids = append(ids, o.ID)
			}
		}
		return ids
	}

	t.Run("a customer's", func(t *testing.T) {
		for _, c := range []string{alice, bob} {
			list, next := opOrders(t, s, "/orders?customer="+url.QueryEscape(c))
			if got, want := opIDs(list), newestFirst(c); !slices.Equal(got, want) {
				t.Errorf("GET /orders?customer=%s = %v, want %v (newest first)", c, got, want)
			}
			if next != "" {
				t.Errorf("GET /orders?customer=%s: a next link %q on a page that is not full", c, next)
			}
		}
	})

	t.Run("everyone's", func(t *testing.T) {
		list, _ := opOrders(t, s, "/orders")
		if got, want := opIDs(list), newestFirst(""); !slices.Equal(got, want) {
			t.Errorf("GET /orders = %v, want %v (all, newest first)", got, want)
		}
	})

	t.Run("pages", func(t *testing.T) {
		want := newestFirst(alice)
		path := "/orders?customer=" + url.QueryEscape(alice) + "&limit=1"
		var got []string
		for page := 0; path != ""; page++ {
			if page > len(want) {
				t.Fatalf("more than %d pages: %v", len(want)+1, got)
			}
			list, next := opOrders(t, s, path)
			if len(list) > 1 {
				t.Fatalf("GET %s: %d orders, want at most 1", path, len(list))
			}
			for _, o := range list {
				if o.Customer != alice {
					t.Errorf("GET %s: an order of %q, want %q's only", path, o.Customer, alice)
				}
			}
			if len(list) == 1 && next == "" && page < len(want)-1 {
				t.Fatalf("GET %s: a full page without a next link", path)
			}
			got = append(got, opIDs(list)...)
			path = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("following the next links: %v, want %v", got, want)
		}
	})

	t.Run("bad limit", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=abc", "limit=-1", "limit=501", "customer=" + url.QueryEscape(alice) + "&limit=0"} {
			r := s.do(t, http.MethodGet, "/orders?"+q, nil)
			expect(t, r, http.StatusBadRequest)
			msg, ok := r.message()
			if !ok || !r.isJSON() || !strings.Contains(strings.ToLower(msg), "limit") {
				t.Errorf("%s: want a JSON message about the limit", r)
			}
		}
	})

	// Orders made within one millisecond are listed newest first too.
	t.Run("same millisecond", func(t *testing.T) {
		carol := uniq("carol")
		var ids []string
		for range 100 {
			ids = append(ids, create(t, carol).ID)
		}
		list, _ := opOrders(t, s, "/orders?customer="+carol+"&limit=100")
		got := opIDs(list)
		want := slices.Clone(ids)
		slices.Reverse(want)
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Fatalf("GET /orders?customer=%s = %v, want the 100 orders made", carol, got)
		}
		var swapped []string
		for i := range got {
			if got[i] != want[i] {
				swapped = append(swapped, fmt.Sprintf("#%d %s (created_at %s)", i, got[i], list[i].CreatedAt.Format(time.RFC3339Nano)))
			}
		}
		if len(swapped) > 0 {
			opRegression(t, "GET /orders is not newest first for orders made in the same millisecond "+
				"(order ids are sorted, and messaging.NewID orders ids by millisecond only, then at random): %d of 100 out of place: %v",
				len(swapped), swapped)
		}
	})
}
