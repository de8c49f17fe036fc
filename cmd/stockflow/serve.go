package main

import (
	"context"
	"crypto/tls"
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

	"github.com/stockflow/stockflow/docs"
	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/flows"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/metrics"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/secure"
	"github.com/stockflow/stockflow/internal/transport/broker"
	"github.com/stockflow/stockflow/internal/transport/inproc"
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

// serverFlags are the flags of up and serve (each has an environment
// variable: applyEnv).
type serverFlags struct {
	http, data, db, broker string
	// The notifications service's mail.
	smtp, smtpFrom, stockTeam string
	replay                    bool
	grace, connectTimeout     time.Duration
	// The orders service's reservations: how long an unplaced cart holds
	// its stock.
	reservationTTL time.Duration
	// The allocation service's waiting lists: how stock too little for the
	// first in line is served.
	backorders domain.Policy
	// The journal: how long the flows service keeps a message, and whether
	// the services record receipts of what they handle.
	flowsRetention time.Duration
	receipts       bool
	logger         func() (*slog.Logger, error)
	edge           *edgeFlags
	// The passwords of --db's and --broker's users, from files
	// (--db-password-file, --broker-password-file): they join the URLs.
	dbPassword, brokerPassword func(rawURL string) (string, error)
}

func addServerFlags(fs *flag.FlagSet, stderr io.Writer) *serverFlags {
	f := &serverFlags{}
	fs.StringVar(&f.http, "http", "127.0.0.1:5005", "`address` the HTTP API listens on")
	fs.StringVar(&f.data, "data", "./stockflow-data", "`directory` of the SQLite databases, when --db is not given")
	fs.StringVar(&f.db, "db", "", "PostgreSQL `URL` (postgres://user@host:port/db; TLS: ?sslmode=verify-full&sslrootcert=CA-FILE); empty: SQLite under --data")
	f.dbPassword = passwordFile(fs, "db", "--db's user")
	fs.StringVar(&f.broker, "broker", "", "message broker `URL`: "+broker.Schemes+"")
	f.brokerPassword = passwordFile(fs, "broker", "--broker's user (a NATS token when the URL names no user)")
	fs.StringVar(&f.smtp, "smtp", "", "SMTP server `host:port` the notifications are sent through; empty: recorded only, listed by GET /notifications")
	fs.StringVar(&f.smtpFrom, "smtp-from", "stockflow@localhost", "sender `address` of the notifications")
	fs.StringVar(&f.stockTeam, "stock-team", "stock-team@localhost", "`addresses` of the stock team, comma-separated, told when a sku runs out")
	fs.BoolVar(&f.replay, "replay", false, "consume again every message the broker keeps, from the oldest (durable brokers only)")
	fs.DurationVar(&f.grace, "grace", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 5*time.Second, "how long to try reaching the database and the broker at start before giving up")
	f.reservationTTL = 30 * time.Minute
	fs.Var((*positiveDuration)(&f.reservationTTL), "reservation-ttl", "how long a cart not yet placed keeps its reservations before they expire and its stock is released (a `duration`: 30m, 2h)")
	fs.Func("backorder-policy", "how waiting lines are served when stock comes: strict (the first in line first: stock too little for it stays for it) or fill (smaller lines behind it take that stock) (default strict)", func(s string) error {
		p, err := domain.ParsePolicy(s)
		f.backorders = p
		return err
	})
	f.flowsRetention = flows.DefaultRetention
	fs.Var((*positiveDuration)(&f.flowsRetention), "flows-retention", "how long the flows service's journal keeps a message (a `duration`: 168h, 24h)")
	fs.BoolVar(&f.receipts, "receipts", true, "record a receipt of each message a service handles, in the transaction that handles it, for the flows service's journal (--receipts=false: none)")
	f.edge = addEdgeFlags(fs)
	f.logger = logFlags(fs, stderr)
	return f
}

func up(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("up", upAbout, stderr)
	f := addServerFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	return serveServices(ctx, f, services, true)
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("serve <service>", serveAbout, stderr)
	f := addServerFlags(fs, stderr)
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			annotateEnv(fs)
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
	return serveServices(ctx, f, defs, false)
}

// serveServices runs the named services (all of them: all) behind one HTTP
// listener until ctx is done. What can fail is checked before anything is
// created: the URLs, the port, the data directory, and whether the
// database and the broker answer.
func serveServices(ctx context.Context, f *serverFlags, defs []serviceDef, all bool) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	if err := f.joinPasswords(); err != nil {
		return err
	}
	if err := checkDB(f.db); err != nil {
		return err
	}
	if err := broker.Check(f.broker); err != nil {
		return usageError{err}
	}
	if err := f.edge.checkExposure(f.http, log); err != nil {
		return err
	}
	m := metrics.New()
	edge, err := f.edge.build(ctx, log, m)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.http)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	defer ln.Close()
	if f.db == "" {
		// A directory there already must be one stockflow can write in; a
		// missing one is made once the rest is checked.
		if _, err := os.Stat(f.data); err == nil {
			if err := errors.Join(checkDataDir(f.data, false), writable(f.data)); err != nil {
				return err
			}
		}
	} else if err := reach(ctx, "PostgreSQL at "+dbHost(f.db), f.connectTimeout, func(ctx context.Context) error { return pingPostgres(ctx, f.db) }); err != nil {
		return err
	}
	var transport messaging.Transport
	err = reach(ctx, "the broker at "+redacted(f.broker), f.connectTimeout, func(ctx context.Context) error {
		if transport == nil {
			t, err := broker.Open(f.broker, log)
			if err != nil {
				return err
			}
			transport = t
		}
		if p, ok := transport.(messaging.Pinger); ok {
			return p.Ping(ctx)
		}
		return nil
	})
	if transport != nil {
		defer transport.Close()
	}
	if err != nil {
		return err
	}
	if f.db == "" { // all checked: the directory may be made
		if err := errors.Join(checkDataDir(f.data, true), writable(f.data)); err != nil {
			return err
		}
	}
	tuneGC()
	if f.broker == "" && !all {
		log.Warn("no --broker: messages travel in this process only, and reach no service running in another; give every process the same --broker",
			"services", names(defs))
	}
	cfg := platform.Config{DB: f.db, DataDir: f.data, Transport: transport, Log: log, Metrics: m, Replay: f.replay, NoReceipts: !f.receipts}
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

	var checks []check
	for i, svc := range svcs {
		checks = append(checks, check{name: defs[i].name + " store", needed: true, probe: svc.Ready})
	}
	checks = append(checks, brokerCheck(redacted(f.broker), transport)...)
	if slices.ContainsFunc(defs, func(d serviceDef) bool { return d.name == "notifications" }) {
		checks = append(checks, smtpCheck(f.smtp)...)
	}
	ready := newReadiness(checks)
	mux := http.NewServeMux()
	for _, svc := range svcs {
		svc.Routes(mux)
	}
	processRoutes(mux, ready, m.Handler())
	deadLetterRoutes(mux, newConsole(names(defs), svcs), log)
	srv := httpx.Server(httpx.Handler(mux, log, m.ObserveRequest, edge.layers...))
	// The server's own complaints (a failed TLS handshake, a broken
	// request line) go to the log as the rest does.
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	if edge.tls != nil {
		ln = tls.NewListener(ln, edge.tls)
	}
	stopReload := edge.reloadOnHangup(log)
	defer stopReload()

	// Background work stops after the HTTP server has drained, so that the
	// last requests' messages are relayed if the transport takes them.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	bgErrs := make([]error, len(svcs))
	wg.Add(1)
	go func() {
		defer wg.Done()
		ready.watch(bg, log, 2*time.Second)
	}()
	if in, ok := transport.(*inproc.Transport); ok {
		// The in-process transport keeps nothing: no service publishes
		// before every one of them listens.
		in.Hold()
		go func() {
			actx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			if err := in.AwaitGroups(actx, names(defs)...); err != nil && bg.Err() == nil {
				log.Warn("not every service subscribed within 10s; messages flow anyway", "err", err)
			}
			in.Release()
		}()
	}
	for i, svc := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bgErrs[i] = svc.Run(bg)
		}()
	}

	store := "sqlite:" + f.data
	if f.db != "" {
		store = secure.URL(f.db)
	}
	log.Info("stockflow up", append([]any{"services", names(defs), "http", ln.Addr().String(), "store", store, "broker", redacted(f.broker)},
		append(edge.describe(f.edge), "version", versionLine())...)...)
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

