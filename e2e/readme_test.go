package e2e

// The README's shell examples, run as a newcomer would paste them. The
// blocks are read from README.md when the test runs, never copied:
//
//   - every fenced ```sh block is run, in the order of the README, unless
//     the line before its fence is <!-- readme-test: skip (reason) -->,
//     with a reason;
//   - the blocks of flow 5 ("A service away") and of "Bad messages" need a
//     broker: TestREADMEServiceAway runs them, on a redis-server of its own
//     (the Redis Streams URL takes no stream prefix, so a private server is
//     what keeps them apart from other tests); TestREADMEShop runs every
//     other block, against a "stockflow up" of its own;
//   - localhost:5005 and 127.0.0.1:5005 become the test's stockflow up,
//     127.0.0.1:5101 to 5105 (flow 5's ports) and 127.0.0.1:5106 (the keys' example)
//     free ports of the test's;
//     a block that still names one of those ports fails the test;
//   - the working directory is a temporary one holding ./stockflow, the
//     binary TestMain built; "go build -o ./stockflow ./cmd/stockflow"
//     copies it there, and any other go command fails;
//   - each block runs in one long-lived shell (so that its variables and
//     background processes carry over to the next block), under
//     "bash -euo pipefail" and again under "sh -eu": a command that fails
//     fails the test;
//   - after the last block of a section or flow, the test checks what it
//     claims (readmeChecks): the state of the services, polled with
//     eventually (the README's "sleep 1" are for people), and what the
//     blocks printed where that does not wait on the services (the answers
//     of requests, the errors of commands), besides flow 4's two cancels,
//     whose 200 and 409 are the point of the flow.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/testenv"
)

// readmeBlock is a fenced sh block of README.md.
type readmeBlock struct {
	Line    int    // of the opening fence
	Section string // the heading above it
	Flow    string // "flow N" under the shop's bold "**N. ...**", else ""
	Skip    string // the reason given, when marked to be skipped
	Text    string
}

// Label names what the block shows: its flow, or else its section.
func (b readmeBlock) Label() string {
	if b.Flow != "" {
		return b.Flow
	}
	return b.Section
}

var (
	skipMarker = regexp.MustCompile(`^<!--\s*readme-test:\s*skip\s*(?:\((.*)\))?\s*-->\s*$`)
	flowTitle  = regexp.MustCompile(`^\*\*([1-9])\. `)
	fenceOpen  = regexp.MustCompile("^```\\s*(sh|bash|shell)\\s*$")
)

// readmeBlocks reads the shell blocks of README.md, and checks the skip
// markers: each names its reason and stands right before a shell block.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks []readmeBlock
	section, flow := "", ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "#"):
			section, flow = strings.TrimSpace(strings.TrimLeft(line, "#")), ""
			continue
		case flowTitle.MatchString(line):
			flow = "flow " + flowTitle.FindStringSubmatch(line)[1]
			continue
		case skipMarker.MatchString(line):
			if i+1 >= len(lines) || !fenceOpen.MatchString(lines[i+1]) {
				t.Errorf("README.md:%d: a readme-test skip marker must stand on the line right before a ```sh fence", i+1)
			}
			if m := skipMarker.FindStringSubmatch(line); strings.TrimSpace(m[1]) == "" {
				t.Errorf("README.md:%d: a readme-test skip marker gives no reason: write <!-- readme-test: skip (why) -->", i+1)
			}
			continue
		case !fenceOpen.MatchString(line):
			continue
		}
		b := readmeBlock{Line: i + 1, Section: section, Flow: flow}
		if i > 0 {
			if m := skipMarker.FindStringSubmatch(lines[i-1]); m != nil {
				b.Skip = strings.TrimSpace(m[1])
			}
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("README.md:%d: the ```sh block is never closed", b.Line)
		}
		b.Text = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, b)
	}
	return blocks
}

// needsBroker reports whether a block belongs to TestREADMEServiceAway.
func needsBroker(b readmeBlock) bool {
	return b.Flow == "flow 5" || b.Section == "Bad messages"
}

