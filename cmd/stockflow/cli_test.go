package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/domain"
)

// upFlags are the flag names of "stockflow up", for suggestions.
func upFlags(t *testing.T) []string {
	t.Helper()
	fs := flagSet("up", upAbout, io.Discard)
	addServerFlags(fs, io.Discard)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) == 0 {
		t.Fatal("stockflow up has no flags")
	}
	return names
}

func TestCLIDistance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"a", "", 1},
		{"", "abc", 3},
		{"version", "version", 0},
		{"vresion", "version", 2}, // a transposition is two edits
		{"htp", "http", 1},
		{"kitten", "sitting", 3},
		{"flaw", "lawn", 2},
		{"up", "serve", 5},
	}
	for _, tt := range tests {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := distance(tt.b, tt.a); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestCLINearest(t *testing.T) {
	t.Parallel()
	flags := upFlags(t)
	tests := []struct {
		name       string
		s          string
		candidates []string
		want       string
	}{
		{"command transposed", "vresion", commands, "version"},
		{"command exact", "status", commands, "status"},
		{"command one letter off", "stauts", commands, "status"},
		{"command prefix", "dead", commands, "dead-letters"},
		{"command prefix short", "mig", commands, "migrate"},
		{"command missing letter", "hlp", commands, "help"},
		{"command nothing like it", "xyz", commands, ""},
		{"command empty", "", commands, ""},
		{"command one letter is no prefix", "u", commands, ""},
		{"command far off", "frobnicate", commands, ""},
		{"flag missing letter", "htp", flags, "http"},
		{"flag typo", "smtp-frm", flags, "smtp-from"},
		{"flag prefix", "conn", flags, "connect-timeout"},
		{"flag transposed", "borker", flags, "broker"},
		{"flag nothing like it", "xyz", flags, ""},
		{"no candidates", "version", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := nearest(tt.s, tt.candidates); got != tt.want {
				t.Errorf("nearest(%q, %v) = %q, want %q", tt.s, tt.candidates, got, tt.want)
			}
		})
	}
}

func TestCLIEnvName(t *testing.T) {
	t.Parallel()
	tests := []struct{ flag, want string }{
		{"smtp-from", "STOCKFLOW_SMTP_FROM"},
		{"http", "STOCKFLOW_HTTP"},
		{"connect-timeout", "STOCKFLOW_CONNECT_TIMEOUT"},
		{"log-level", "STOCKFLOW_LOG_LEVEL"},
		{"dead-letters-x", "STOCKFLOW_DEAD_LETTERS_X"},
	}
	for _, tt := range tests {
		if got := envName(tt.flag); got != tt.want {
			t.Errorf("envName(%q) = %q, want %q", tt.flag, got, tt.want)
		}
	}
}

// testFlags is a flag set like a command's: a string, a duration, a bool.
func testFlags() (*flag.FlagSet, *string, *time.Duration, *bool) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("smtp-from", "stockflow@localhost", "sender address")
	grace := fs.Duration("grace", 15*time.Second, "grace")
	replay := fs.Bool("replay", false, "replay")
	return fs, from, grace, replay
}

