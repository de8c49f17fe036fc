package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/transport/broker"
)

const deadLettersAbout = `The messages stockflow could not handle (the dead letters), and what to
do about them, over a running stockflow's HTTP API (--url, --key) or, given
--data or --db, in its databases directly.

  stockflow dead-letters                  the groups: service, channel and
                                          cause, with how many and when
  stockflow dead-letters list [--group G] [--service S] [--channel C]
                              [--archived | --retried | --state all]
                                          the dead letters, newest first,
                                          as JSON lines
  stockflow dead-letters show SERVICE/ID  one, whole: envelope, payload,
                                          reason, attempts, times retried
  stockflow dead-letters retry SERVICE/ID... | --group G | --all [--dry-run] [--force]
                                          send them again, each to the
                                          service that failed it only, in the
                                          order they were raised
  stockflow dead-letters discard SERVICE/ID... | --group G
                                          archive them (kept; listed with
                                          --archived)

--url, when given, wins over --data and --db. An ID alone is taken as
--service's. Retrying a dead letter already
retried or archived is refused unless --force.`

// deadLetterBackend is where the console's commands go: a running
// stockflow's HTTP API, or the console over the databases.
type deadLetterBackend interface {
	groups(ctx context.Context, f filter) ([]messaging.DeadLetterGroup, error)
	list(ctx context.Context, f filter) ([]messaging.DeadLetter, error)
	show(ctx context.Context, service string, id int64) (messaging.DeadLetter, error)
	retry(ctx context.Context, s selection) ([]messaging.RetryResult, error)
	discard(ctx context.Context, s selection) ([]messaging.DeadLetter, error)
}

func deadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := "groups"
	if len(args) > 0 && slices.Contains([]string{"groups", "list", "show", "retry", "discard"}, args[0]) {
		sub, args = args[0], args[1:]
	}
	fs := flagSet("dead-letters", deadLettersAbout, stderr)
	base := fs.String("url", "http://127.0.0.1:5005", "`URL` of the stockflow HTTP API")
	key := keyFlag(fs)
	data := fs.String("data", "", "`directory` of the SQLite databases: read them directly rather than ask --url")
	db := fs.String("db", "", "PostgreSQL `URL`: read it directly rather than ask --url")
	dbPassword := passwordFile(fs, "db", "--db's user")
	var f filter
	fs.StringVar(&f.Service, "service", "", "only this `service`'s dead letters")
	fs.StringVar(&f.Channel, "channel", "", "only those of this `channel`")
	fs.StringVar(&f.Group, "group", "", "only those of this `group` (its id, as the groups show it)")
	fs.StringVar(&f.State, "state", "", "failed (the default), retried, archived or all")
	archived := fs.Bool("archived", false, "list the archived ones (--state archived)")
	retried := fs.Bool("retried", false, "list the retried ones (--state retried)")
	fs.IntVar(&f.Limit, "limit", 100, "how many to list")
	all := fs.Bool("all", false, "retry: every failed one the filters select")
	dryRun := fs.Bool("dry-run", false, "retry: say what would be sent, to whom, in which order; send nothing")
	force := fs.Bool("force", false, "retry: send again dead letters already retried or archived")
	asJSON := fs.Bool("json", false, "print JSON (groups, retry and discard)")
	var pos []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	for len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") && !takesValue(fs, args) {
		pos, args = append(pos, args[len(args)-1]), args[:len(args)-1]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *archived && *retried:
		return usageError{errors.New("dead-letters: --archived or --retried, not both")}
	case *archived:
		f.State = messaging.DeadLetterArchived
	case *retried:
		f.State = messaging.DeadLetterRetried
	}
	slices.Sort(pos) // IDs came first or last; order is the console's
	var targets []target
	for _, p := range pos {
		t, err := parseTarget(p, f.Service)
		if err != nil {
			return usageError{err}
		}
		targets = append(targets, t)
	}

	urlGiven := false
	fs.Visit(func(fl *flag.Flag) { urlGiven = urlGiven || fl.Name == "url" })
	var backend deadLetterBackend
	if !urlGiven && (*data != "" || *db != "") {
		var err error
		if *db, err = dbPassword(*db); err != nil {
			return err
		}
		c, closeAll, err := openConsole(ctx, *data, *db, stderr)
		if err != nil {
			return err
		}
		defer closeAll()
		backend = localConsole{c, cliUser()}
	} else {
		backend = &consoleClient{base: strings.TrimRight(*base, "/"), key: *key}
	}

	switch sub {
	case "groups":
		if len(targets) > 0 {
			return usageError{errors.New("dead-letters: the groups take no ID (show SERVICE/ID shows one)")}
		}
		groups, err := backend.groups(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSONLines(stdout, groups)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tSERVICE\tCHANNEL\tCOUNT\tFIRST\tLAST\tCAUSE")
		for _, g := range groups {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", g.ID, g.Consumer, g.Channel, g.Count,
				g.FirstFailureAt.Format(time.RFC3339), g.LastFailureAt.Format(time.RFC3339), g.Fingerprint)
		}
		return tw.Flush()
	case "list":
		if len(targets) > 0 {
			return usageError{errors.New("dead-letters list takes no ID (show SERVICE/ID shows one)")}
		}
		list, err := backend.list(ctx, f)
		if err != nil {
			return err
		}
		return printJSONLines(stdout, list)
	case "show":
		if len(targets) != 1 {
			return usageError{errors.New("dead-letters show takes one SERVICE/ID")}
		}
		d, err := backend.show(ctx, targets[0].service, targets[0].id)
		if err != nil {
			return err
		}
		return printDeadLetter(stdout, d)
	}
	// retry, discard
	sel := selection{filter: f, All: *all, DryRun: *dryRun, Force: *force}
	sel.Limit = 0
	switch {
	case len(targets) > 0 && (sel.Group != "" || sel.All):
		return usageError{fmt.Errorf("dead-letters %s: IDs, --group or --all, one of them", sub)}
	case len(targets) == 0 && sel.Group == "" && !sel.All:
		return usageError{fmt.Errorf("dead-letters %s: name the dead letters: SERVICE/ID..., --group G or --all", sub)}
	case sub == "discard" && (sel.All || sel.DryRun || sel.Force):
		return usageError{errors.New("dead-letters discard takes IDs or --group (not --all, --dry-run or --force)")}
	}
	var results []any
	for _, service := range targetServices(targets) {
		s := sel
		s.Service, s.IDs = service, targetIDs(targets, service)
		got, err := act(ctx, backend, sub, s)
		results = append(results, got...)
		if err != nil {
			printResults(stdout, results, *asJSON)
			return err
		}
	}
	if len(targets) == 0 {
		got, err := act(ctx, backend, sub, sel)
		results = append(results, got...)
		if err != nil {
			printResults(stdout, results, *asJSON)
			return err
		}
	}
	return printResults(stdout, results, *asJSON)
}

