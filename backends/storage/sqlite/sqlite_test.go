package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
	"github.com/metacircular/mcias/sdk/storage/storagetest"
)

// openTemp opens a fresh database in a temporary directory.
func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mcias.db")
	s, err := open(t.Context(), "sqlite://"+path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(t.Context()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func TestConformance(t *testing.T) {
	storagetest.RunTests(t, func(t *testing.T) storage.Store {
		s, _ := openTemp(t)
		return s
	})
}

func TestFactory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	s, err := Open(t.Context(), "sqlite://"+path, nil)
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	defer s.Close(t.Context())
	if s, err := Open(t.Context(), "postgres://x/y", nil); s != nil || !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Open(postgres) = %v, %v; want nil, invalid argument", s, err)
	}
}

func TestParseURI(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uri     string
		want    string
		wantErr error
	}{
		{uri: "sqlite:///var/lib/mcias/mcias.db", want: "/var/lib/mcias/mcias.db"},
		{uri: "sqlite:rel/path.db", want: filepath.Join(wd, "rel/path.db")},
		{uri: "sqlite:mcias.db", want: filepath.Join(wd, "mcias.db")},
		{uri: "sqlite:///with%20space/a.db", want: "/with space/a.db"},
		{uri: "sqlite:///a%3Fb.db", want: "/a?b.db"},
		{uri: "postgres:///x.db", wantErr: sdk.ErrInvalidArgument},
		{uri: "/plain/path.db", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite://host/x.db", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite://user@/x.db", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite:///x.db?mode=ro", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite:///x.db#frag", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite:", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite://", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite::memory:", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite:///dir/", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite:%zz", wantErr: sdk.ErrInvalidArgument},
		{uri: "", wantErr: sdk.ErrInvalidArgument},
	} {
		t.Run("case="+tc.uri, func(t *testing.T) {
			got, err := parseURI(tc.uri)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("parseURI(%q) = %q, %v; want %v", tc.uri, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseURI(%q) = %q, %v; want %q", tc.uri, got, err, tc.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, []byte("this is not a sqlite database, not at all, no......................................................."), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		uri     string
		wantErr error
	}{
		{"bad scheme", "mysql:///x.db", sdk.ErrInvalidArgument},
		{"missing directory", "sqlite://" + filepath.Join(dir, "nope", "x.db"), sdk.ErrInvalidArgument},
		{"path is a directory", "sqlite://" + dir, sdk.ErrInvalidArgument},
		{"not a database", "sqlite://" + notDB, sdk.ErrInternal},
	} {
		t.Run("case="+tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.uri, nil)
			if err == nil {
				s.Close(t.Context())
				t.Fatalf("Open(%s) succeeded", tc.uri)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Open(%s) err = %v, want %v", tc.uri, err, tc.wantErr)
			}
		})
	}
}

func TestFilePermissions(t *testing.T) {
	s, path := openTemp(t)
	// Force WAL and SHM files into existence with a write.
	ev := audit.Event{ID: "e1", Type: audit.PluginStart, Time: time.Now()}
	if err := s.Audit().AppendEvent(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %#o, want 0600", filepath.Base(p), perm)
		}
	}

	// An existing file readable by others is tightened at open.
	loose := filepath.Join(t.TempDir(), "loose.db")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), "sqlite://"+loose, nil)
	if err != nil {
		t.Fatalf("Open(loose): %v", err)
	}
	defer s2.Close(t.Context())
	st, err := os.Stat(loose)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("loose.db: mode %#o after open, want 0600", perm)
	}
}