// applyEnv uses t.Setenv: its tests cannot be parallel.
func TestCLIApplyEnv(t *testing.T) {
	t.Run("value applied", func(t *testing.T) {
		t.Setenv("STOCKFLOW_SMTP_FROM", "shop@example.com")
		t.Setenv("STOCKFLOW_GRACE", "3s")
		t.Setenv("STOCKFLOW_REPLAY", "true")
		fs, from, grace, replay := testFlags()
		if err := applyEnv(fs); err != nil {
			t.Fatalf("applyEnv: %v", err)
		}
		if *from != "shop@example.com" || *grace != 3*time.Second || !*replay {
			t.Errorf("after applyEnv: smtp-from %q, grace %v, replay %v; want shop@example.com, 3s, true", *from, *grace, *replay)
		}
	})
	t.Run("unset keeps the default", func(t *testing.T) {
		fs, from, grace, _ := testFlags()
		if err := applyEnv(fs); err != nil {
			t.Fatalf("applyEnv: %v", err)
		}
		if *from != "stockflow@localhost" || *grace != 15*time.Second {
			t.Errorf("after applyEnv without variables: smtp-from %q, grace %v; want the defaults", *from, *grace)
		}
	})
	t.Run("command line wins", func(t *testing.T) {
		t.Setenv("STOCKFLOW_SMTP_FROM", "env@example.com")
		t.Setenv("STOCKFLOW_GRACE", "3s")
		fs, from, grace, _ := testFlags()
		if err := applyEnv(fs); err != nil {
			t.Fatalf("applyEnv: %v", err)
		}
		if err := fs.Parse([]string{"--smtp-from", "flag@example.com"}); err != nil {
			t.Fatal(err)
		}
		if *from != "flag@example.com" {
			t.Errorf("smtp-from = %q, want the command line's flag@example.com", *from)
		}
		if *grace != 3*time.Second {
			t.Errorf("grace = %v, want the environment's 3s (not given on the command line)", *grace)
		}
	})
	t.Run("parse: command line wins", func(t *testing.T) {
		t.Setenv("STOCKFLOW_GRACE", "3s")
		fs, _, grace, _ := testFlags()
		if err := parse(fs, []string{"--grace", "7s"}); err != nil {
			t.Fatalf("parse: %v", err)
		}
		if *grace != 7*time.Second {
			t.Errorf("grace = %v, want the command line's 7s", *grace)
		}
	})
	t.Run("invalid value names the variable", func(t *testing.T) {
		t.Setenv("STOCKFLOW_GRACE", "bogus")
		fs, _, _, _ := testFlags()
		err := applyEnv(fs)
		if err == nil {
			t.Fatal("applyEnv with STOCKFLOW_GRACE=bogus: no error")
		}
		if !strings.Contains(err.Error(), "STOCKFLOW_GRACE") || !strings.Contains(err.Error(), "bogus") {
			t.Errorf("error %q does not name STOCKFLOW_GRACE and its value", err)
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("exit code of %q = %d, want 2 (usage)", err, code)
		}
	})
	t.Run("invalid bool names the variable", func(t *testing.T) {
		t.Setenv("STOCKFLOW_REPLAY", "maybe")
		fs, _, _, _ := testFlags()
		if err := applyEnv(fs); err == nil || !strings.Contains(err.Error(), "STOCKFLOW_REPLAY") {
			t.Errorf("applyEnv with STOCKFLOW_REPLAY=maybe: %v, want an error naming STOCKFLOW_REPLAY", err)
		}
	})
	t.Run("help names the variable once", func(t *testing.T) {
		fs, _, _, _ := testFlags()
		for range 2 {
			if err := applyEnv(fs); err != nil {
				t.Fatal(err)
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			want := "(env " + envName(f.Name) + ")"
			if n := strings.Count(f.Usage, want); n != 1 {
				t.Errorf("--%s usage %q names %s %d times, want once", f.Name, f.Usage, want, n)
			}
		})
	})
}

func TestCLIParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in the error; "" for none
		code int
	}{
		{"ok", []string{"--grace", "1s"}, "", 0},
		{"mistyped flag", []string{"--grce", "1s"}, "did you mean --grace?", 2},
		{"unknown flag", []string{"--xyz"}, "stockflow test --help lists the flags", 2},
		{"left over", []string{"--grace", "1s", "extra"}, `unexpected argument "extra"`, 2},
		{"bad value", []string{"--grace", "soon"}, "invalid value", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, _, _, _ := testFlags()
			var out bytes.Buffer
			fs.SetOutput(&out)
			err := parse(fs, tt.args)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("parse(%q): %v", tt.args, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parse(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
			if code := exitCode(err); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			if out.Len() != 0 {
				t.Errorf("parse(%q) printed %q; the error is said once, by main", tt.args, out.String())
			}
		})
	}
}

