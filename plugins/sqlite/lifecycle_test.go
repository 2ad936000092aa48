package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

// The plugin binary's life as the supervisor sees it: its logs, its death,
// its host's death, a wrong kind.

func buildOnce(t *testing.T) string {
	t.Helper()
	return plugintest.Build(t, ".", ".", "mcias-plugin-sqlite")
}

func TestPluginLogsReachHostLog(t *testing.T) {
	bin := buildOnce(t)
	c, hostLog := plugintest.Start(t, plugin.KindStorage, "main-db", bin)
	s, err := plugin.OpenStorage(t.Context(), c, "sqlite://"+filepath.Join(t.TempDir(), "mcias.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	// The backend's own slog record (a fresh database is migrated), at its
	// level, with its attributes, tagged with the catalog name.
	lines := hostLog.Lines(`"level":"INFO"`, `"msg":"sqlite: applied migration"`, `"plugin":"main-db"`, `"logger":"mcias-plugin-sqlite"`, `"version":1`)
	if len(lines) == 0 {
		t.Fatalf("the plugin's migration record is not in the host log:\n%s", hostLog.String())
	}
}

func TestKilledPluginIsUnavailable(t *testing.T) {
	bin := buildOnce(t)
	c, _ := plugintest.Start(t, plugin.KindStorage, "sqlite", bin)
	s, err := plugin.OpenStorage(t.Context(), c, "sqlite://"+filepath.Join(t.TempDir(), "mcias.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(c.ID())
	if err != nil {
		t.Fatalf("plugin id %q: %v", c.ID(), err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the host to notice the plugin exited", c.Exited)
	for _, call := range []struct {
		name string
		err  error
	}{
		{"ping", s.Ping(t.Context())},
		{"count accounts", func() error { _, err := s.Accounts().CountAccounts(t.Context()); return err }()},
		{"get token", func() error { _, err := s.Tokens().GetToken(t.Context(), "jti"); return err }()},
	} {
		if !errors.Is(call.err, sdk.ErrUnavailable) {
			t.Errorf("%s on a dead plugin = %v, want ErrUnavailable", call.name, call.err)
		}
		if errors.Is(call.err, sdk.ErrNotFound) {
			t.Errorf("%s on a dead plugin looks like not found: %v", call.name, call.err)
		}
	}
}

// TestSIGTERMClosesAndExits: a plugin sent SIGTERM (by an operator, or
// an init system stopping the service's process group) closes its store
// and exits on its own; the database is then complete and reopens.
func TestSIGTERMClosesAndExits(t *testing.T) {
	bin := buildOnce(t)
	c, hostLog := plugintest.Start(t, plugin.KindStorage, "sqlite", bin)
	uri := "sqlite://" + filepath.Join(t.TempDir(), "mcias.db")
	s, err := plugin.OpenStorage(t.Context(), c, uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Audit().AppendEvent(t.Context(), audit.Event{ID: "ev-1", Type: audit.PluginStart, Outcome: audit.Success}); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(c.ID())
	if err != nil {
		t.Fatalf("plugin id %q: %v", c.ID(), err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin to exit after SIGTERM", c.Exited)
	if len(hostLog.Lines(`"msg":"plugin received SIGTERM; exiting"`, `"plugin":"sqlite"`)) == 0 {
		t.Errorf("no SIGTERM record in the host log:\n%s", hostLog.String())
	}
	again, err := sqlite.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(t.Context())
	evs, err := again.Audit().ReadEvents(t.Context(), 0, 0)
	if err != nil || len(evs) != 1 || evs[0].ID != "ev-1" {
		t.Fatalf("after SIGTERM the database holds %+v, %v", evs, err)
	}
}

func TestWrongKindRefused(t *testing.T) {
	bin := buildOnce(t)
	c, _ := plugintest.Start(t, plugin.KindCustody, "sqlite-as-custody", bin)
	_, err := plugin.OpenCustody(t.Context(), c, "local:///nowhere")
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("OpenCustody on a storage plugin = %v, want ErrUnavailable", err)
	}
}

// TestExitsWhenHostDies starts the plugin under a shell that plays the
// host (no Pdeathsig, nothing to tell the plugin), kills the shell with
// SIGKILL and checks that the plugin notices and exits.
func TestExitsWhenHostDies(t *testing.T) {
	bin := buildOnce(t)
	h := plugin.Handshake(plugin.KindStorage)
	host := exec.Command("/bin/sh", "-c", `"$0" & echo "$!"; wait`, bin)
	host.Env = append(os.Environ(), h.MagicCookieKey+"="+h.MagicCookieValue)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the plugin pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("plugin pid %q: %v", line, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	// The go-plugin handshake line says the plugin is serving.
	if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, "|grpc|") {
		t.Fatalf("handshake line %q, %v", line, err)
	}
	if !alive(pid) {
		t.Fatal("plugin is not running before its host is killed")
	}
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	waitFor(t, "the orphaned plugin to exit", func() bool { return !alive(pid) })
}

// alive reports whether pid runs (a zombie has exited: it only waits for
// its new parent to reap it).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitFor polls cond for up to 20 seconds. The plugin checks its parent
// every 500ms and exits at once, but this is a liveness check, not a
// latency bound: on a loaded CI machine a race-built plugin can be starved
// for seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
