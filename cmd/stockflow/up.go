package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/stockflow/stockflow/internal/allocation"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging/inproc"
)

const upAbout = `Runs stockflow in one process: the allocation service's HTTP API, its
SQLite store under --data, and in-process messaging. No server to install.
SIGTERM or Ctrl-C stops it: requests in flight finish, messages not yet
delivered stay stored for the next start.`

func up(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("up", upAbout, stderr)
	addr := fs.String("http", "127.0.0.1:5005", "`address` the HTTP API listens on")
	data := fs.String("data", "./stockflow-data", "`directory` of the SQLite databases")
	grace := fs.Duration("grace", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	logger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}

	transport := inproc.New()
	defer transport.Close()
	svc, err := allocation.Open(ctx, allocation.Config{DataDir: *data, Transport: transport, Log: log})
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Recover(ctx, 0); err != nil {
		return fmt.Errorf("recovering undispatched events: %w", err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Ready(r.Context()); err != nil {
			httpx.Error(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	srv := &http.Server{
		Handler:           httpx.Handler(mux, log, nil),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	// Background work stops after the HTTP server has drained, so that the
	// last requests' messages are relayed if the transport takes them.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var bgErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		bgErr = svc.Run(bg)
	}()

	log.Info("stockflow up", "http", ln.Addr().String(), "data", *data)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err = <-serveErr:
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), *grace)
		err = srv.Shutdown(sctx)
		cancel()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	stopBG()
	wg.Wait()
	if err == nil {
		err = bgErr
	}
	log.Info("stopped")
	return err
}

const deadLettersAbout = `Lists the messages stockflow could not handle, newest first, as JSON
lines: the consumer, the channel, the raw payload, the reason and the time.`

func deadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flagSet("dead-letters", deadLettersAbout, stderr)
	data := fs.String("data", "./stockflow-data", "`directory` of the SQLite databases")
	limit := fs.Int("limit", 100, "how many to list")
	logger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	svc, err := allocation.Open(ctx, allocation.Config{DataDir: *data, Transport: inproc.New(), Log: log})
	if err != nil {
		return err
	}
	defer svc.Close()
	list, err := svc.DeadLetters(ctx, *limit)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, d := range list {
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	return nil
}