// TestREADMEMarkers checks the rule that picks the blocks the other
// README tests run, without running them: every skip gives its reason,
// and every section whose claims the tests check has blocks to run.
func TestREADMEMarkers(t *testing.T) {
	blocks := readmeBlocks(t)
	run := map[string]int{}
	for _, b := range blocks {
		if b.Skip == "" {
			run[b.Label()]++
		} else {
			t.Logf("README.md:%d (%s): skipped: %s", b.Line, b.Label(), b.Skip)
		}
	}
	for _, c := range readmeChecks {
		if run[c.label] == 0 {
			t.Errorf("README.md has no block to run for %q (renamed, or all skipped?)", c.label)
		}
	}
}

// portsOfREADME are the addresses the README's blocks use, which the
// tests point at their own servers.
var portsOfREADME = regexp.MustCompile(`\b(5005|510[1-6])\b`)

// TestREADMEShop runs the README's blocks that need no broker (the API,
// flows 1 to 4, operating it) against a stockflow up of the test's.
func TestREADMEShop(t *testing.T) {
	for _, sh := range readmeShells {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			needREADMETools(t, sh.name, "curl", "jq")
			srv := start(t)
			e := newReadmeEnv(t, sh, map[string]string{
				"localhost:5005": srv.Addr,
				"127.0.0.1:5005": srv.Addr,
				// "Who may call what" starts a stockflow of its own there.
				"127.0.0.1:5106": testenv.FreeAddr(t),
			}, nil)
			e.runBlocks(func(b readmeBlock) bool { return !needsBroker(b) })
		})
	}
}

// TestREADMEServiceAway runs flow 5 (five processes on Redis Streams, the
// warehouse stopped and started again) and the bad messages fed to them.
func TestREADMEServiceAway(t *testing.T) {
	for _, sh := range readmeShells {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			needREADMETools(t, sh.name, "curl", "jq", "redis-cli")
			r := testenv.StartRedis(t)
			addrs := map[string]string{}
			for p := 5101; p <= 5105; p++ {
				addrs["127.0.0.1:"+strconv.Itoa(p)] = testenv.FreeAddr(t)
			}
			e := newReadmeEnv(t, sh, addrs, []string{"B=redis+streams://" + r.Addr})
			e.runBlocks(needsBroker)
		})
	}
}

// readmeShell is a shell the blocks are pasted into.
type readmeShell struct {
	name string
	args []string
}

var readmeShells = []readmeShell{
	{"bash", []string{"--noprofile", "--norc", "-euo", "pipefail", "-s"}},
	{"sh", []string{"-eu", "-s"}},
}

// needREADMETools skips the test when a program the blocks call is missing.
func needREADMETools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: the README's examples need %s, which is not installed", tool)
		}
	}
}

// readmeEnv is one run of README blocks: a shell, the addresses it was
// pointed at, and what the blocks printed.
type readmeEnv struct {
	t     *testing.T
	sh    *pasteShell
	addrs map[string]string // README address -> the test's
	dir   string            // the shell's working directory
	out   map[string]string // output of the blocks run, by label
}

func newReadmeEnv(t *testing.T, sh readmeShell, addrs map[string]string, env []string) *readmeEnv {
	t.Helper()
	dir := t.TempDir()
	tmp := t.TempDir()
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stockflow"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	env = append([]string{"TMPDIR=" + tmp, "LC_ALL=C"}, env...)
	e := &readmeEnv{t: t, addrs: addrs, dir: dir, out: map[string]string{}}
	e.sh = startPasteShell(t, sh, dir, environ(env...))
	// The README builds ./stockflow with go build; the test has built it.
	prelude := fmt.Sprintf(`go() {
  if [ "$*" = "build -o ./stockflow ./cmd/stockflow" ]; then cp %s ./stockflow; return; fi
  echo "readme test: go $* is not run here: mark its block <!-- readme-test: skip (reason) -->" >&2
  return 1
}`, readmeQuote(binary))
	if _, err := e.sh.run(prelude, time.Minute); err != nil {
		t.Fatalf("preparing the shell: %v", err)
	}
	return e
}

// redirect points a block at the test's servers.
func (e *readmeEnv) redirect(text string) string {
	for _, k := range slices.Sorted(maps.Keys(e.addrs)) {
		text = strings.ReplaceAll(text, k, e.addrs[k])
	}
	return text
}