// joinPasswords joins the passwords read from files to their URLs.
func (f *serverFlags) joinPasswords() error {
	var err error
	if f.dbPassword != nil {
		if f.db, err = f.dbPassword(f.db); err != nil {
			return err
		}
	}
	if f.brokerPassword != nil {
		if f.broker, err = f.brokerPassword(f.broker); err != nil {
			return err
		}
	}
	return nil
}

// processRoutes adds the routes of the process itself, whichever
// services it runs: liveness (the process serves), readiness (what it
// needs answers), the metrics, and the description of the HTTP API.
func processRoutes(mux httpx.Mux, ready, metrics http.Handler) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", ready)
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(docs.OpenAPI)
	})
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

// names returns the services' names.
func names(defs []serviceDef) []string {
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.name
	}
	return out
}

const migrateAbout = `Creates or upgrades the PostgreSQL schemas of every service, then exits.
Services also do it when they start; this does it alone (before a
deployment, say). Safe when several instances migrate at once.`

func migrate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("migrate", migrateAbout, stderr)
	db := fs.String("db", "", "PostgreSQL `URL`")
	dbPassword := passwordFile(fs, "db", "--db's user")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *db == "" {
		return usageError{errors.New("migrate: --db (or STOCKFLOW_DB) is required")}
	}
	url, err := dbPassword(*db)
	if err != nil {
		return err
	}
	for _, s := range services {
		if err := s.migrate(ctx, url); err != nil {
			return err
		}
	}
	fmt.Fprintln(stderr, "migrated:", serviceNames())
	return nil
}