func TestCLIPositiveDuration(t *testing.T) {
	tests := []struct {
		value string
		want  string // in the error; "" for none
	}{
		{"30m", ""},
		{"90s", ""},
		{"0s", "must be positive"},
		{"-5m", "must be positive"},
		{"soon", "not a duration"},
		{"", "not a duration"},
	}
	for _, tt := range tests {
		t.Run("flag "+tt.value, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f := addServerFlags(fs, io.Discard)
			err := parse(fs, []string{"--reservation-ttl", tt.value})
			if tt.want == "" {
				if err != nil || f.reservationTTL != mustDuration(t, tt.value) {
					t.Fatalf("--reservation-ttl %q: %v, ttl %v", tt.value, err, f.reservationTTL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 2 {
				t.Fatalf("--reservation-ttl %q: %v, want a usage error containing %q", tt.value, err, tt.want)
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		t.Setenv("STOCKFLOW_RESERVATION_TTL", "0")
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		addServerFlags(fs, io.Discard)
		if err := parse(fs, nil); err == nil || !strings.Contains(err.Error(), "STOCKFLOW_RESERVATION_TTL") || !strings.Contains(err.Error(), "must be positive") {
			t.Fatalf("STOCKFLOW_RESERVATION_TTL=0: %v, want an error naming the variable", err)
		}
	})
	t.Run("default", func(t *testing.T) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		f := addServerFlags(fs, io.Discard)
		if err := parse(fs, nil); err != nil || f.reservationTTL != 30*time.Minute {
			t.Fatalf("default reservation TTL %v (%v), want 30m", f.reservationTTL, err)
		}
	})
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCLICheckDB(t *testing.T) {
	t.Parallel()
	tests := []struct {
		db     string
		want   string // in the error; "" for none
		secret string // never in the error
	}{
		{"", "", ""},
		{"postgres://postgres@127.0.0.1:5432/shop?sslmode=disable", "", ""},
		{"postgresql://u:pw@db.example/shop", "", ""},
		{"mysql://u:p@h/db", "unsupported scheme mysql://", "u:p@"},
		{"mysql://admin:hunter2@db.example:3306/shop", "unsupported scheme mysql://", "hunter2"},
		{"sqlite:///x.db", "unsupported scheme sqlite://", ""},
		{"/var/lib/stockflow/x.db", "not a URL", ""},
		{"redis://:hunter2@h:6379", "unsupported scheme redis://", "hunter2"},
	}
	for _, tt := range tests {
		err := checkDB(tt.db)
		if tt.want == "" {
			if err != nil {
				t.Errorf("checkDB(%q): %v", tt.db, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkDB(%q) = %v, want an error containing %q", tt.db, err, tt.want)
			continue
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("checkDB(%q): exit code %d, want 2", tt.db, code)
		}
		if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
			t.Errorf("checkDB(%q) = %q: shows the credentials %q", tt.db, err, tt.secret)
		}
	}
}

func TestCLIRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{"", "inproc"},
		{"redis://127.0.0.1:6379", "redis://127.0.0.1:6379"},
		{"redis://:hunter2@127.0.0.1:6379", "redis://:xxxxx@127.0.0.1:6379"},
		{"rediss+streams://user:hunter2@cache.example:6380/0", "rediss+streams://user:xxxxx@cache.example:6380/0"},
		{"kafka://k1:9092,k2:9092", "kafka://k1:9092,k2:9092"},
		{"nats://user:hunter2@127.0.0.1:4222", "nats://user:xxxxx@127.0.0.1:4222"},
		{"tls://hunter2@nats.example:4222?ca=%2Fetc%2Fca.pem", "tls://xxxxx@nats.example:4222?ca=%2Fetc%2Fca.pem"},
		{"kafka+tls://app:hunter2@k1:9093,k2:9093?sasl=scram-sha-512", "kafka+tls://app:xxxxx@k1:9093,k2:9093?sasl=scram-sha-512"},
	}
	for _, tt := range tests {
		got := redacted(tt.raw)
		if got != tt.want {
			t.Errorf("redacted(%q) = %q, want %q", tt.raw, got, tt.want)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("redacted(%q) = %q shows the password", tt.raw, got)
		}
	}
}

// run, without a process: the commands that need no server.
func TestCLIRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string // contained; "" for nothing checked
		stdoutEmpty    bool
	}{
		{name: "version", args: []string{"version"}, stdout: "stockflow ", code: 0},
		{name: "--version", args: []string{"--version"}, stdout: "stockflow ", code: 0},
		{name: "help", args: []string{"help"}, stdout: "Usage:", code: 0},
		{name: "typo", args: []string{"vresion"}, code: 2, stdoutEmpty: true, stderr: ""},
		{name: "no command", args: nil, code: 2, stdoutEmpty: true, stderr: "Usage:"},
		{name: "mistyped flag", args: []string{"up", "--htp", ":0"}, code: 2, stdoutEmpty: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tt.code {
				t.Errorf("run(%q) = %v, exit code %d, want %d", tt.args, err, code, tt.code)
			}
			if tt.stdout != "" && !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("run(%q) printed %q, want %q in it", tt.args, stdout.String(), tt.stdout)
			}
			if tt.stdoutEmpty && stdout.Len() > 0 {
				t.Errorf("run(%q) printed %q on stdout, want nothing", tt.args, stdout.String())
			}
			if tt.stderr != "" && !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("run(%q) printed %q on stderr, want %q in it", tt.args, stderr.String(), tt.stderr)
			}
			if n := strings.Count(stderr.String(), "Usage:"); n > 1 {
				t.Errorf("run(%q) printed the usage %d times", tt.args, n)
			}
		})
	}
	// The suggestions.
	if err := run(context.Background(), []string{"vresion"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `did you mean "version"`) {
		t.Errorf(`run(vresion) = %v, want "did you mean \"version\""`, err)
	}
	if err := run(context.Background(), []string{"up", "--htp", ":0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "did you mean --http?") {
		t.Errorf("run(up --htp :0) = %v, want \"did you mean --http?\"", err)
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"help", "up"}, io.Discard, &help); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(help up) = %v, want flag.ErrHelp (the help was shown)", err)
	}
	if !strings.Contains(help.String(), "(env STOCKFLOW_SMTP_FROM)") {
		t.Errorf("stockflow help up does not name STOCKFLOW_SMTP_FROM:\n%s", help.String())
	}
}