// runBlocks runs the README's blocks that pick selects, in order, and
// after the last block of each label the checks of that label
// (TestREADMEMarkers makes sure every check has blocks).
func (e *readmeEnv) runBlocks(pick func(readmeBlock) bool) {
	t := e.t
	blocks := slices.DeleteFunc(readmeBlocks(t), func(b readmeBlock) bool { return b.Skip != "" || !pick(b) })
	if len(blocks) == 0 {
		t.Fatal("README.md has no block to run")
	}
	for i, b := range blocks {
		text := e.redirect(b.Text)
		if m := portsOfREADME.FindString(text); m != "" {
			t.Fatalf("README.md:%d (%s) uses port %s in a way the test cannot point at its own server:\n%s", b.Line, b.Label(), m, b.Text)
		}
		out, err := e.sh.run(text, 2*time.Minute)
		t.Logf("README.md:%d (%s):\n%s", b.Line, b.Label(), indentBlock(out))
		if err != nil {
			t.Fatalf("README.md:%d (%s): %v\nthe block:\n%s", b.Line, b.Label(), err, indentBlock(text))
		}
		e.out[b.Label()] += out + "\n"
		if i+1 < len(blocks) && blocks[i+1].Label() == b.Label() {
			continue // the checks follow the label's last block
		}
		for _, c := range readmeChecks {
			if c.label == b.Label() {
				c.check(t, e, e.out[b.Label()])
			}
		}
	}
}

// vars returns the values of the shell's variables.
func (e *readmeEnv) vars(names ...string) []string {
	e.t.Helper()
	var script strings.Builder
	for _, n := range names {
		fmt.Fprintf(&script, "printf '%%s\\n' \"${%s-}\"\n", n)
	}
	out, err := e.sh.run(script.String(), time.Minute)
	if err != nil {
		e.t.Fatalf("reading the shell's variables %v: %v", names, err)
	}
	vals := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(vals) != len(names) {
		e.t.Fatalf("reading the shell's variables %v: got %q", names, out)
	}
	for i, v := range vals {
		if v == "" {
			e.t.Fatalf("the README's blocks left $%s empty", names[i])
		}
	}
	return vals
}

// get decodes GET http://addr/path, where addr is an address the README
// names (pointed at the test's server).
func (e *readmeEnv) get(readmeAddr, path string, v any) error {
	addr, ok := e.addrs[readmeAddr]
	if !ok {
		return fmt.Errorf("no server for %s", readmeAddr)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s (%s): %s %s", path, readmeAddr, resp.Status, strings.TrimSpace(string(body)))
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s (%s): %v: %s", path, readmeAddr, err, body)
	}
	return nil
}

