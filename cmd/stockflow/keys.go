package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stockflow/stockflow/internal/auth"
	"github.com/stockflow/stockflow/internal/fail"
)

const keysAbout = `Manages the API keys of a key file (--auth-keys of "stockflow up" and
"stockflow serve"). The file keeps each key's name, roles and SHA-256
hash, never the key itself. A running stockflow reads the file again on
SIGHUP (kill -HUP PID): a key added or revoked takes effect then.

  stockflow keys add NAME --roles ROLES   make a key, print it (once), store its hash
  stockflow keys list                     list the keys: name, roles, creation
  stockflow keys revoke NAME              remove a key

Roles: ` + "shop (carts and orders), stock (batches, allocations, the warehouse's\ncounts and damage), ops (operators' routes, /metrics behind --metrics-auth),\nread (every GET)."

// keyFileFlag adds --file, whose variable is the server's STOCKFLOW_AUTH_KEYS.
func keyFileFlag(fs *flag.FlagSet) *string {
	return fs.String("file", "", "key `file` (env STOCKFLOW_AUTH_KEYS)")
}

func keys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs := flagSet("keys add|list|revoke", keysAbout, stderr)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs.Usage()
			return flag.ErrHelp
		}
		return usageError{errors.New("keys: say add, list or revoke (stockflow keys --help)")}
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "add":
		return keysAdd(rest, stdout, stderr)
	case "list":
		return keysList(rest, stdout, stderr)
	case "revoke":
		return keysRevoke(rest, stderr)
	default:
		if near := nearest(sub, []string{"add", "list", "revoke"}); near != "" {
			return usageError{fmt.Errorf("keys: unknown command %q; did you mean %q?", sub, near)}
		}
		return usageError{fmt.Errorf("keys: unknown command %q: say add, list or revoke", sub)}
	}
}

// keyName takes the key's name from the front of args.
func keyName(fs *flag.FlagSet, args []string) (string, []string, error) {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		annotateEnv(fs)
		fs.Usage()
		return "", nil, flag.ErrHelp
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usageError{fmt.Errorf("name the key first: stockflow %s [flags]", fs.Name())}
	}
	return args[0], args[1:], nil
}

// needFile checks that the key file was named.
func needFile(cmd, file string) error {
	if file == "" {
		return usageError{fmt.Errorf("%s: --file (or STOCKFLOW_AUTH_KEYS) names the key file", cmd)}
	}
	return nil
}

// keyError makes a refusal of the key file a usage error (exit 2).
func keyError(err error) error {
	if errors.Is(err, fail.Invalid) || errors.Is(err, fail.NotFound) || errors.Is(err, fail.Conflict) || errors.Is(err, os.ErrNotExist) {
		return usageError{err}
	}
	return err
}

func keysAdd(args []string, stdout, stderr io.Writer) error {
	fs := flagSet("keys add NAME", "Makes a key, prints it on stdout (once: only its hash is kept) and stores its hash in the key file, created if missing.", stderr)
	file := keyFileFlag(fs)
	roles := fs.String("roles", "", "the key's `roles`, comma-separated: "+auth.RoleList())
	name, args, err := keyName(fs, args)
	if err != nil {
		return err
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needFile("keys add", *file); err != nil {
		return err
	}
	rs, err := auth.ParseRoles(*roles)
	if err != nil {
		return usageError{fmt.Errorf("--roles: %w", err)}
	}
	key, err := auth.AddKey(*file, name, rs)
	if err != nil {
		return keyError(err)
	}
	fmt.Fprintln(stdout, key)
	fmt.Fprintf(stderr, "key %q (roles %s) added to %s; it is shown this once. A running stockflow accepts it after a SIGHUP.\n", name, *roles, *file)
	return nil
}

func keysList(args []string, stdout, stderr io.Writer) error {
	fs := flagSet("keys list", "Lists the keys of the key file: name, roles, when made.", stderr)
	file := keyFileFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needFile("keys list", *file); err != nil {
		return err
	}
	list, err := auth.ReadKeyFile(*file)
	if err != nil {
		return keyError(err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tCREATED")
	for _, k := range list {
		roles := make([]string, len(k.Roles))
		for i, r := range k.Roles {
			roles[i] = string(r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Name, strings.Join(roles, ","), k.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

func keysRevoke(args []string, stderr io.Writer) error {
	fs := flagSet("keys revoke NAME", "Removes a key from the key file. A running stockflow refuses it after a SIGHUP.", stderr)
	file := keyFileFlag(fs)
	name, args, err := keyName(fs, args)
	if err != nil {
		return err
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needFile("keys revoke", *file); err != nil {
		return err
	}
	if err := auth.RevokeKey(*file, name); err != nil {
		return keyError(err)
	}
	fmt.Fprintf(stderr, "key %q revoked in %s; a running stockflow refuses it after a SIGHUP.\n", name, *file)
	return nil
}
