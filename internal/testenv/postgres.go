package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a private PostgreSQL server (StartPostgresTLS).
type PostgresServer struct {
	*Server
	// Password is the postgres user's. URL (the Server's) has none:
	// postgres://postgres@127.0.0.1:port/postgres?sslmode=verify-full&sslrootcert=CA.
	Password string
}

// StartPostgresTLS starts a private PostgreSQL cluster (initdb, then
// postgres on a free port) that takes connections over SSL alone, with a
// certificate ca issued, and the postgres user's password
// (scram-sha-256): TCP without SSL is refused (pg_hba.conf's hostnossl
// reject). Run as root, the cluster belongs to the postgres user, as
// PostgreSQL refuses to run as root. Without initdb (in PATH or under
// /usr/lib/postgresql/*/bin) the test is skipped, or fails when Required.
func StartPostgresTLS(t testing.TB, ca *CA) *PostgresServer {
	t.Helper()
	initdb := lookBinary("initdb")
	if initdb == "" {
		if found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(found) > 0 {
			initdb = found[len(found)-1]
		}
	}
	if initdb == "" {
		if Required() {
			t.Fatal("initdb is not installed and STOCKFLOW_REQUIRE_SERVICES=1")
		}
		t.Skip("skipping: initdb is not installed, cannot start a PostgreSQL of the test's own")
	}
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	// Its own directory rather than t.TempDir(), which only this user may
	// enter.
	dir, err := os.MkdirTemp("", "stockflow-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var attr *syscall.SysProcAttr
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("skipping: running as root, and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	b := make([]byte, 12)
	rand.Read(b)
	password := hex.EncodeToString(b)
	data := filepath.Join(dir, "data")
	pwfile := filepath.Join(dir, "pwfile")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			if err := os.Chown(path, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(pwfile, password+"\n")
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--pwfile", pwfile, "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
	cmd.SysProcAttr, cmd.Dir = attr, dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	certFile, keyFile := ca.Issue(t, "postgres")
	for from, to := range map[string]string{certFile: "server.crt", keyFile: "server.key"} {
		pem, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(data, to), string(pem))
	}
	write(filepath.Join(data, "pg_hba.conf"), "local all all scram-sha-256\n"+
		"hostssl all all 127.0.0.1/32 scram-sha-256\n"+
		"hostssl all all ::1/128 scram-sha-256\n"+
		"hostnossl all all all reject\n")
	s := &Server{
		Name:    "postgres",
		Dir:     data,
		attr:    attr,
		workDir: dir,
		args: func(s *Server) []string {
			return []string{"-D", data, "-p", strconv.Itoa(s.Port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
				"-c", "ssl=on", "-c", "fsync=off", "-c", "max_connections=200"}
		},
	}
	p := &PostgresServer{Server: s, Password: password}
	s.ready = func(s *Server) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		u, _ := url.Parse(p.URL)
		u.User = url.UserPassword("postgres", password)
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
	// The binary start looks for is postgres, beside initdb.
	s.bin = filepath.Join(filepath.Dir(initdb), "postgres")
	startWith(t, s, func(s *Server) string {
		q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}}
		return fmt.Sprintf("postgres://postgres@%s/postgres?%s", s.Addr, q.Encode())
	})
	// A fast shutdown (SIGINT) before the kill start registered: a
	// postmaster killed leaves its children to notice alone.
	t.Cleanup(func() { s.signal(syscall.SIGINT) })
	return p
}
