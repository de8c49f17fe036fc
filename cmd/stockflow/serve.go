package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/transport/broker"
	"github.com/stockflow/stockflow/internal/metrics"
	"github.com/stockflow/stockflow/internal/platform"
)

const upAbout = `Runs every stockflow service in one process behind one HTTP listener.
By default it needs no server: SQLite databases under --data and
in-process messages. --db and --broker point it at PostgreSQL and a
broker instead. SIGTERM or Ctrl-C stops it: requests in flight finish,
messages not yet delivered stay stored for the next start.`

const serveAbout = `Runs one service alone (so that services can run as separate processes on
one broker; on the embedded default, give each process the same --data).
Services: allocation, orders, warehouse, crm, notifications. Several names,
comma-separated, run several in one process. Flags as for "stockflow up".`

// serverFlags are the flags of up and serve; each has an environment
// variable, and the flag wins.
type serverFlags struct {
	http, data, db, broker string
	// The notifications service's mail.
	smtp, smtpFrom, stockTeam string
	replay                    bool
	grace                     time.Duration
	logger                    func() (*slog.Logger, error)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func addServerFlags(fs *flag.FlagSet, stderr io.Writer) *serverFlags {
	f := &serverFlags{}
	fs.StringVar(&f.http, "http", env("STOCKFLOW_HTTP", "127.0.0.1:5005"), "`address` the HTTP API listens on (env STOCKFLOW_HTTP)")
	fs.StringVar(&f.data, "data", env("STOCKFLOW_DATA", "./stockflow-data"), "`directory` of the SQLite databases, when --db is not given (env STOCKFLOW_DATA)")
	fs.StringVar(&f.db, "db", env("STOCKFLOW_DB", ""), "PostgreSQL `URL` (postgres://user@host:port/db); empty: SQLite under --data (env STOCKFLOW_DB)")
	fs.StringVar(&f.broker, "broker", env("STOCKFLOW_BROKER", ""), "message broker `URL`: "+broker.Schemes+" (env STOCKFLOW_BROKER)")
	fs.StringVar(&f.smtp, "smtp", env("STOCKFLOW_SMTP", ""), "SMTP server `host:port` the notifications are sent through; empty: recorded only, listed by GET /notifications (env STOCKFLOW_SMTP)")
	fs.StringVar(&f.smtpFrom, "smtp-from", env("STOCKFLOW_SMTP_FROM", "stockflow@localhost"), "sender `address` of the notifications (env STOCKFLOW_SMTP_FROM)")
	fs.StringVar(&f.stockTeam, "stock-team", env("STOCKFLOW_STOCK_TEAM", "stock-team@localhost"), "`addresses` of the stock team, comma-separated, told when a sku runs out (env STOCKFLOW_STOCK_TEAM)")
	fs.BoolVar(&f.replay, "replay", false, "consume again every message the broker keeps, from the oldest (durable brokers only)")
	fs.DurationVar(&f.grace, "grace", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	f.logger = logFlags(fs, stderr)
	return f
}

func up(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("up", upAbout, stderr)
	f := addServerFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	return serveServices(ctx, f, services)
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("serve <service>", serveAbout, stderr)
	f := addServerFlags(fs, stderr)
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs.Usage()
			return flag.ErrHelp
		}
		return usageError{fmt.Errorf("serve: name a service: %s", serviceNames())}
	}
	defs, err := lookup(strings.Split(args[0], ","))
	if err != nil {
		return err
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	return serveServices(ctx, f, defs)
}

// serveServices runs the named services behind one HTTP listener until ctx
// is done.
func serveServices(ctx context.Context, f *serverFlags, defs []serviceDef) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	tuneGC()
	transport, err := broker.Open(f.broker, log)
	if err != nil {
		return usageError{err}
	}
	defer transport.Close()
	m := metrics.New()
	cfg := platform.Config{DB: f.db, DataDir: f.data, Transport: transport, Log: log, Metrics: m, Replay: f.replay}
	var svcs []platform.Service
	defer func() {
		for _, svc := range slices.Backward(svcs) {
			svc.Close()
		}
	}()
	for _, def := range defs {
		svc, err := def.open(ctx, cfg, f)
		if err != nil {
			return err
		}
		svcs = append(svcs, svc)
		if err := svc.Recover(ctx, 0); err != nil {
			return fmt.Errorf("%s: recovering undispatched events: %w", def.name, err)
		}
	}

	ln, err := net.Listen("tcp", f.http)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	for _, svc := range svcs {
		svc.Routes(mux)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		for i, svc := range svcs {
			if err := svc.Ready(r.Context()); err != nil {
				httpx.Error(w, http.StatusServiceUnavailable, defs[i].name+" not ready: "+err.Error())
				return
			}
		}
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{
		Handler:           httpx.Handler(mux, log, m.ObserveRequest),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	// Background work stops after the HTTP server has drained, so that the
	// last requests' messages are relayed if the transport takes them.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	bgErrs := make([]error, len(svcs))
	for i, svc := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bgErrs[i] = svc.Run(bg)
		}()
	}

	store := "sqlite:" + f.data
	if f.db != "" {
		store = "postgres"
	}
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.name
	}
	log.Info("stockflow up", "services", names, "http", ln.Addr().String(), "store", store, "broker", brokerName(f.broker))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err = <-serveErr:
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), f.grace)
		err = srv.Shutdown(sctx)
		cancel()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	stopBG()
	wg.Wait()
	if err == nil {
		err = errors.Join(bgErrs...)
	}
	log.Info("stopped")
	return err
}

