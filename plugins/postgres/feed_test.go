package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/metacircular/mcias/backends/storage/postgres"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/internal/pgtest"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
	"github.com/metacircular/mcias/sdk/storage"
)

// TestChangeFeedAcrossTheWire: the postgres change feed reaches the host
// through the gRPC shims and through the plugin binary, and ends when the
// plugin dies; a backend without a feed says not implemented.
func TestChangeFeedAcrossTheWire(t *testing.T) {
	for _, way := range []string{"grpc", "plugin"} {
		t.Run("way="+way, func(t *testing.T) {
			uri := pgtest.NewDatabase(t)
			var (
				s    storage.Store
				kill func()
			)
			switch way {
			case "grpc":
				st, stop, err := plugin.StorageOverGRPC(t.Context(), postgres.Open, uri, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
				s, kill = st, stop
			case "plugin":
				bin := plugintest.Build(t, ".", ".", "mcias-plugin-postgres")
				c, _ := plugintest.Start(t, plugin.KindStorage, "postgres", bin)
				st, err := plugin.OpenStorage(t.Context(), c, uri)
				if err != nil {
					t.Fatal(err)
				}
				s, kill = st, c.Kill
			}
			t.Cleanup(func() { _ = s.Close(context.WithoutCancel(t.Context())) })
			feed, ok := s.(storage.ChangeFeed)
			if !ok {
				t.Fatal("the client shim offers no change feed")
			}
			ch, err := feed.WatchChanges(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if c := recv(t, ch); c.AccountID != "" {
				t.Fatalf("first notice %+v, want the empty 'established' one", c)
			}
			// Another node writes directly to the database.
			other, err := postgres.Open(t.Context(), uri, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(t.Context())
			now := time.Now().UTC()
			a := storage.Account{ID: "acc-1", Username: "alice", Skeleton: "alice", Type: storage.Human,
				Status: storage.Active, Version: 1, CreatedAt: now, UpdatedAt: now}
			if err := other.Accounts().CreateAccount(t.Context(), a, audit.Event{ID: "e1", Type: audit.AccountCreate}); err != nil {
				t.Fatal(err)
			}
			a.Status = storage.Inactive
			if _, err := other.Accounts().UpdateAccount(t.Context(), a, storage.UpdateOptions{RevokeTokens: true}, audit.Event{ID: "e2", Type: audit.AccountUpdate}); err != nil {
				t.Fatal(err)
			}
			if c := recv(t, ch); c.AccountID != a.ID {
				t.Fatalf("notice %+v, want account %s", c, a.ID)
			}
			kill()
			deadline := time.After(10 * time.Second)
			for {
				select {
				case _, open := <-ch:
					if !open {
						return
					}
				case <-deadline:
					t.Fatal("the feed stayed open after the plugin died")
				}
			}
		})
	}
	t.Run("case=no feed", func(t *testing.T) {
		s, stop, err := plugin.StorageOverGRPC(t.Context(), sqlite.Open, "sqlite://"+filepath.Join(t.TempDir(), "x.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		if _, err := s.(storage.ChangeFeed).WatchChanges(t.Context()); !errors.Is(err, sdk.ErrNotImplemented) {
			t.Fatalf("WatchChanges on sqlite over gRPC = %v, want not implemented", err)
		}
	})
}

func recv(t *testing.T, ch <-chan storage.Change) storage.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("feed closed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no notice within 10s")
	}
	panic("unreachable")
}
