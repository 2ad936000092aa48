package plugin

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// records decodes the JSON lines of a slog JSON handler.
func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	host := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newHCLogAdapter(host.With("plugin", "sqlite"))

	if l.GetLevel() != hclog.Debug || l.IsTrace() || !l.IsDebug() {
		t.Fatalf("level = %v, IsTrace %v, IsDebug %v; want debug", l.GetLevel(), l.IsTrace(), l.IsDebug())
	}
	l.Trace("dropped")
	// What go-plugin does with a plugin's stderr: a named logger, and its
	// own "plugin" and "timestamp" keys.
	l.Named("mcias-plugin-sqlite").Warn("from plugin", "plugin", "/usr/lib/x", "timestamp", "t0", "n", 3)
	l.With("id", "42").Error("exited")
	l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info}).Print("std")

	got := records(t, &buf)
	if len(got) != 3 {
		t.Fatalf("%d records, want 3 (trace dropped):\n%s", len(got), buf.String())
	}
	want := []map[string]any{
		{"level": "WARN", "msg": "from plugin", "plugin": "sqlite", "logger": "mcias-plugin-sqlite", "plugin_path": "/usr/lib/x", "plugin_time": "t0", "n": float64(3)},
		{"level": "ERROR", "msg": "exited", "plugin": "sqlite", "id": "42"},
		{"level": "INFO", "msg": "std", "plugin": "sqlite"},
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (%v)", i, k, got[i][k], v, got[i])
			}
		}
	}
}

func TestHCLogHandler(t *testing.T) {
	var buf bytes.Buffer
	hl := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: &buf, JSONFormat: true})
	l := slog.New(newHCLogHandler(hl))
	l.Debug("dropped")
	l.With("component", "migrate").WithGroup("db").Info("applied", "version", 2, slog.Group("file", "name", "0001.sql"))
	l.Error("failed", "err", "disk full")

	got := records(t, &buf)
	if len(got) != 2 {
		t.Fatalf("%d records, want 2 (debug dropped):\n%s", len(got), buf.String())
	}
	// The keys go-plugin's host parses: @level, @message, @timestamp.
	for k, v := range map[string]any{"@level": "info", "@message": "applied", "component": "migrate", "db.version": float64(2), "db.file.name": "0001.sql"} {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v (%v)", k, got[0][k], v, got[0])
		}
	}
	if _, ok := got[0]["@timestamp"]; !ok {
		t.Errorf("no @timestamp: %v", got[0])
	}
	if got[1]["@level"] != "error" || got[1]["err"] != "disk full" {
		t.Errorf("second record %v", got[1])
	}
}

func TestLineLogger(t *testing.T) {
	var buf bytes.Buffer
	w := &lineLogger{l: slog.New(slog.NewJSONHandler(&buf, nil))}
	_, _ = w.Write([]byte("one\ntw"))
	_, _ = w.Write([]byte("o\r\n\n"))
	got := records(t, &buf)
	if len(got) != 2 || got[0]["line"] != "one" || got[1]["line"] != "two" {
		t.Fatalf("records %v", got)
	}
}
