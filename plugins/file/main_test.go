package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/metacircular/mcias/backends/audit/file"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

// readBack parses every line of the sink's file, as an operator's log
// shipper would.
func readBack(t *testing.T, path string) []audit.Event {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r file.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		out = append(out, r.Event())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConformance runs the audit sink suite against the file sink three
// ways: in-process, through the gRPC shims in-process, and as this very
// plugin binary under go-plugin.
func TestConformance(t *testing.T) {
	path := func(t *testing.T) string { return filepath.Join(t.TempDir(), "audit.jsonl") }
	t.Run("way=direct", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			p := path(t)
			s, err := file.Open(t.Context(), "file://"+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s, func() []audit.Event { return readBack(t, p) }
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			p := path(t)
			s, stop, err := plugin.AuditOverGRPC(t.Context(), file.Open, "file://"+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return s, func() []audit.Event { return readBack(t, p) }
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "mcias-plugin-file")
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			p := path(t)
			c, _ := plugintest.Start(t, plugin.KindAudit, "file", bin)
			s, err := plugin.OpenAudit(t.Context(), c, "file://"+p)
			if err != nil {
				t.Fatal(err)
			}
			return s, func() []audit.Event { return readBack(t, p) }
		})
	})
}
