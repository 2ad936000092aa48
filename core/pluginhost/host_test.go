package pluginhost_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metacircular/mcias/core/pluginhost"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// bins holds the builtin plugin binaries, built once for the package.
var bins string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins = dir
	for _, name := range []string{"sqlite", "local", "file"} {
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
			"-o", filepath.Join(dir, "mcias-plugin-"+name), "./plugins/"+name)
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build plugin %s: %v\n%s", name, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func pluginEntry(t *testing.T, name string) pluginhost.Plugin {
	t.Helper()
	path := filepath.Join(bins, "mcias-plugin-"+name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return pluginhost.Plugin{Name: name, Path: path, SHA256: hex.EncodeToString(sum[:])}
}

// fastOptions keep supervision quick enough for tests.
var fastOptions = pluginhost.Options{
	CallTimeout:    2 * time.Second,
	StartTimeout:   10 * time.Second,
	HealthInterval: 100 * time.Millisecond,
	HealthTimeout:  time.Second, // generous: a loaded CI machine must not look hung
	FailThreshold:  2,
	BackoffMin:     50 * time.Millisecond,
	BackoffMax:     500 * time.Millisecond,
}

// eventLog collects the host's audit events.
type eventLog struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (l *eventLog) record(_ context.Context, ev audit.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
	return nil
}

func (l *eventLog) types() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.evs {
		out = append(out, string(ev.Type)+":"+ev.Details["reason"])
	}
	return out
}

