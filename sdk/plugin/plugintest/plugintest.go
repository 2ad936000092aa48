// Package plugintest builds a plugin binary and starts it under go-plugin
// for tests, the way the MCIAS server's supervisor does: ClientConfig from
// sdk/plugin, AutoMTLS, Pdeathsig. With it a plugin author runs the
// conformance suites against the built binary:
//
//	func TestConformance(t *testing.T) {
//		bin := plugintest.Build(t, ".", ".", "my-plugin")
//		storagetest.RunTests(t, func(t *testing.T) storage.Store {
//			c, _ := plugintest.Start(t, plugin.KindStorage, "mine", bin)
//			s, err := plugin.OpenStorage(t.Context(), c, "mine:///"+t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package plugintest

import (
	"bytes"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/metacircular/mcias/sdk/plugin"
)

// Build compiles the main package pkg (a package path or pattern as `go
// build` takes it, resolved in dir) into a temporary directory and returns
// the binary's path. When the test binary runs with the race detector the
// plugin is built with it too, so races in the server shim fail the test.
func Build(t testing.TB, dir, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(t.Context(), "go", append(args, pkg)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Log collects the host's log records as JSON lines.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns what was logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns the logged lines that contain every one of subs.
func (l *Log) Lines(subs ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// Start runs bin as a plugin of kind named name, as the supervisor would,
// and kills it when the test ends. The host's log goes to the returned
// Log (debug level) and, when the test fails, to the test output.
func Start(t testing.TB, kind plugin.Kind, name, bin string) (*goplugin.Client, *Log) {
	t.Helper()
	hostLog := &Log{}
	logger := slog.New(slog.NewJSONHandler(hostLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cfg := plugin.ClientConfig(kind, name, cmd, logger)
	cfg.StartTimeout = 30 * time.Second
	c := goplugin.NewClient(cfg)
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("host log of plugin %s:\n%s", name, hostLog.String())
		}
	})
	return c, hostLog
}
