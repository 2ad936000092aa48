// Package pgtest runs a throwaway PostgreSQL server for tests: initdb into a
// temporary directory, postgres on a free port of 127.0.0.1 with its unix
// socket in that directory too, one database per test, and the whole
// cluster stopped and removed when the test package ends.
//
// A test package starts one server for all its tests from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test asks for a fresh database with NewDatabase(t). A missing
// PostgreSQL is a failure, never a skip: scripts/test-deps.sh installs
// Debian's postgresql package. PostgreSQL refuses to run as root, so when
// the tests run as root (CI, containers) the server runs as the
// unprivileged user the Debian package creates ("postgres", or
// MCIAS_PG_USER).
//
// The server is tuned for speed, not durability (fsync, synchronous_commit
// and full_page_writes off): it lives only as long as the test binary.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running throwaway PostgreSQL cluster.
type Server struct {
	dir  string // temporary directory holding data/ and the socket
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the postgres process has exited
	log  *os.File

	n atomic.Int64 // databases created so far
}

// superuser is the cluster's bootstrap role; local connections trust it.
const superuser = "mcias"

var (
	mu      sync.Mutex
	current *Server
)

// Main starts one server, runs the package's tests, stops the server and
// exits with the tests' status. A server that cannot start fails the run.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to set up: it returns the exit
// status instead of exiting.
func Run(m *testing.M) int {
	srv, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	mu.Lock()
	current = srv
	mu.Unlock()
	code := m.Run()
	if err := srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Default returns the server Main started; it fails the test when the
// package's TestMain does not call Main.
func Default(t testing.TB) *Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if current == nil {
		t.Fatal("pgtest: no server: the package's TestMain must call pgtest.Main")
	}
	return current
}

// NewDatabase creates a fresh, empty database on the server Main started
// and returns its postgres:// URI; the database is dropped at cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return Default(t).NewDatabase(t)
}

// binDir finds the server binaries: MCIAS_PG_BIN, else the newest
// /usr/lib/postgresql/N/bin (Debian's layout), else pg_config --bindir.
func binDir() (string, error) {
	if d := os.Getenv("MCIAS_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		return strings.TrimSpace(string(out)), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, postgres) found; install Debian's postgresql package (scripts/test-deps.sh does) or set MCIAS_PG_BIN")
}

// credential returns the identity to run the server as: nil when the test
// runs unprivileged, else the Debian package's postgres user.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("MCIAS_PG_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root and PostgreSQL refuses root: need an unprivileged user %q (Debian's postgresql package creates it): %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q: bad uid/gid %s/%s", name, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// Start initialises and starts a new cluster; Stop removes it.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mcias-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"),
		"-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if s.log, err = os.Create(filepath.Join(dir, "postgres.log")); err != nil {
		return nil, err
	}
	// A port that was free a moment ago may be taken by the time postgres
	// binds it; try a few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = s.run(bin, cred); err == nil {
			break
		}
		if attempt == 4 {
			logTail, _ := os.ReadFile(s.log.Name())
			return nil, fmt.Errorf("postgres did not start: %v\n%s", err, logTail)
		}
	}
	ok = true
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts postgres and waits until it accepts connections.
func (s *Server) run(bin string, cred *syscall.Credential) error {
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(s.port),
		"-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Pdeathsig: a test binary killed outright takes its server with it
	// (SIGQUIT is postgres's immediate shutdown).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.uri("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			s.cmd, s.done = cmd, done
			return nil
		}
		cancel()
		select {
		case <-done:
			return fmt.Errorf("postgres exited: %v", cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("postgres not ready after 30s: %v", err)
		}
	}
}

// Port returns the TCP port the server listens on (127.0.0.1).
func (s *Server) Port() int { return s.port }

// uri returns the URI of database db on this server.
func (s *Server) uri(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, db)
}

// admin runs one statement in the maintenance database.
func (s *Server) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.uri("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewDatabase creates a fresh, empty database and returns its URI; the
// database is dropped at cleanup (forcibly: a connection a test leaked
// must not fail every later test).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", s.n.Add(1))
	// FILE_COPY copies the small template's files: about 4x faster than
	// the default WAL_LOG for a cluster that never replays its WAL.
	if err := s.admin(t.Context(), "CREATE DATABASE "+name+" STRATEGY FILE_COPY"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.admin(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.uri(name)
}

// Stop shuts the server down (fast shutdown, then kill after 10 s) and
// removes its directory.
func (s *Server) Stop() error {
	var err error
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
			err = errors.New("postgres did not shut down within 10s; killed")
		}
	}
	if s.log != nil {
		s.log.Close()
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}