func TestMigrations(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}

	path := filepath.Join(t.TempDir(), "m.db")
	uri := "sqlite://" + path
	s, err := open(t.Context(), uri, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name != "sqlite" || info.SchemaVersion != len(ms) {
		t.Errorf("Info = %+v, want sqlite, version %d", info, len(ms))
	}
	ev := audit.Event{ID: "e1", Type: audit.PluginStart, Time: time.Now()}
	if err := s.Audit().AppendEvent(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Reopening applies nothing twice and keeps the data.
	for range 2 {
		s, err = open(t.Context(), uri, nil)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		var rows int
		if err := s.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != len(ms) {
			t.Errorf("schema_migrations rows = %d, want %d", rows, len(ms))
		}
		evs, err := s.Audit().ReadEvents(t.Context(), 0, 10)
		if err != nil || len(evs) != 1 {
			t.Errorf("after reopen: %d events, %v; want 1", len(evs), err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	// A database migrated by a newer binary is refused.
	s, err = open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future.sql', 0)`, len(ms)+1); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	if s, err := Open(t.Context(), uri, nil); !errors.Is(err, sdk.ErrPrecondition) {
		if err == nil {
			s.Close(t.Context())
		}
		t.Errorf("Open(newer schema) err = %v, want precondition", err)
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTemp(t)
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"synchronous", "2"},
	} {
		var got string
		if err := s.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
		}
	}
}

func TestTimesAreUnixNanos(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2031, 2, 3, 4, 5, 6, 789012345, time.FixedZone("X", 3600))
	ev := audit.Event{ID: "e1", Type: audit.PluginStart, Time: at}
	if err := s.Audit().AppendEvent(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	var stored int64
	if err := s.db.QueryRowContext(t.Context(), `SELECT time FROM audit_events WHERE id = 'e1'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != at.UnixNano() {
		t.Errorf("stored time = %d, want %d", stored, at.UnixNano())
	}
	evs, err := s.Audit().ReadEvents(t.Context(), 0, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("ReadEvents: %v", err)
	}
	if !evs[0].Time.Equal(at) || evs[0].Time.Location() != time.UTC {
		t.Errorf("read time = %v, want %v in UTC", evs[0].Time, at)
	}
	// The chain hash takes the time to the microsecond: the nanoseconds
	// kept change nothing.
	if !bytes.Equal(evs[0].Hash, audit.ChainHash(audit.GenesisHash(), evs[0])) {
		t.Error("the event read back does not hash to its Hash")
	}
}

// TestTwoProcesses runs writers through two Stores on one file, as two
// server processes would: BEGIN IMMEDIATE and busy_timeout must keep them
// from failing with SQLITE_BUSY.
func TestTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	var stores [2]*Store
	for i := range stores {
		s, err := open(t.Context(), "sqlite://"+path, nil)
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer s.Close(t.Context())
		stores[i] = s
	}
	const perStore = 50
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Go(func() {
			for j := range perStore {
				ev := audit.Event{ID: fmt.Sprintf("%d-%d", i, j), Type: audit.LoginFailure, Time: time.Now()}
				if err := s.Audit().AppendEvent(t.Context(), ev); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	evs, err := stores[0].Audit().ReadEvents(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2*perStore {
		t.Errorf("events = %d, want %d", len(evs), 2*perStore)
	}
}

func TestClassify(t *testing.T) {
	s, _ := openTemp(t)
	_, err := s.db.ExecContext(t.Context(), `INSERT INTO account_roles (account_id, role) VALUES ('nope', 'admin')`)
	if !errors.Is(classify(err), sdk.ErrNotFound) {
		t.Errorf("foreign key violation: %v", classify(err))
	}
	_, err = s.db.ExecContext(t.Context(), `INSERT INTO audit_events (id, time, type) VALUES ('x', 0, 't'), ('x', 0, 't')`)
	if !errors.Is(classify(err), sdk.ErrConflict) {
		t.Errorf("unique violation: %v", classify(err))
	}
	_, err = s.db.ExecContext(t.Context(), `INSERT INTO audit_events (id, time, type) VALUES ('y', 'not a number', 't')`)
	if !errors.Is(classify(err), sdk.ErrInvalidArgument) {
		t.Errorf("datatype violation: %v", classify(err))
	}
	_, err = s.db.ExecContext(t.Context(), `SELECT * FROM no_such_table`)
	if !errors.Is(classify(err), sdk.ErrInternal) {
		t.Errorf("bad SQL: %v", classify(err))
	}
	if err := classify(nil); err != nil {
		t.Errorf("classify(nil) = %v", err)
	}
	if err := classify(sdk.ErrConflict); err != sdk.ErrConflict {
		t.Errorf("classify(kind) = %v, want it unchanged", err)
	}
}
