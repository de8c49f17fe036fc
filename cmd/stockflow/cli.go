package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// envName is the environment variable of the flag name: --smtp-from is
// STOCKFLOW_SMTP_FROM.
func envName(name string) string {
	return "STOCKFLOW_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagEnv is the environment variable of flag f: the one its help names
// ("(env STOCKFLOW_AUTH_KEYS)", for a flag whose own name would make a
// vague variable), or else envName's.
func flagEnv(f *flag.Flag) string {
	if _, rest, ok := strings.Cut(f.Usage, "(env "); ok {
		if name, _, ok := strings.Cut(rest, ")"); ok {
			return name
		}
	}
	return envName(f.Name)
}

// annotateEnv names each flag's environment variable in its help.
func annotateEnv(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(f.Usage, "(env ") {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	})
}

// applyEnv gives every flag of fs its environment variable: the variable,
// when set, is the value of each flag the command line did not set
// (parsed already, or to be parsed after, which then wins), and the flag's
// help names it. The variable with _FILE added (STOCKFLOW_DB_FILE) names
// a file whose first line is the value instead, for secrets.
func applyEnv(fs *flag.FlagSet) error {
	annotateEnv(fs)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		name := flagEnv(f)
		v, ok := os.LookupEnv(name)
		shown := fmt.Sprintf("%s=%q", name, v)
		fv, fromFile, e := fromFileEnv(f, name)
		if e != nil {
			err = e
			return
		}
		if fromFile {
			v, ok, shown = fv, true, name+"_FILE" // its value may be a secret
		}
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = usageError{fmt.Errorf("%s: %w", shown, e)}
		}
	})
	return err
}

// parse reads args into fs, after the environment; it refuses arguments
// left over, and names the flag meant when one is mistyped.
func parse(fs *flag.FlagSet, args []string) error {
	annotateEnv(fs)
	out := fs.Output()
	fs.SetOutput(io.Discard) // the error is said once, below, with a suggestion
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	case err != nil:
		return usageError{withSuggestion(err, fs)}
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	// The environment, for the flags the command line left unset.
	return applyEnv(fs)
}

// withSuggestion adds to the flag package's "flag provided but not
// defined: -x" the flag most like -x.
func withSuggestion(err error, fs *flag.FlagSet) error {
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	if !strings.HasPrefix(msg, undefined) {
		return err
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if near := nearest(strings.TrimPrefix(msg, undefined), names); near != "" {
		return fmt.Errorf("%w; did you mean --%s?", err, near)
	}
	return fmt.Errorf("%w (stockflow %s --help lists the flags)", err, fs.Name())
}

// nearest returns the candidate closest to s, if one is close enough to
// be what was meant: at most a third of its letters off, or s a prefix.
func nearest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+1
	for _, c := range candidates {
		d := distance(s, c)
		if strings.HasPrefix(c, s) && len(s) >= 2 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// version is the release, stamped at build:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/stockflow
var version = ""

// versionLine says which stockflow this is: the release (or the module
// version, or "devel"), the commit it was built from when the build knew
// it, and the Go that built it.
func versionLine() string {
	v, commit, dirty := version, "", false
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	switch {
	case commit == "":
		commit = "commit unknown (go build -buildvcs=true stamps it)"
	case dirty:
		commit = "commit " + commit[:min(12, len(commit))] + " with uncommitted changes"
	default:
		commit = "commit " + commit[:min(12, len(commit))]
	}
	return fmt.Sprintf("stockflow %s, %s, %s %s/%s", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// positiveDuration is a duration flag that must be positive: a bad value,
// on the command line or in the environment, is refused as the flag
// package refuses any other.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (30m, 2h, 90s)")
	}
	if v <= 0 {
		return fmt.Errorf("must be positive, got %s", v)
	}
	*d = positiveDuration(v)
	return nil
}
