package postgres

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// next receives one change or fails after 5 s.
func next(t *testing.T, ch <-chan storage.Change) storage.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("change feed closed")
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
	}
	panic("unreachable")
}

// TestChangeFeed: one store watches, another (another node) commits; the
// watcher hears of every account update and revocation, only after
// commit, and the feed survives its connection being killed.
func TestChangeFeed(t *testing.T) {
	watcher, uri := openTemp(t)
	writer, err := open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(t.Context())
	ch, err := watcher.WatchChanges(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.AccountID != "" {
		t.Fatalf("first change = %+v, want the empty 'established' change", c)
	}
	now := time.Now().UTC()
	ev := func(typ audit.Type) audit.Event {
		return audit.Event{ID: time.Now().Format(time.RFC3339Nano) + string(typ), Type: typ, Time: now}
	}
	a := storage.Account{ID: "acc-1", Username: "alice", Skeleton: "alice", Type: storage.Human,
		Status: storage.Active, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := writer.Accounts().CreateAccount(t.Context(), a, ev(audit.AccountCreate)); err != nil {
		t.Fatal(err)
	}
	tok := storage.Token{JTI: "jti-1", AccountID: a.ID, Kind: storage.Session, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := writer.Tokens().CreateToken(t.Context(), tok, "", ev(audit.LoginSuccess)); err != nil {
		t.Fatal(err)
	}
	// Creating an account or a token changes nothing a cache holds.
	if err := writer.Tokens().RevokeToken(t.Context(), tok.JTI, now, "logout", ev(audit.Logout)); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.AccountID != a.ID {
		t.Fatalf("after a revocation: change %+v, want account %s", c, a.ID)
	}
	a.Status = storage.Inactive
	if _, err := writer.Accounts().UpdateAccount(t.Context(), a, storage.UpdateOptions{RevokeTokens: true}, ev(audit.AccountUpdate)); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.AccountID != a.ID {
		t.Fatalf("after an update: change %+v, want account %s", c, a.ID)
	}
	// A failed update (stale version) rolls back its notification too.
	if _, err := writer.Accounts().UpdateAccount(t.Context(), a, storage.UpdateOptions{}, ev(audit.AccountUpdate)); err == nil {
		t.Fatal("stale update succeeded")
	}
	select {
	case c := <-ch:
		t.Fatalf("a rolled-back update was notified: %+v", c)
	case <-time.After(200 * time.Millisecond):
	}

	// Kill the feed's connection: the watcher reconnects and says so.
	conn, err := pgx.Connect(t.Context(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var killed int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d feed connections: %v", killed, err)
	}
	if c := next(t, ch); c.AccountID != "" {
		t.Fatalf("after reconnecting: change %+v, want the empty 'resync' change", c)
	}

	// Closing the store closes the channel.
	if err := watcher.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			// Drain one buffered value at most.
			if _, ok := <-ch; ok {
				t.Fatal("feed still open after Close")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("feed not closed within 5s of Close")
	}
}
