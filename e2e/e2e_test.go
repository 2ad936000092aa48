package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metacircular/mcias/internal/pgtest"
)

// binDir holds the binaries built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcias-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/mciassrv", "../cmd/mciasctl", "../cmd/mciasgrpcctl")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.Exit(1)
	}
	// The builtin plugins, as make build lays them out (bin/plugins).
	for _, p := range []string{"sqlite", "postgres", "local", "file", "syslog", "webhook"} {
		build = exec.Command("go", "build", "-trimpath", "-buildvcs=false",
			"-o", dir+"/plugins/mcias-plugin-"+p, "../plugins/"+p)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building plugins:", err)
			os.Exit(1)
		}
	}
	binDir = dir
	// One throwaway PostgreSQL for the multi-node tests.
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const adminPassword = "e2e-admin-password-42"

// server is a running mciassrv.
type server struct {
	t    *testing.T
	dir  string // the working directory: holds bin/ and run/
	cmd  *exec.Cmd
	addr string // REST
	grpc string // gRPC
	log  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newInstance lays out a working directory like a fresh clone after
// `make build`: bin/ with the binaries and run/ from `mciassrv init`.
func newInstance(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	out, err := runIn(dir, nil, "", "bin/mciassrv", "init", "-dir", "run", "-listen", "127.0.0.1:0", "-grpc", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	// The command init prints works as printed, from where init was run.
	if want := "serve it with: bin/mciassrv serve -config run/mcias.toml\n"; !strings.HasSuffix(out, want) {
		t.Fatalf("init output does not end with %q:\n%s", want, out)
	}
	return dir
}

var (
	listenRE     = regexp.MustCompile(`mciassrv listening.*addr=(127\.0\.0\.1:\d+)`)
	grpcListenRE = regexp.MustCompile(`mciassrv gRPC listening.*addr=(127\.0\.0\.1:\d+)`)
)

// start runs `mciassrv serve` in dir and waits until it listens.
func start(t *testing.T, dir string, env ...string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, log: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(filepath.Join(dir, "bin", "mciassrv"), "serve", "-config", "run/mcias.toml")
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m, g := listenRE.FindStringSubmatch(s.log.String()), grpcListenRE.FindStringSubmatch(s.log.String())
		if m != nil && g != nil {
			s.addr, s.grpc = m[1], g[1]
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("mciassrv exited: %v\n%s", err, s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("mciassrv did not start:\n%s", s.log.String())
	return nil
}

// stop sends SIGTERM and waits; it reports whether the exit was clean.
func (s *server) stop() error {
	// Already exited (the done channel is refilled for later callers);
	// reading cmd.ProcessState here would race with Wait.
	select {
	case err := <-s.done:
		s.done <- err
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("mciassrv ignored SIGTERM")
	}
}

func runIn(dir string, env []string, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// quickStart extracts the README's second-terminal block.
func quickStart(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i := strings.Index(s, "<!-- quickstart:begin -->")
	j := strings.Index(s, "<!-- quickstart:end -->")
	if i < 0 || j < i {
		t.Fatal("README.md has no quickstart block")
	}
	block := s[i:j]
	block = block[strings.Index(block, "```sh\n")+len("```sh\n"):]
	return block[:strings.LastIndex(block, "```")]
}

// TestReadmeQuickStart runs the README's quick start verbatim (only the
// ports differ: the test server listens on free ones) with bash, curl
// and the built mciasctl and mciasgrpcctl, answering the admin password
// prompt on stdin.
func TestReadmeQuickStart(t *testing.T) {
	runQuickStart(t, newInstance(t))
}

func runQuickStart(t *testing.T, dir string) {
	t.Helper()
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	script := strings.ReplaceAll(quickStart(t), "127.0.0.1:8443", s.addr)
	if err := os.WriteFile(filepath.Join(dir, "quickstart.sh"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runIn(dir, []string{"MCIAS_SERVER=https://" + s.addr, "MCIAS_GRPC_SERVER=" + s.grpc, "MCIAS_TOKEN=", "MCIAS_CA=", "MCIAS_PASSWORD="},
		adminPassword+"\n", "bash", "-euo", "pipefail", "quickstart.sh")
	if err != nil {
		t.Fatalf("quick start failed: %v\n%s\nserver log:\n%s", err, out, s.log.String())
	}
	for _, want := range []string{"alice", "billing", `"valid":true`, "username: alice", "revoked, as expected"} {
		if !strings.Contains(out, want) {
			t.Errorf("quick start output lacks %q:\n%s", want, out)
		}
	}
	// Each JSON reply (curl) is a line of its own, not glued to the next
	// output or the prompt.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") && (!strings.HasSuffix(line, "}") || strings.Contains(line, "}{")) {
			t.Errorf("a JSON reply runs into other output: %q", line)
		}
	}
	// Tokens never appear as command arguments (ps shows those).
	if m := regexp.MustCompile(`(?m)^[^#\n]*mciasctl[^|\n]*\$ALICE.*$`).FindString(script); m != "" {
		t.Errorf("the quick start passes a token as an argument: %s", m)
	}
	if strings.Contains(s.log.String(), adminPassword) || strings.Contains(s.log.String(), "alice-long-password") {
		t.Error("a password reached the server log")
	}
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: unclean exit: %v", err)
	}
}

// client is an HTTPS client that trusts the instance's development CA.
func client(t *testing.T, dir string, maxVersion uint16) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, "run", "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion},
	}}
}

func post(t *testing.T, c *http.Client, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// TestRestartKeepsState: keys, accounts and revocations survive a
// restart, the bootstrap admin is created once, and SIGTERM exits
// cleanly.
func TestRestartKeepsState(t *testing.T) {
	dir := newInstance(t)
	s := start(t, dir) // no MCIAS_ADMIN_PASSWORD: generated and printed once
	m := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(s.log.String())
	if m == nil {
		t.Fatalf("no generated password printed:\n%s", s.log.String())
	}
	generated := m[1]
	if strings.Count(s.log.String(), generated) != 1 {
		t.Fatal("the generated password appears more than once in the output")
	}
	c := client(t, dir, 0)
	base := "https://" + s.addr
	st, body := post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, generated))
	if st != 200 {
		t.Fatalf("login with generated password: %d %v", st, body)
	}
	keep := body["token"].(string)
	_, body = post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, generated))
	revoked := body["token"].(string)
	if st, _ := post(t, c, base+"/v1/auth/logout", revoked, ""); st != 204 {
		t.Fatalf("logout: %d", st)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	const ignored = "ignored-because-not-empty"
	s = start(t, dir, "MCIAS_ADMIN_PASSWORD="+ignored)
	log := s.log.String()
	if strings.Contains(log, "created the bootstrap admin") {
		t.Fatal("bootstrap admin created again on restart")
	}
	// Setting the variables on a database with accounts is not silent.
	if n := strings.Count(log, "bootstrap admin not created: the database already has accounts"); n != 1 {
		t.Fatalf("%d log lines say the bootstrap variables were ignored, want 1:\n%s", n, log)
	}
	if strings.Contains(log, ignored) {
		t.Fatal("the ignored MCIAS_ADMIN_PASSWORD reached the log")
	}
	base = "https://" + s.addr
	for _, tc := range []struct {
		name, token string
		valid       bool
	}{{"case=token from before restart", keep, true}, {"case=revoked before restart", revoked, false}} {
		_, v := post(t, c, base+"/v1/token/validate", "", fmt.Sprintf(`{"token":%q}`, tc.token))
		if v["valid"] != tc.valid {
			t.Errorf("%s: valid=%v", tc.name, v["valid"])
		}
	}
}

