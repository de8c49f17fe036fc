package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/stockflow/stockflow/internal/secure"
)

// Secrets stay off the command line, where ps shows them, if the operator
// prefers: each URL flag has a --NAME-password-file flag whose file holds
// the password of the URL's user, and any flag's environment variable may
// name a file holding its value instead (STOCKFLOW_DB_FILE, as Docker's
// and Kubernetes' secrets are mounted). Whatever holds a secret is printed
// through secure.URL.

// readSecret returns the first line of file, the secret it holds. An
// error names the file, never what it holds.
func readSecret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty first line, no secret in it", file)
	}
	return line, nil
}

// passwordFile adds --NAME-password-file to fs, for the URL flag NAME, and
// returns the function that joins the file's password to the URL.
func passwordFile(fs *flag.FlagSet, name, whose string) func(rawURL string) (string, error) {
	file := fs.String(name+"-password-file", "", "`file` whose first line is the password of "+whose+", so that no password is on the command line or in the URL")
	return func(rawURL string) (string, error) {
		if *file == "" {
			return rawURL, nil
		}
		if rawURL == "" {
			return "", usageError{fmt.Errorf("--%s-password-file needs --%s: a password for which URL?", name, name)}
		}
		password, err := readSecret(*file)
		if err != nil {
			return "", usageError{fmt.Errorf("--%s-password-file: %w", name, err)}
		}
		out, err := secure.WithPassword(rawURL, password)
		if err != nil {
			return "", usageError{fmt.Errorf("--%s-password-file: --%s %s: %w", name, name, secure.URL(rawURL), err)}
		}
		return out, nil
	}
}

// fromFileEnv returns the value of flag f's variable NAME_FILE, the first
// line of the file it names, when NAME_FILE is set (and NAME is not).
func fromFileEnv(f *flag.Flag, name string) (value string, ok bool, err error) {
	if strings.HasSuffix(f.Name, "-file") {
		return "", false, nil // a file already: STOCKFLOW_DB_PASSWORD_FILE is the flag's own
	}
	file, set := os.LookupEnv(name + "_FILE")
	if !set {
		return "", false, nil
	}
	if _, both := os.LookupEnv(name); both {
		return "", false, usageError{fmt.Errorf("%s and %s_FILE are both set: give one", name, name)}
	}
	v, err := readSecret(file)
	if err != nil {
		return "", false, usageError{fmt.Errorf("%s_FILE: %w", name, err)}
	}
	return v, true, nil
}
