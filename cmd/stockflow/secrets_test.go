package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func secretFile(t *testing.T, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// STOCKFLOW_X_FILE names a file holding --x's value; its first line is
// the value; with STOCKFLOW_X set too, or the file missing, the error
// names the variable and never the value. t.Setenv: not parallel.
func TestCLIEnvFromFile(t *testing.T) {
	t.Run("value from the file", func(t *testing.T) {
		t.Setenv("STOCKFLOW_SMTP_FROM_FILE", secretFile(t, "shop@example.com\r\nignored\n"))
		fs, from, _, _ := testFlags()
		if err := applyEnv(fs); err != nil {
			t.Fatal(err)
		}
		if *from != "shop@example.com" {
			t.Errorf("--smtp-from = %q, want the file's first line", *from)
		}
	})
	t.Run("both set", func(t *testing.T) {
		t.Setenv("STOCKFLOW_SMTP_FROM", "a@example.com")
		t.Setenv("STOCKFLOW_SMTP_FROM_FILE", secretFile(t, "b@example.com"))
		fs, _, _, _ := testFlags()
		if err := applyEnv(fs); err == nil || !strings.Contains(err.Error(), "both set") {
			t.Errorf("both set: %v", err)
		}
	})
	t.Run("bad value not shown", func(t *testing.T) {
		t.Setenv("STOCKFLOW_GRACE_FILE", secretFile(t, "hunter2"))
		fs, _, _, _ := testFlags()
		err := applyEnv(fs)
		if err == nil || !strings.Contains(err.Error(), "STOCKFLOW_GRACE_FILE") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("a bad value from a file: %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Setenv("STOCKFLOW_SMTP_FROM_FILE", "/does/not/exist")
		fs, _, _, _ := testFlags()
		var u usageError
		if err := applyEnv(fs); !errors.As(err, &u) || !strings.Contains(err.Error(), "STOCKFLOW_SMTP_FROM_FILE") {
			t.Errorf("a missing file: %v", err)
		}
	})
}

func TestCLIPasswordFile(t *testing.T) {
	t.Parallel()
	newFlag := func(args ...string) func(string) (string, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		join := passwordFile(fs, "db", "--db's user")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return join
	}
	file := secretFile(t, "p@ss/w:rd\n")
	got, err := newFlag("--db-password-file", file)("postgres://app@db.example/shop?sslmode=verify-full")
	if err != nil || got != "postgres://app:p%40ss%2Fw%3Ard@db.example/shop?sslmode=verify-full" {
		t.Errorf("joined: %q, %v", got, err)
	}
	if got, err := newFlag()("postgres://app@db/shop"); err != nil || got != "postgres://app@db/shop" {
		t.Errorf("no file: %q, %v", got, err)
	}
	for name, c := range map[string]struct {
		url, file string
		want      string
	}{
		"two passwords": {"postgres://app:other@db/shop", file, "has a password already"},
		"no URL":        {"", file, "needs --db"},
		"empty file":    {"postgres://app@db/shop", secretFile(t, "\n"), "empty first line"},
		"missing file":  {"postgres://app@db/shop", "/does/not/exist", "no such file"},
	} {
		_, err := newFlag("--db-password-file", c.file)(c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "other") || strings.Contains(err.Error(), "p@ss") {
			t.Errorf("%s: %v, want an error saying %q and no password", name, err, c.want)
		}
	}
}
