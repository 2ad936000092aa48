package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
	"github.com/metacircular/mcias/sdk/storage/storagetest"
)

// TestChainMigration opens a database written at schema version 2, before
// the chain existed, holding events: migration 3 links them in seq order,
// and events stored afterwards continue that chain.
func TestChainMigration(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "old.db")
	if err := prepareFile(path, nil); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		if _, err := db.ExecContext(ctx, m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?, 0)`, m.version, m.name); err != nil {
			t.Fatal(err)
		}
	}
	// Events as the old code stored them, nanosecond times and all; one
	// seq is missing, as after a deleted row.
	at := time.Date(2026, 1, 2, 3, 4, 5, 987654321, time.UTC)
	for i, seq := range []int64{1, 2, 4, 5} {
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_events (seq, id, time, type, actor_id, account_id,
			ip, request_id, outcome, details) VALUES (?, ?, ?, 'login_failure', '', 'acct', '192.0.2.1', 'req', 'failure', ?)`,
			seq, fmt.Sprintf("old-%d", i), at.Add(time.Duration(i)*time.Second).UnixNano(),
			fmt.Sprintf(`{"n":"%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := open(ctx, "sqlite://"+path, nil)
	if err != nil {
		t.Fatalf("open at schema 2: %v", err)
	}
	defer s.Close(ctx)
	if info, _ := s.Info(ctx); info.SchemaVersion != len(ms) {
		t.Fatalf("schema version %d, want %d", info.SchemaVersion, len(ms))
	}
	old, err := s.Audit().ReadEvents(ctx, 0, 0)
	if err != nil || len(old) != 4 {
		t.Fatalf("ReadEvents: %d events, %v; want 4", len(old), err)
	}
	storagetest.VerifyChain(t, old)
	if old[2].Seq != 4 || old[0].Details["n"] != "0" {
		t.Fatalf("migrated events %+v changed", old)
	}

	if err := s.Audit().AppendEvent(ctx, audit.Event{ID: "new", Type: audit.PluginStart, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Audit().ReadEvents(ctx, 0, 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("ReadEvents: %d events, %v; want 5", len(all), err)
	}
	storagetest.VerifyChain(t, all)
	if !bytes.Equal(all[4].PrevHash, old[3].Hash) {
		t.Error("the first new event does not link to the last migrated one")
	}
	// The new tables and index are there.
	if err := s.Audit().SetSinkCursor(ctx, "file", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tokens().ListTokens(ctx, storage.TokenFilter{KID: "k"}); err != nil {
		t.Fatal(err)
	}
}

// TestLeaserTwoProcesses: two Stores on one file, as two processes, see
// one lease.
func TestLeaserTwoProcesses(t *testing.T) {
	a, path := openTemp(t)
	b, err := open(t.Context(), "sqlite://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(t.Context())
	var l storage.Leaser = a
	if ok, err := l.AcquireLease(t.Context(), "rotate", "a", time.Hour); !ok || err != nil {
		t.Fatalf("a: AcquireLease = %v, %v", ok, err)
	}
	if ok, err := b.AcquireLease(t.Context(), "rotate", "b", time.Hour); ok || err != nil {
		t.Fatalf("b: AcquireLease = %v, %v; want false", ok, err)
	}
	if err := a.ReleaseLease(t.Context(), "rotate", "a"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.AcquireLease(t.Context(), "rotate", "b", time.Hour); !ok || err != nil {
		t.Fatalf("b after release: AcquireLease = %v, %v", ok, err)
	}
}