// act retries or discards s.
func act(ctx context.Context, b deadLetterBackend, sub string, s selection) ([]any, error) {
	var out []any
	if sub == "retry" {
		res, err := b.retry(ctx, s)
		for _, r := range res {
			out = append(out, r)
		}
		return out, err
	}
	list, err := b.discard(ctx, s)
	for _, d := range list {
		out = append(out, d)
	}
	return out, err
}

func printResults(w io.Writer, results []any, asJSON bool) error {
	if asJSON {
		return printJSONLines(w, results)
	}
	for _, r := range results {
		switch r := r.(type) {
		case messaging.RetryResult:
			line := fmt.Sprintf("%s/%d\t%s\t%s key %s\t%s", r.Service, r.ID, r.Outcome, r.Channel, r.Key, r.MessageID)
			if r.Reason != "" {
				line += "\t" + r.Reason
			}
			fmt.Fprintln(w, line)
		case messaging.DeadLetter:
			fmt.Fprintf(w, "%s/%d\tarchived\t%s key %s\t%s\n", r.Consumer, r.ID, r.Channel, r.Key, r.MessageID)
		}
	}
	return nil
}

func printJSONLines[T any](w io.Writer, list []T) error {
	enc := json.NewEncoder(w)
	for _, v := range list {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// printDeadLetter prints d whole, its payload pretty when it is JSON.
func printDeadLetter(w io.Writer, d messaging.DeadLetter) error {
	payload := d.Payload
	d.Payload = ""
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\npayload:\n", b)
	var pretty bytes.Buffer
	if json.Indent(&pretty, []byte(payload), "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", pretty.String())
	} else {
		fmt.Fprintf(w, "  %s\n", payload)
	}
	return nil
}

// target is a dead letter named on the command line.
type target struct {
	service string
	id      int64
}

func parseTarget(s, service string) (target, error) {
	svc, num, ok := strings.Cut(s, "/")
	if !ok {
		svc, num = service, s
	}
	id, err := strconv.ParseInt(num, 10, 64)
	if err != nil || id <= 0 {
		return target{}, fmt.Errorf("dead-letters: %q is not SERVICE/ID (allocation/7)", s)
	}
	if svc == "" {
		return target{}, fmt.Errorf("dead-letters: %q names no service: SERVICE/ID (allocation/%d), or --service", s, id)
	}
	return target{svc, id}, nil
}

func targetServices(ts []target) []string {
	var out []string
	for _, t := range ts {
		if !slices.Contains(out, t.service) {
			out = append(out, t.service)
		}
	}
	return out
}

func targetIDs(ts []target, service string) []int64 {
	var out []int64
	for _, t := range ts {
		if t.service == service {
			out = append(out, t.id)
		}
	}
	return out
}

// cliUser names who archives from the CLI on the databases directly.
func cliUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// openConsole opens every service whose database is there, as "stockflow
// dead-letters" did before: the console over the databases.
func openConsole(ctx context.Context, data, db string, stderr io.Writer) (*console, func(), error) {
	if err := checkDB(db); err != nil {
		return nil, nil, err
	}
	defs := slices.Clone(services)
	if db == "" {
		// Read what is there: a directory or database that does not exist
		// is not created.
		if err := checkDataDir(data, false); err != nil {
			return nil, nil, err
		}
		defs = slices.DeleteFunc(defs, func(d serviceDef) bool {
			_, err := os.Stat(sqliteFile(data, d.name))
			return err != nil
		})
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	transport, _ := broker.Open("", log)
	var svcs []platform.Service
	closeAll := func() {
		for _, s := range slices.Backward(svcs) {
			s.Close()
		}
		transport.Close()
	}
	for _, def := range defs {
		svc, err := def.open(ctx, platform.Config{DB: db, DataDir: data, Transport: transport, Log: log}, &serverFlags{})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		svcs = append(svcs, svc)
	}
	return newConsole(names(defs), svcs), closeAll, nil
}

// localConsole is the console over the databases, archiving as by.
type localConsole struct {
	*console
	by string
}

func (l localConsole) discard(ctx context.Context, s selection) ([]messaging.DeadLetter, error) {
	return l.console.discard(ctx, s, l.by)
}

// consoleClient asks a running stockflow's console over HTTP.
type consoleClient struct{ base, key string }

func (c *consoleClient) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	bearer(req, c.key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking stockflow at %s (or give --data or --db to read the databases): %w", c.base, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, res.Status)
	}
	return json.Unmarshal(b, out)
}

func (f filter) values() string {
	v := url.Values{}
	for k, s := range map[string]string{"service": f.Service, "channel": f.Channel, "group": f.Group, "state": f.State} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func (c *consoleClient) groups(ctx context.Context, f filter) ([]messaging.DeadLetterGroup, error) {
	f.Limit = 0
	var out struct{ Groups []messaging.DeadLetterGroup }
	err := c.do(ctx, "GET", "/dead-letters"+f.values(), nil, &out)
	return out.Groups, err
}

func (c *consoleClient) list(ctx context.Context, f filter) ([]messaging.DeadLetter, error) {
	var out struct {
		DeadLetters []messaging.DeadLetter `json:"dead_letters"`
	}
	err := c.do(ctx, "GET", "/dead-letters/list"+f.values(), nil, &out)
	return out.DeadLetters, err
}

func (c *consoleClient) show(ctx context.Context, service string, id int64) (messaging.DeadLetter, error) {
	var d messaging.DeadLetter
	err := c.do(ctx, "GET", fmt.Sprintf("/dead-letters/%s/%d", url.PathEscape(service), id), nil, &d)
	return d, err
}

func (c *consoleClient) retry(ctx context.Context, s selection) ([]messaging.RetryResult, error) {
	var out struct{ Results []messaging.RetryResult }
	err := c.do(ctx, "POST", "/dead-letters/retry", s, &out)
	return out.Results, err
}

func (c *consoleClient) discard(ctx context.Context, s selection) ([]messaging.DeadLetter, error) {
	var out struct{ Discarded []messaging.DeadLetter }
	err := c.do(ctx, "POST", "/dead-letters/discard", s, &out)
	return out.Discarded, err
}