// await polls check with eventually, failing the test with its last word.
func (e *readmeEnv) await(what string, check func() error) {
	e.t.Helper()
	if err := eventually(15*time.Second, check); err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// readmeCheck is what a section or flow of the README claims, checked
// after its last block ran; out is what its blocks printed.
type readmeCheck struct {
	label string
	check func(t *testing.T, e *readmeEnv, out string)
}

const readmeUpAddr = "localhost:5005"

var readmeChecks = []readmeCheck{
	{"The HTTP API", func(t *testing.T, e *readmeEnv, out string) {
		e.await("b-ship-1 shrank to 5, order-1 deallocated from b-ship-2", func() error {
			var b1, b2 struct{ Qty, Allocated int }
			if err := e.get(readmeUpAddr, "/batches/b-ship-1", &b1); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/batches/b-ship-2", &b2); err != nil {
				return err
			}
			if b1.Qty != 5 || b1.Allocated != 0 || b2.Allocated != 0 {
				return fmt.Errorf("b-ship-1 %+v, b-ship-2 %+v", b1, b2)
			}
			return nil
		})
		wantREADMEOutput(t, out, `{"batchref":"b-ship-1"}`, `{"batchref":"b-ship-2"}`, `"status":"ready"`)
	}},
	{"flow 1", func(t *testing.T, e *readmeEnv, out string) {
		o := e.vars("O")[0]
		e.await("alice's order dispatched from b1, in the CRM", func() error {
			var ord order
			var b struct{ Qty, Dispatched int }
			var c customer
			if err := e.get(readmeUpAddr, "/orders/"+o, &ord); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/warehouse/batches/b1", &b); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/customers/alice", &c); err != nil {
				return err
			}
			if ord.Status != "dispatched" || b.Qty != 7 || b.Dispatched != 3 || len(c.Orders) != 1 || c.Orders[0].OrderID != o {
				return fmt.Errorf("order %s %s (%s), b1 %+v, alice's orders %+v", o, ord.Status, ord.events(), b, c.Orders)
			}
			return nil
		})
	}},
	{"flow 2", func(t *testing.T, e *readmeEnv, out string) {
		e.await("bob a VIP, welcomed", func() error {
			var c customer
			var ns []notification
			if err := e.get(readmeUpAddr, "/customers/bob", &c); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/notifications", &ns); err != nil {
				return err
			}
			if !c.VIP || len(c.Orders) != 3 {
				return fmt.Errorf("bob: vip %v, %d orders", c.VIP, len(c.Orders))
			}
			if !slices.ContainsFunc(ns, func(n notification) bool {
				return n.Kind == "vip_welcome" && n.Subject == "Welcome to VIP, bob" && slices.Equal(n.To, []string{"bob@example.com"})
			}) {
				return fmt.Errorf("no welcome to bob among %+v", ns)
			}
			return nil
		})
	}},
	{"flow 3", func(t *testing.T, e *readmeEnv, out string) {
		v := e.vars("O1", "O2")
		e.await("carol's later cart moved to vase-2, then out of stock; the stock team told", func() error {
			var o1, o2 order
			var ns []notification
			if err := e.get(readmeUpAddr, "/orders/"+v[0], &o1); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/orders/"+v[1], &o2); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/notifications", &ns); err != nil {
				return err
			}
			if o1.Status != "reserved" || len(o1.Lines) != 1 || o1.Lines[0].BatchRef != "vase-1" {
				return fmt.Errorf("the earlier cart: %s %+v (%s)", o1.Status, o1.Lines, o1.events())
			}
			if o2.Status != "waiting_for_stock" || !strings.Contains(o2.events(), "reallocated") {
				return fmt.Errorf("the later cart: %s (%s), want waiting_for_stock after reallocated", o2.Status, o2.events())
			}
			if !slices.ContainsFunc(ns, func(n notification) bool {
				return n.Kind == "out_of_stock" && n.Subject == "Out of stock for VASE"
			}) {
				return fmt.Errorf("no \"Out of stock for VASE\" among %+v", ns)
			}
			return nil
		})
	}},
	{"flow 6", func(t *testing.T, e *readmeEnv, out string) {
		v := e.vars("F", "G")
		e.await("frank's and gail's sofas dispatched, gail's first, both told", func() error {
			var f, g order
			var ns []notification
			if err := e.get(readmeUpAddr, "/orders/"+v[0], &f); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/orders/"+v[1], &g); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/notifications", &ns); err != nil {
				return err
			}
			if f.Status != "dispatched" || g.Status != "dispatched" || !strings.Contains(g.detail("stock_arrived"), "sofa-1") ||
				!strings.Contains(f.detail("stock_arrived"), "sofa-2") {
				return fmt.Errorf("frank %s (%s), gail %s (%s)", f.Status, f.events(), g.Status, g.events())
			}
			filled := 0
			for _, n := range ns {
				if n.Kind == "backorder_filled" {
					filled++
				}
			}
			if filled != 2 {
				return fmt.Errorf("%d backorder_filled notifications, want frank's and gail's", filled)
			}
			return nil
		})
	}},
	{"flow 4", func(t *testing.T, e *readmeEnv, out string) {
		v := e.vars("C", "O")
		// The two cancels print their status alone on a line.
		var codes []string
		for _, line := range strings.Split(out, "\n") {
			if line = strings.TrimSpace(line); line == "200" || line == "409" {
				codes = append(codes, line)
			}
		}
		if !slices.Equal(codes, []string{"200", "409"}) {
			t.Errorf("the cancels answered %v, want [200 409]:\n%s", codes, out)
		}
		wantREADMEOutput(t, out, `it can no longer be cancelled`)
		e.await("the cart cancelled, the other order dispatched", func() error {
			var c, o order
			if err := e.get(readmeUpAddr, "/orders/"+v[0], &c); err != nil {
				return err
			}
			if err := e.get(readmeUpAddr, "/orders/"+v[1], &o); err != nil {
				return err
			}
			if c.Status != "cancelled" || o.Status != "dispatched" {
				return fmt.Errorf("cart %s, order %s", c.Status, o.Status)
			}
			return nil
		})
	}},
	{"flow 5", func(t *testing.T, e *readmeEnv, out string) {
		o := e.vars("O")[0]
		for p := 5101; p <= 5105; p++ {
			if err := e.get("127.0.0.1:"+strconv.Itoa(p), "/readyz", nil); err != nil {
				t.Errorf("service on README port %d: %v", p, err)
			}
		}
		e.await("erin's order dispatched by the warehouse started again", func() error {
			var ord order
			if err := e.get("127.0.0.1:5102", "/orders/"+o, &ord); err != nil {
				return err
			}
			if ord.Status != "dispatched" {
				return fmt.Errorf("order %s: %s (%s)", o, ord.Status, ord.events())
			}
			return e.get("127.0.0.1:5103", "/warehouse/shipments/"+o, nil)
		})
		if n := strings.Count(out, ": ready"); n != 5 {
			t.Errorf("stockflow status said ready %d times, want 5", n)
		}
	}},
	{"Bad messages", func(t *testing.T, e *readmeEnv, out string) {
		d := e.vars("D")[0]
		e.await("mirror-1 at 3, the two bad messages dead-lettered", func() error {
			var b struct{ Qty int }
			if err := e.get("127.0.0.1:5101", "/batches/mirror-1", &b); err != nil {
				return err
			}
			if b.Qty != 3 {
				return fmt.Errorf("mirror-1 holds %d, want 3", b.Qty)
			}
			out, err := exec.Command(binary, "dead-letters", "list", "--data", d).CombinedOutput()
			if err != nil {
				return fmt.Errorf("stockflow dead-letters: %v: %s", err, out)
			}
			for _, want := range []string{`qty must not be negative`, `malformed JSON`} {
				if !strings.Contains(string(out), want) {
					return fmt.Errorf("no dead letter %q in:\n%s", want, out)
				}
			}
			return nil
		})
	}},
	{"Who may call what", func(t *testing.T, e *readmeEnv, out string) {
		wantREADMEOutput(t, out,
			`storefront  shop`,
			`stock-team  stock,read`,
			`"message":"No credential`,
			`"message":"Forbidden: storefront may not call POST /add_batch`,
			`{"ref":"k1","sku":"KEYS","qty":5,"eta":null}`,
			`{"qty":5,"allocated":0}`,
			`"message":"Unknown API key`,
		)
		for _, f := range []string{"storefront.key", "stock-team.key"} {
			key, err := os.ReadFile(filepath.Join(e.dir, f))
			if err != nil {
				t.Fatal(err)
			}
			logs, _ := os.ReadFile(filepath.Join(e.dir, "auth.log"))
			if k := strings.TrimSpace(string(key)); k == "" || strings.Contains(string(logs), k) || strings.Contains(out, k) {
				t.Errorf("the key of %s is empty, or shows in the logs or the output", f)
			}
		}
	}},
	{"Operating it", func(t *testing.T, e *readmeEnv, out string) {
		wantREADMEOutput(t, out,
			`{"status":"ok"}`,
			`"status": "ready"`,
			`allocation store`,
			`did you mean "serve"?`,
			`did you mean --http?`,
			`--db: unsupported scheme mysql://`,
			`address already in use`,
			`cannot reach the broker at redis://127.0.0.1:1 within 1s`,
			`data directory ./no-such-dir does not exist`,
			`exit status 1`,
			`exit status 2`,
		)
		if _, err := os.Stat(filepath.Join(e.dir, "no-such-dir")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stockflow dead-letters created the directory it refused (%v)", err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "stockflow-data")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a stockflow up that failed created ./stockflow-data (%v)", err)
		}
	}},
}