// tuneGC makes the collector run at four times the live heap rather than
// twice, unless GOGC says otherwise. A service's live heap is a few
// megabytes, and nearly all it allocates is a request's garbage: it then
// answers about 6% more requests on PostgreSQL for about 12 MB more memory
// (docs/benchmarks.md).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

func brokerName(u string) string {
	if u == "" {
		return "inproc"
	}
	return u
}

const migrateAbout = `Creates or upgrades the PostgreSQL schemas of every service, then exits.
Services also do it when they start; this does it alone (before a
deployment, say). Safe when several instances migrate at once.`

func migrate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("migrate", migrateAbout, stderr)
	db := fs.String("db", env("STOCKFLOW_DB", ""), "PostgreSQL `URL` (env STOCKFLOW_DB)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *db == "" {
		return usageError{errors.New("migrate: --db (or STOCKFLOW_DB) is required")}
	}
	for _, s := range services {
		if err := s.migrate(ctx, *db); err != nil {
			return err
		}
	}
	fmt.Fprintln(stderr, "migrated:", serviceNames())
	return nil
}

const deadLettersAbout = `Lists the messages stockflow could not handle, newest first, as JSON
lines: the consumer, the channel, the raw payload, the reason and the time.`

func deadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flagSet("dead-letters", deadLettersAbout, stderr)
	data := fs.String("data", env("STOCKFLOW_DATA", "./stockflow-data"), "`directory` of the SQLite databases, when --db is not given (env STOCKFLOW_DATA)")
	db := fs.String("db", env("STOCKFLOW_DB", ""), "PostgreSQL `URL` (env STOCKFLOW_DB)")
	only := fs.String("service", "", "list only the dead letters of these `services` (comma-separated; default all)")
	limit := fs.Int("limit", 100, "how many to list")
	if err := parse(fs, args); err != nil {
		return err
	}
	var names []string
	if *only != "" {
		names = strings.Split(*only, ",")
	}
	defs, err := lookup(names)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	transport, _ := broker.Open("", log)
	defer transport.Close()
	f := &serverFlags{}
	var all []messaging.DeadLetter
	for _, def := range defs {
		svc, err := def.open(ctx, platform.Config{DB: *db, DataDir: *data, Transport: transport, Log: log}, f)
		if err != nil {
			return err
		}
		list, err := svc.DeadLetters(ctx, *limit)
		svc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", def.name, err)
		}
		all = append(all, list...)
	}
	slices.SortStableFunc(all, func(a, b messaging.DeadLetter) int { return b.FailedAt.Compare(a.FailedAt) })
	enc := json.NewEncoder(stdout)
	for _, d := range all[:min(len(all), *limit)] {
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	return nil
}
