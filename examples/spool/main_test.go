package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/metacircular/mcias/examples/spool/spool"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

// readSpool reads the directory as a forwarder would: finished *.jsonl
// files in name order, one event per line.
func readSpool(t *testing.T, dir string) []audit.Event {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	var out []audit.Event
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r audit.Record
			dec := json.NewDecoder(strings.NewReader(sc.Text()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			out = append(out, r.Event())
		}
		f.Close()
	}
	return out
}

// TestConformance runs the MCIAS audit sink suite against the sink three
// ways: in-process, through the plugin's gRPC shims in-process, and as
// this very plugin binary, started the way the MCIAS server starts it.
func TestConformance(t *testing.T) {
	dir := func(t *testing.T) string { return filepath.Join(t.TempDir(), "spool") }
	t.Run("way=direct", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			d := dir(t)
			s, err := spool.Open(t.Context(), "spool://"+d, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s, func() []audit.Event { return readSpool(t, d) }
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			d := dir(t)
			s, stop, err := plugin.AuditOverGRPC(t.Context(), spool.Open, "spool://"+d, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return s, func() []audit.Event { return readSpool(t, d) }
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "spool-plugin")
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			d := dir(t)
			c, _ := plugintest.Start(t, plugin.KindAudit, "spool", bin)
			s, err := plugin.OpenAudit(t.Context(), c, "spool://"+d)
			if err != nil {
				t.Fatal(err)
			}
			return s, func() []audit.Event { return readSpool(t, d) }
		})
	})
}

// TestAtomicFiles: every batch is one finished file, no temporary file
// is left behind, and a redelivered batch replaces its own file.
func TestAtomicFiles(t *testing.T) {
	d := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Open(t.Context(), "spool://"+d, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := []audit.Event{audittest.Event(7), audittest.Event(8)}
	for range 2 {
		if err := s.Deliver(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "00000000000000000007-00000000000000000008.jsonl" {
		t.Fatalf("spool holds %v", entries)
	}
	if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory mode %v", st.Mode())
	}
}

func TestBadURIs(t *testing.T) {
	loose := t.TempDir()
	if err := os.Chmod(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"spool:rel/dir", "file:///tmp/x", "spool://host/dir", "spool:///tmp/x?mode=1", "spool://" + loose} {
		if _, err := spool.Open(t.Context(), uri, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Open(%q) = %v, want ErrInvalidArgument", uri, err)
		}
	}
}
