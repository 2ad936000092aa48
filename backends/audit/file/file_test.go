package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
)

// readFile parses every complete line of path.
func readFile(t *testing.T, path string) []audit.Event {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, r.Event())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func openPath(t *testing.T, path string) audit.Sink {
	t.Helper()
	s, err := Open(t.Context(), "file://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		return openPath(t, path), func() []audit.Event { return readFile(t, path) }
	})
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		name, uri, want string
		ok              bool
	}{
		{"abs", "file:///var/log/mcias/audit.jsonl", "/var/log/mcias/audit.jsonl", true},
		{"localhost", "file://localhost/var/log/a.jsonl", "/var/log/a.jsonl", true},
		{"rel", "file:logs/audit.jsonl", "logs/audit.jsonl", true},
		{"wrong scheme", "local:///x", "", false},
		{"host", "file://example.com/x", "", false},
		{"no path", "file://", "", false},
		{"query", "file:///x?mode=0644", "", false},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			got, err := parseURI(tt.uri)
			if !tt.ok {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("parseURI = %q, %v; want ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseURI = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestFileFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s := openPath(t, path)
	e := audittest.Event(1)
	noActor := audittest.Event(2)
	noActor.ActorID, noActor.AccountID, noActor.Details = "", "", nil
	if err := s.Deliver(t.Context(), []audit.Event{e, noActor}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %#o, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), raw)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "seq", "time", "type", "actor_id", "account_id", "ip", "request_id", "outcome", "details"} {
		if _, ok := m[k]; !ok {
			t.Errorf("line lacks %q: %s", k, lines[0])
		}
	}
	if m["time"] != "2026-01-02T03:04:06.123456789Z" {
		t.Errorf("time = %v, want RFC 3339 UTC with nanoseconds", m["time"])
	}
	if strings.Contains(lines[1], "actor_id") || !strings.Contains(lines[1], `"details":{}`) {
		t.Errorf("empty optional fields: %s", lines[1])
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s := openPath(t, path)
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	s = openPath(t, path)
	defer s.Close(t.Context())
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(2)}); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("after reopen: %+v", got)
	}
}

func TestTornLineRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// A crash mid-write left half a record.
	if err := os.WriteFile(path, []byte(`{"id":"x","seq":1,"ti`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openPath(t, path)
	defer s.Close(t.Context())
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(2)}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 2 || lines[0] != `{"id":"x","seq":1,"ti` {
		t.Fatalf("file:\n%s", raw)
	}
	var r Record
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || r.Seq != 2 {
		t.Fatalf("new record not on its own line: %v", err)
	}
}

func TestRefusesLoosePermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), "file://"+path, nil); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "0600 or stricter") {
		t.Fatalf("Open on a 0644 file = %v", err)
	}
	if _, err := Open(t.Context(), "file://"+dir, nil); err == nil {
		t.Fatal("Open on a directory succeeded")
	}
	if _, err := Open(t.Context(), "file://"+filepath.Join(dir, "missing", "a.jsonl"), nil); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Open in a missing directory = %v", err)
	}
}

func TestDeliverAfterClose(t *testing.T) {
	s := openPath(t, filepath.Join(t.TempDir(), "audit.jsonl"))
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(1)}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Deliver after Close = %v", err)
	}
}

func TestRedeliveryDropsRecentDuplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s := openPath(t, path)
	defer s.Close(t.Context())
	b := []audit.Event{audittest.Event(1), audittest.Event(2), audittest.Event(1)}
	for range 3 {
		if err := s.Deliver(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, path); len(got) != 2 {
		t.Fatalf("%d lines, want 2", len(got))
	}
}

// TestReopenAfterRotation renames the file the way logrotate does while
// batches are being delivered, then reopens: every event is in exactly
// one of the two files, in order, and later events go to the new file.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s := openPath(t, path)
	defer s.Close(t.Context())
	r := s.(audit.Reopener)

	const n = 200
	done := make(chan error, 1)
	go func() {
		for i := int64(1); i <= n; i++ {
			if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	rotated := filepath.Join(dir, "audit.jsonl.1")
	for i := 0; ; i++ {
		if raw, _ := os.ReadFile(path); bytes.Count(raw, []byte("\n")) >= 20 || i > 1000 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := r.Reopen(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(n + 1)}); err != nil {
		t.Fatal(err)
	}
	old, cur := readFile(t, rotated), readFile(t, path)
	if len(old) == 0 || len(cur) == 0 {
		t.Fatalf("rotated file has %d events, new file %d; want both non-empty", len(old), len(cur))
	}
	all := append(old, cur...)
	if len(all) != n+1 {
		t.Fatalf("%d events in both files, want %d", len(all), n+1)
	}
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v, mode %v", err, st.Mode())
	}
}

func TestReopenFailureKeepsWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s := openPath(t, path)
	defer s.Close(t.Context())
	rotated := filepath.Join(dir, "audit.jsonl.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	// Something else (a mistaken logrotate "create 0644") put a loose file there.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.(audit.Reopener).Reopen(t.Context()); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Reopen onto a 0644 file = %v", err)
	}
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(1)}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, rotated); len(got) != 1 {
		t.Fatalf("the old file has %d events after a failed reopen, want 1", len(got))
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.(audit.Reopener).Reopen(t.Context()); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Reopen after Close = %v", err)
	}
}

// TestAttackerText: text meant to end a line or forge a record stays
// inside its one line and decodes back exactly.
func TestAttackerText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s := openPath(t, path)
	defer s.Close(t.Context())
	nasty := "x\n{\"id\":\"forged\",\"type\":\"login_success\"}\r\u2028\u2029\u0085\x00\"\\]"
	e := audittest.Event(1)
	e.IP, e.RequestID, e.Details = nasty, nasty, map[string]string{nasty: nasty}
	if err := s.Deliver(t.Context(), []audit.Event{e, audittest.Event(2)}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if n := bytes.Count(raw, []byte("\n")); n != 2 || bytes.ContainsAny(raw, "\r\x00\u2028\u2029\u0085") {
		t.Fatalf("%d lines, or a raw line-breaking character:\n%q", n, raw)
	}
	got := readFile(t, path)
	if len(got) != 2 || audittest.Equal(got[0], e) != "" {
		t.Fatalf("read back %+v", got)
	}
}