// TestTLS: TLS 1.1 is refused, 1.2 and 1.3 are served.
func TestTLS(t *testing.T) {
	dir := newInstance(t)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	for _, tc := range []struct {
		name    string
		version uint16
		ok      bool
	}{{"case=tls1.1", tls.VersionTLS11, false}, {"case=tls1.2", tls.VersionTLS12, true}, {"case=tls1.3", tls.VersionTLS13, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, dir, tc.version)
			c.Transport.(*http.Transport).TLSClientConfig.MinVersion = tc.version
			resp, err := c.Get("https://" + s.addr + "/v1/health")
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if err == nil {
				resp.Body.Close()
			}
		})
	}
}

// TestBadConfig: the server refuses a bad config with a message naming
// the problem, and exits with status 2.
func TestBadConfig(t *testing.T) {
	dir := newInstance(t)
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, _ := os.ReadFile(cfg)
	bad := strings.Replace(string(raw), `uri = "sqlite:`, `uri = "mysql:`, 1) + "\n[password]\nargon2_memory_kib = 1024\nargon2_time = 1\n"
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runIn(dir, nil, "", "bin/mciassrv", "serve", "-config", "run/mcias.toml")
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("want exit 2, got %v\n%s", err, out)
	}
	for _, want := range []string{"unknown scheme \"mysql\"", "sqlite", "password"} {
		if !strings.Contains(out, want) {
			t.Errorf("message lacks %q:\n%s", want, out)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		t.Log(sc.Text())
	}
}