func TestCLIVersionLine(t *testing.T) {
	t.Parallel()
	line := versionLine()
	if !strings.HasPrefix(line, "stockflow ") || !strings.Contains(line, runtime.Version()) || strings.Contains(line, "\n") {
		t.Errorf("versionLine() = %q, want one line starting \"stockflow \" with %s", line, runtime.Version())
	}
}

func TestCLIBackorderPolicy(t *testing.T) {
	tests := []struct {
		args []string
		env  string
		want domain.Policy
		err  string // in the error; "" for none
	}{
		{args: nil, want: domain.Strict},
		{args: []string{"--backorder-policy", "fill"}, want: domain.Fill},
		{args: []string{"--backorder-policy", "strict"}, want: domain.Strict},
		{env: "fill", want: domain.Fill},
		{args: []string{"--backorder-policy", "fifo"}, err: `strict or fill, got "fifo"`},
		{env: "Fill", err: "STOCKFLOW_BACKORDER_POLICY"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+" env="+tt.env, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("STOCKFLOW_BACKORDER_POLICY", tt.env)
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := addServerFlags(fs, io.Discard)
			err := parse(fs, tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || exitCode(err) != 2 {
					t.Fatalf("%v: want a usage error containing %q", err, tt.err)
				}
				return
			}
			if err != nil || f.backorders != tt.want {
				t.Fatalf("policy %v (%v), want %v", f.backorders, err, tt.want)
			}
		})
	}
}
