package postgres

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/internal/pgtest"
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
	uri := pgtest.NewDatabase(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer NOT NULL PRIMARY KEY,
		name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		if _, err := conn.Exec(ctx, m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			t.Fatal(err)
		}
	}
	// Events as the old code stored them; a rolled-back write left seq 3
	// unused.
	at := time.Date(2026, 1, 2, 3, 4, 5, 987654000, time.UTC)
	for i, seq := range []int64{1, 2, 4, 5} {
		if _, err := conn.Exec(ctx, `INSERT INTO audit_events (seq, id, time, type, actor_id, account_id,
			ip, request_id, outcome, details) OVERRIDING SYSTEM VALUE
			VALUES ($1, $2, $3, 'login_failure', '', 'acct', '192.0.2.1', 'req', 'failure', $4::jsonb)`,
			seq, fmt.Sprintf("old-%d", i), at.Add(time.Duration(i)*time.Second), fmt.Sprintf(`{"n":"%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `SELECT setval(pg_get_serial_sequence('audit_events', 'seq'), 5)`); err != nil {
		t.Fatal(err)
	}

	s, err := open(ctx, uri, nil)
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
	if old[2].Seq != 4 || old[0].Details["n"] != "0" || !old[0].Time.Equal(at) {
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
}

// TestChainAcrossNodes: several stores on one database, as several
// nodes, append at once, and the database holds one linear chain.
func TestChainAcrossNodes(t *testing.T) {
	_, uri := openTemp(t)
	const nodes, perNode = 4, 25
	stores := make([]*Store, nodes)
	for i := range stores {
		s, err := open(t.Context(), uri, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(t.Context())
		stores[i] = s
	}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i, s := range stores {
		wg.Go(func() {
			for j := range perNode {
				ev := audit.Event{ID: fmt.Sprintf("node%d-%d", i, j), Type: audit.LoginFailure,
					Time: time.Now(), Outcome: audit.Failure, Details: map[string]string{"node": fmt.Sprint(i)}}
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
			t.Fatalf("node %d: %v", i, err)
		}
	}
	all, err := stores[0].Audit().ReadEvents(t.Context(), 0, nodes*perNode+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != nodes*perNode {
		t.Fatalf("events = %d, want %d", len(all), nodes*perNode)
	}
	storagetest.VerifyChain(t, all)
}

// TestLeaseAcrossNodes: two stores on one database contend for leases;
// exactly one holds each, and the other takes over once it is released
// or expired.
func TestLeaseAcrossNodes(t *testing.T) {
	a, uri := openTemp(t)
	b, err := open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(t.Context())
	nodes := []storage.Leaser{a, b}
	for round := range 5 {
		name := fmt.Sprintf("deliver:%d", round)
		var wg sync.WaitGroup
		got := make([]bool, len(nodes))
		errs := make([]error, len(nodes))
		for i, l := range nodes {
			wg.Go(func() { got[i], errs[i] = l.AcquireLease(t.Context(), name, fmt.Sprintf("node-%d", i), time.Hour) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
		}
		if got[0] == got[1] {
			t.Fatalf("round %d: acquired = %v, want exactly one", round, got)
		}
		winner, loser := 0, 1
		if got[1] {
			winner, loser = 1, 0
		}
		if err := nodes[winner].ReleaseLease(t.Context(), name, fmt.Sprintf("node-%d", winner)); err != nil {
			t.Fatal(err)
		}
		if ok, err := nodes[loser].AcquireLease(t.Context(), name, fmt.Sprintf("node-%d", loser), 20*time.Millisecond); !ok || err != nil {
			t.Fatalf("round %d: the loser after release: %v, %v", round, ok, err)
		}
		time.Sleep(60 * time.Millisecond)
		if ok, err := nodes[winner].AcquireLease(t.Context(), name, fmt.Sprintf("node-%d", winner), time.Hour); !ok || err != nil {
			t.Fatalf("round %d: the winner after the loser's lease expired: %v, %v", round, ok, err)
		}
	}
}