func openSQLite(t *testing.T, h *pluginhost.Host) storage.Store {
	t.Helper()
	uri := "sqlite:" + filepath.Join(t.TempDir(), "mcias.db")
	st, err := h.Storage(t.Context(), pluginEntry(t, "sqlite"), uri)
	if err != nil {
		t.Fatalf("start sqlite plugin: %v", err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

type statuser interface{ PluginStatus() pluginhost.Status }

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, within)
	return 0
}

func account(name string) storage.Account {
	now := time.Now().UTC().Truncate(time.Second)
	return storage.Account{
		ID: uuid.NewString(), Username: name, Skeleton: name, Type: storage.Human,
		Status: storage.Active, Roles: []string{}, CreatedAt: now, UpdatedAt: now, Version: 1,
	}
}

func event(typ audit.Type, accountID string) audit.Event {
	return audit.Event{
		ID: uuid.NewString(), Time: time.Now().UTC(), Type: typ, AccountID: accountID,
		Outcome: audit.Success, Details: map[string]string{},
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	p := pluginEntry(t, "sqlite")
	p.SHA256 = strings.Repeat("0", 64)
	_, err := h.Storage(t.Context(), p, "sqlite:"+filepath.Join(t.TempDir(), "x.db"))
	if !errors.Is(err, pluginhost.ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if n := len(h.Statuses()); n != 0 {
		t.Fatalf("%d plugins running after a refused start", n)
	}
}

func TestWrongKindFailsHandshake(t *testing.T) {
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	// The custody plugin offered as storage: distinct handshakes per kind
	// refuse it instead of speaking the wrong protocol.
	_, err := h.Storage(t.Context(), pluginEntry(t, "local"), "sqlite:"+filepath.Join(t.TempDir(), "x.db"))
	if err == nil {
		t.Fatal("a custody plugin was accepted as storage")
	}
}

func TestCrashIsDetectedAndRestarted(t *testing.T) {
	var log eventLog
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	h.RecordTo(log.record)
	st := openSQLite(t, h)
	ctx := t.Context()

	a := account("alice")
	if err := st.Accounts().CreateAccount(ctx, a, event(audit.AccountCreate, a.ID)); err != nil {
		t.Fatal(err)
	}
	before := st.(statuser).PluginStatus()
	if !before.Up || before.PID == 0 {
		t.Fatalf("status before crash: %+v", before)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// While it is down, calls fail with ErrUnavailable, never succeed
	// with a made-up answer.
	waitFor(t, "calls fail while down", 2*time.Second, func() bool {
		_, err := st.Accounts().GetAccount(ctx, a.ID)
		if err != nil && !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("err while down = %v, want ErrUnavailable", err)
		}
		return err != nil
	})
	took := waitFor(t, "restart", fastOptions.RecoveryBound(), func() bool {
		s := st.(statuser).PluginStatus()
		return s.Up && s.PID != before.PID
	})
	t.Logf("recovered %s after SIGKILL", took)
	after := st.(statuser).PluginStatus()
	if after.Restarts != 1 || after.LastError != "exited" {
		t.Fatalf("status after restart: %+v", after)
	}
	got, err := st.Accounts().GetAccount(ctx, a.ID)
	if err != nil || got.Username != "alice" {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	waitFor(t, "start, crash and restart events", 2*time.Second, func() bool {
		return strings.Join(log.types(), ",") == "plugin_start:,plugin_crash:exited,plugin_start:"
	})
}

func TestHangIsDetectedAndRestarted(t *testing.T) {
	var log eventLog
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	h.RecordTo(log.record)
	st := openSQLite(t, h)
	before := st.(statuser).PluginStatus()
	if err := syscall.Kill(before.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill(2) returns before every thread has stopped; on a loaded
	// machine a call sent at once can still be answered.
	waitFor(t, "plugin stopped", 2*time.Second, func() bool { return procState(before.PID) == 'T' })
	// A call into the frozen plugin is bounded by CallTimeout and reports
	// unavailable.
	start := time.Now()
	err := st.Ping(t.Context())
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("ping of a hung plugin = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > fastOptions.CallTimeout+time.Second {
		t.Fatalf("call took %s, longer than the call timeout", d)
	}
	waitFor(t, "hung plugin replaced", fastOptions.RecoveryBound(), func() bool {
		s := st.(statuser).PluginStatus()
		return s.Up && s.PID != before.PID
	})
	if s := st.(statuser).PluginStatus(); s.LastError != "unresponsive" {
		t.Fatalf("status: %+v", s)
	}
	if err := syscall.Kill(before.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the hung process %d is still there (kill 0: %v)", before.PID, err)
	}
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestEventsWaitForStorage(t *testing.T) {
	// Events raised before a recorder exists, or while it fails, are
	// kept and stored in order once it works.
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	st := openSQLite(t, h)
	var mu sync.Mutex
	failing := true
	var stored []audit.Event
	h.RecordTo(func(ctx context.Context, ev audit.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return fmt.Errorf("storage down: %w", sdk.ErrUnavailable)
		}
		stored = append(stored, ev)
		return nil
	})
	if err := syscall.Kill(st.(statuser).PluginStatus().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restart", fastOptions.RecoveryBound(), func() bool {
		return st.(statuser).PluginStatus().Restarts == 1 && st.(statuser).PluginStatus().Up
	})
	mu.Lock()
	failing = false
	mu.Unlock()
	waitFor(t, "queued events stored", 3*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(stored) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, ev := range stored {
		got = append(got, string(ev.Type))
	}
	if strings.Join(got, ",") != "plugin_start,plugin_crash,plugin_start" {
		t.Fatalf("stored %v", got)
	}
}

func TestEnvironmentIsNotInherited(t *testing.T) {
	t.Setenv("MCIAS_ADMIN_PASSWORD", "must-not-leak")
	t.Setenv("MCIAS_TEST_PASSED", "yes")
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	p := pluginEntry(t, "sqlite")
	p.Env = []string{"MCIAS_TEST_PASSED"}
	st, err := h.Storage(t.Context(), p, "sqlite:"+filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.(statuser).PluginStatus().PID))
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.Split(string(env), "\x00")
	if !contains(vars, "MCIAS_TEST_PASSED=yes") {
		t.Errorf("named variable not passed: %q", vars)
	}
	for _, v := range vars {
		if strings.HasPrefix(v, "MCIAS_ADMIN_PASSWORD=") {
			t.Errorf("the server's environment leaked into the plugin: %q", v)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestSwappedBinaryIsNotExecuted(t *testing.T) {
	// The bytes checked are the bytes run: replacing the file after a
	// start does not change the running plugin, and the next start
	// refuses the new file and keeps the backend down (never fails open).
	dir := t.TempDir()
	p := pluginEntry(t, "sqlite")
	copyPath := filepath.Join(dir, "mcias-plugin-sqlite")
	b, _ := os.ReadFile(p.Path)
	if err := os.WriteFile(copyPath, b, 0o755); err != nil {
		t.Fatal(err)
	}
	p.Path = copyPath
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	st, err := h.Storage(t.Context(), p, "sqlite:"+filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	other, _ := os.ReadFile(pluginEntry(t, "file").Path)
	if err := os.WriteFile(copyPath, other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("running plugin affected by the file swap: %v", err)
	}
	pid := st.(statuser).PluginStatus().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Let it try twice.
	waitFor(t, "restart attempts", fastOptions.RecoveryBound(), func() bool {
		return st.(statuser).PluginStatus().Restarts >= 2
	})
	s := st.(statuser).PluginStatus()
	if s.Up {
		t.Fatalf("a swapped binary was started: %+v", s)
	}
	if err := st.Ping(t.Context()); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("ping with the swapped binary = %v, want ErrUnavailable", err)
	}
}

func TestCloseEndsTheProcess(t *testing.T) {
	h := pluginhost.New(fastOptions, nil)
	st := openSQLite(t, h)
	pid := st.(statuser).PluginStatus().PID
	if err := st.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.Close(t.Context())
	// Gone and reaped: no zombie left behind.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("plugin %d still exists after Close (kill 0: %v)", pid, err)
	}
}

// procState returns the state letter of /proc/PID/stat (R, S, T, Z...),
// or 0 when the process is gone.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// syncBuf is a goroutine-safe log buffer.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPluginLogsCarryTheirNameOnce(t *testing.T) {
	var buf syncBuf
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := pluginhost.New(fastOptions, logger)
	defer h.Close(context.Background())
	openSQLite(t, h)
	var line string
	waitFor(t, "the plugin's migration log line", 5*time.Second, func() bool {
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.Contains(l, "applied migration") {
				line = l
				return true
			}
		}
		return false
	})
	if n := strings.Count(line, `"plugin":`); n != 1 {
		t.Fatalf("plugin key appears %d times: %s", n, line)
	}
	if !strings.Contains(line, `"plugin":"sqlite"`) || !strings.Contains(line, `"kind":"storage"`) {
		t.Fatalf("log line lacks the plugin's name or kind: %s", line)
	}
}

// TestLeasesAndCursorsThroughTheHost: the supervised store of a plugin
// whose backend has leases is a storage.Leaser, and leases and sink
// cursors reach the plugin.
func TestLeasesAndCursorsThroughTheHost(t *testing.T) {
	h := pluginhost.New(fastOptions, nil)
	defer h.Close(context.Background())
	st := openSQLite(t, h)
	ctx := t.Context()
	l, ok := st.(storage.Leaser)
	if !ok {
		t.Fatalf("%T is no storage.Leaser", st)
	}
	if ok, err := l.AcquireLease(ctx, "rotate", "node-a", time.Hour); !ok || err != nil {
		t.Fatalf("AcquireLease(node-a) = %v, %v", ok, err)
	}
	if ok, err := l.AcquireLease(ctx, "rotate", "node-b", time.Hour); ok || err != nil {
		t.Fatalf("AcquireLease(node-b) = %v, %v; want false", ok, err)
	}
	if err := l.ReleaseLease(ctx, "rotate", "node-a"); err != nil {
		t.Fatal(err)
	}
	if err := st.Audit().SetSinkCursor(ctx, "file", 7); err != nil {
		t.Fatal(err)
	}
	if seq, err := st.Audit().SinkCursor(ctx, "file"); seq != 7 || err != nil {
		t.Fatalf("SinkCursor = %d, %v; want 7", seq, err)
	}
}
