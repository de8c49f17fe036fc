// Command stockflow runs the stockflow services.
//
//	stockflow up             run every service in one process, on the embedded default
//	stockflow serve NAME     run one service alone
//	stockflow migrate        create or upgrade the PostgreSQL schemas
//	stockflow dead-letters   group, list, retry or discard messages that could not be handled
//	stockflow load           measure a running stockflow
//	stockflow keys           manage the API keys
//	stockflow version        show the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

const usage = `stockflow allocates order lines to batches of stock, event-driven.

Usage:
  stockflow <command> [flags]

Commands:
  up             run every service in one process (by default: SQLite store,
                 in-process messages, no server needed); stops gracefully
                 on SIGTERM or Ctrl-C
  serve NAME     run one service alone (allocation, orders, warehouse, crm,
                 notifications, flows), for separate processes on one broker
  migrate        create or upgrade the PostgreSQL schemas, then exit
  dead-letters   the messages that could not be handled, grouped by cause;
                 list, show, retry (to the service that failed only), discard
  load           drive a running stockflow with allocations and measure it
  status         ask a running stockflow whether it and what it needs answer
  trace ID       print an order's (a flow's, a message's, a batch's) journey
                 across the services, from the flows service's journal
  keys           add, list or revoke the API keys of a key file (--auth-keys)
  version        show the version, the commit it was built from, and Go's
  help           show this help, or a command's: stockflow help up

Run "stockflow <command> --help" for a command's flags. Every flag can be
set by an environment variable instead: --smtp-from by STOCKFLOW_SMTP_FROM,
and so on; the command line wins. The variable with _FILE added names a
file holding the value (STOCKFLOW_DB_FILE=/run/secrets/db), and
--db-password-file and --broker-password-file read the password of a URL's
user from a file: no secret need be on the command line.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the help was asked for, and shown
		}
		if !slices.ContainsFunc(silent, func(s error) bool { return errors.Is(err, s) }) {
			fmt.Fprintln(os.Stderr, "stockflow:", err)
		}
		os.Exit(exitCode(err))
	}
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func init() {
	// stockflow status prints its report, then exits 1 without more words.
	silent = append(silent, errNotReady)
}

// silent are errors whose story was told already.
var silent []error

// commands are the command names, for suggestions.
var commands = []string{"up", "serve", "migrate", "dead-letters", "load", "status", "keys", "version", "help"}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return up(ctx, rest, stderr)
	case "serve":
		return serve(ctx, rest, stderr)
	case "migrate":
		return migrate(ctx, rest, stderr)
	case "dead-letters":
		return deadLetters(ctx, rest, stdout, stderr)
	case "load":
		return load(ctx, rest, stdout, stderr)
	case "status":
		return status(ctx, rest, stdout, stderr)
	case "trace":
		return trace(ctx, rest, stdout, stderr)
	case "keys":
		return keys(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return nil
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	if near := nearest(cmd, commands); near != "" {
		return usageError{fmt.Errorf("unknown command %q; did you mean %q? (stockflow help lists the commands)", cmd, near)}
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}

// flagSet returns a flag set for command whose --help prints about and the
// flags.
func flagSet(command, about string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stockflow %s [flags]\n\n%s\n\nFlags:\n", command, about)
		fs.PrintDefaults()
	}
	return fs
}

// logFlags adds the logging flags to fs and returns a function making the
// logger they describe.
func logFlags(fs *flag.FlagSet, out io.Writer) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "least `level` logged: debug, info, warn or error")
	format := fs.String("log-format", "json", "log line `format`: json or text")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, usageError{fmt.Errorf("--log-level: %w", err)}
		}
		opts := &slog.HandlerOptions{Level: l}
		switch strings.ToLower(*format) {
		case "json":
			return slog.New(slog.NewJSONHandler(out, opts)), nil
		case "text":
			return slog.New(slog.NewTextHandler(out, opts)), nil
		}
		return nil, usageError{fmt.Errorf("--log-format: %q is neither json nor text", *format)}
	}
}
