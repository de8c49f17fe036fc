package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/secure"
)

// checkDB refuses a --db that is not a PostgreSQL URL, before anything is
// opened.
func checkDB(db string) error {
	if db == "" {
		return nil
	}
	u, err := url.Parse(db)
	if !strings.Contains(db, "://") {
		return usageError{errors.New("--db: not a URL: use postgres://user@host:port/db, or leave --db empty for SQLite under --data")}
	}
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		scheme := "none"
		if err == nil && u.Scheme != "" {
			scheme = u.Scheme + "://"
		} else if i := strings.Index(db, "://"); i > 0 {
			scheme = db[:i+3]
		}
		return usageError{fmt.Errorf("--db: unsupported scheme %s: use postgres://user@host:port/db, or leave --db empty for SQLite under --data", scheme)}
	}
	return nil
}

// dbHost names the server of a PostgreSQL URL, without its credentials.
func dbHost(db string) string {
	if u, err := url.Parse(db); err == nil && u.Host != "" {
		return u.Host
	}
	return "the default host"
}

// checkDataDir makes sure stockflow can keep its SQLite files in dir,
// creating it when create is set; an error names the directory.
func checkDataDir(dir string, create bool) error {
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return usageError{fmt.Errorf("data directory %s does not exist (--data)", dir)}
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !st.IsDir():
		return usageError{fmt.Errorf("data directory %s is not a directory (--data)", dir)}
	}
	return nil
}

// writable checks that stockflow can make files in dir; an error names it.
func writable(dir string) error {
	probe, err := os.CreateTemp(dir, ".stockflow-probe-*")
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, errors.Unwrap(err))
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// reach calls ping until it succeeds or timeout passes, and names what
// could not be reached, and why, when it does not succeed.
func reach(ctx context.Context, what string, timeout time.Duration, ping func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, min(timeout, 2*time.Second))
		err := secure.Explain(ping(pctx))
		pcancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, secure.ErrCertificate) {
			// Waiting will not make the certificate acceptable.
			return fmt.Errorf("cannot reach %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cannot reach %s within %v (--connect-timeout): %w", what, timeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// pingPostgres connects to db once.
func pingPostgres(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// redacted is a broker URL fit for logs and errors: without its secrets.
func redacted(raw string) string {
	if raw == "" {
		return "inproc"
	}
	return secure.URL(raw)
}

// A check is one dependency /readyz reports on.
type check struct {
	name string
	// needed: the service cannot work without it (503 when down).
	needed bool
	probe  func(ctx context.Context) error
}

// readiness answers GET /readyz: each dependency, whether it answers, and
// since when it has (or has not).
type readiness struct {
	checks []check

	mu     sync.Mutex
	state  map[string]dependency
	last   readyReport // the latest report, made at lastAt
	lastAt time.Time
}

// dependency is what /readyz says of one dependency.
type dependency struct {
	Name  string    `json:"name"`
	OK    bool      `json:"ok"`
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"`
}

// readyReport is the body of /readyz.
type readyReport struct {
	Status       string       `json:"status"` // ready or unavailable
	Dependencies []dependency `json:"dependencies"`
}

func newReadiness(checks []check) *readiness {
	return &readiness{checks: checks, state: map[string]dependency{}}
}

// report probes every dependency at once, each for at most two seconds.
func (rd *readiness) report(ctx context.Context) readyReport {
	results := make([]error, len(rd.checks))
	var wg sync.WaitGroup
	for i, c := range rd.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			results[i] = c.probe(cctx)
		}()
	}
	wg.Wait()
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rep := readyReport{Status: "ready"}
	now := time.Now().UTC()
	for i, c := range rd.checks {
		d := dependency{Name: c.name, OK: results[i] == nil, Since: now}
		if err := results[i]; err != nil {
			d.Error = err.Error()
			if c.needed {
				rep.Status = "unavailable"
			}
		}
		if prev, ok := rd.state[c.name]; ok && prev.OK == d.OK {
			d.Since = prev.Since
		}
		rd.state[c.name] = d
		rep.Dependencies = append(rep.Dependencies, d)
	}
	rd.last, rd.lastAt = rep, now
	return rep
}

// watch probes every dependency every interval until ctx is done, so that
// "since" is when a change happened (within interval), and logs each
// change once: a dependency lost (warn), and back (info).
func (rd *readiness) watch(ctx context.Context, log *slog.Logger, interval time.Duration) {
	was := map[string]bool{}
	for {
		for _, d := range rd.report(ctx).Dependencies {
			ok, known := was[d.Name]
			switch {
			case ctx.Err() != nil:
				return
			case !d.OK && (ok || !known):
				log.Warn("dependency not answering", "dependency", d.Name, "err", d.Error)
			case d.OK && known && !ok:
				log.Info("dependency answering again", "dependency", d.Name)
			}
			was[d.Name] = d.OK
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// fresh is how old a report /readyz may answer with: the watch makes one
// every 2 s, so probes asking more often cost the dependencies nothing.
const fresh = 3 * time.Second

func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rd.mu.Lock()
	rep, ok := rd.last, time.Since(rd.lastAt) < fresh
	rd.mu.Unlock()
	if !ok {
		rep = rd.report(r.Context())
	}
	status := http.StatusOK
	if rep.Status != "ready" {
		status = http.StatusServiceUnavailable
	}
	httpx.JSON(w, status, rep)
}

// brokerCheck is the check of the transport, if it can be asked.
func brokerCheck(name string, t messaging.Transport) []check {
	p, ok := t.(messaging.Pinger)
	if !ok {
		return nil
	}
	return []check{{name: "broker " + name, needed: true, probe: p.Ping}}
}

// smtpCheck is the check of the mail server, when one is configured: not
// needed (mail waits, stored, until it answers).
func smtpCheck(addr string) []check {
	if addr == "" {
		return nil
	}
	return []check{{name: "smtp " + addr, probe: func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}}}
}

const statusAbout = `Asks a running stockflow whether it is ready (GET /readyz) and shows each
dependency it needs (its stores, the broker, the mail server) and since
when each has answered or not. Exits 1 when stockflow is not ready, 2
when it cannot be reached.`

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flagSet("status", statusAbout, stderr)
	base := fs.String("url", "http://127.0.0.1:5005", "`URL` of the stockflow HTTP API")
	key := keyFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(*base, "/")+"/readyz", nil)
	if err != nil {
		return usageError{fmt.Errorf("--url: %w", err)}
	}
	bearer(req, *key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return usageError{fmt.Errorf("cannot connect to %s: %w", *base, errors.Unwrap(err))}
	}
	defer resp.Body.Close()
	var rep readyReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || rep.Status == "" {
		return fmt.Errorf("%s/readyz answered %s, not a readiness report", *base, resp.Status)
	}
	fmt.Fprintf(stdout, "stockflow at %s: %s\n", *base, rep.Status)
	deps := slices.Clone(rep.Dependencies)
	width := 0
	for _, d := range deps {
		width = max(width, len(d.Name))
	}
	for _, d := range deps {
		state := "up  "
		if !d.OK {
			state = "DOWN"
		}
		line := fmt.Sprintf("  %s  %-*s  since %s (%s)", state, width, d.Name, d.Since.Local().Format(time.DateTime), time.Since(d.Since).Round(time.Second))
		if d.Error != "" {
			line += ": " + d.Error
		}
		fmt.Fprintln(stdout, line)
	}
	if rep.Status != "ready" {
		return errNotReady
	}
	return nil
}

var errNotReady = errors.New("not ready")

// sqliteFile is the database file of the service name under dir.
func sqliteFile(dir, name string) string { return filepath.Join(dir, name+".db") }