// wantREADMEOutput fails the test unless out contains every part.
func wantREADMEOutput(t *testing.T, out string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("the blocks' output lacks %q:\n%s", p, indentBlock(out))
		}
	}
}

func indentBlock(s string) string {
	return "\t" + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t")
}

// readmeQuote quotes s for sh.
func readmeQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// pasteShell is a long-lived shell reading commands from a pipe, in a process
// group of its own: the background processes the blocks start are in it
// too, and are ended with it at the test's cleanup.
type pasteShell struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	dir   string
	n     int

	exited  chan struct{}
	waitErr error

	mu         sync.Mutex
	transcript strings.Builder
}

func startPasteShell(t *testing.T, sh readmeShell, dir string, env []string) *pasteShell {
	t.Helper()
	path, err := exec.LookPath(sh.name)
	if err != nil {
		t.Skipf("skipping: no %s to paste the README's blocks into", sh.name)
	}
	cmd := exec.Command(path, sh.args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Output goes to a pipe of ours, not one exec.Cmd waits on: the
	// background processes keep it open after the shell has gone.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	s := &pasteShell{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), dir: t.TempDir(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		for sc.Scan() {
			s.mu.Lock()
			s.transcript.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			s.lines <- sc.Text()
		}
		r.Close()
		close(s.lines)
	}()
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.stop)
	return s
}

// run runs script in the shell and returns what it printed; an error
// when the shell exited (a command failed) or timeout passed.
func (s *pasteShell) run(script string, timeout time.Duration) (string, error) {
	s.n++
	file := filepath.Join(s.dir, fmt.Sprintf("block-%d.sh", s.n))
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return "", err
	}
	done := fmt.Sprintf("@@readme-test: block %d done@@", s.n)
	// Sourced with stdin from /dev/null, so that no command reads the
	// test's next commands.
	if _, err := fmt.Fprintf(s.stdin, ". %s </dev/null\nprintf '\\n%%s\\n' %s\n", readmeQuote(file), readmeQuote(done)); err != nil {
		return "", fmt.Errorf("the shell is gone: %v", err)
	}
	var out strings.Builder
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				<-s.exited
				return out.String(), fmt.Errorf("the shell exited: %v", s.waitErr)
			}
			if line == done {
				return strings.TrimSuffix(out.String(), "\n"), nil
			}
			out.WriteString(line + "\n")
		case <-s.exited:
			// What it printed before it went may still be in the pipe.
			s.drain(&out)
			return out.String(), fmt.Errorf("a command failed, and the shell exited: %v", s.waitErr)
		case <-deadline:
			return out.String(), fmt.Errorf("not done within %v", timeout)
		}
	}
}

// processGroupRunning reports whether a process of group pgid is still running:
// one that has exited but was not reaped yet (its parent gone, waiting for
// init) does not count.
func processGroupRunning(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return true // no /proc to tell zombies apart: take it as running
	}
	for _, p := range procs {
		stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return true
		}
	}
	return false
}

// drain adds to out the lines that come within 200ms of each other.
func (s *pasteShell) drain(out *strings.Builder) {
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return
			}
			out.WriteString(line + "\n")
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

// stop ends the shell and every process it started: SIGTERM to the
// group, then SIGKILL to what is left after 15 seconds. On failure it
// logs the files *.log the blocks left under the shell's TMPDIR.
func (s *pasteShell) stop() {
	s.stdin.Close()
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for processGroupRunning(pgid) {
		if time.Now().After(deadline) {
			s.t.Errorf("processes of the README's blocks still running 15s after SIGTERM: killing them")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-s.exited
	if !s.t.Failed() {
		return
	}
	s.mu.Lock()
	s.t.Logf("the shell's output, whole:\n%s", indentBlock(s.transcript.String()))
	s.mu.Unlock()
	for _, kv := range s.cmd.Env {
		if tmp, ok := strings.CutPrefix(kv, "TMPDIR="); ok {
			logs, _ := filepath.Glob(filepath.Join(tmp, "*", "*.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				s.t.Logf("%s:\n%s", l, indentBlock(string(data)))
			}
		}
	}
}
