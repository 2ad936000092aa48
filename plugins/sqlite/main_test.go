package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
	"github.com/metacircular/mcias/sdk/storage"
	"github.com/metacircular/mcias/sdk/storage/storagetest"
)

// TestConformance runs the storage suite against the sqlite backend three
// ways: in-process, through the gRPC shims in-process, and as this very
// plugin binary under go-plugin.
func TestConformance(t *testing.T) {
	uri := func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "mcias.db") }
	closeAtEnd := func(t *testing.T, s storage.Store) {
		// The suite may Close the store itself; a second Close must be
		// harmless, so its error is not the point here.
		t.Cleanup(func() { _ = s.Close(context.WithoutCancel(t.Context())) })
		// The backend has leases, and each way must expose them.
		if _, ok := s.(storage.Leaser); !ok {
			t.Fatalf("%T is no storage.Leaser", s)
		}
	}
	t.Run("way=direct", func(t *testing.T) {
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			s, err := sqlite.Open(t.Context(), uri(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, s)
			return s
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			s, stop, err := plugin.StorageOverGRPC(t.Context(), sqlite.Open, uri(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			closeAtEnd(t, s)
			return s
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "mcias-plugin-sqlite")
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			c, _ := plugintest.Start(t, plugin.KindStorage, "sqlite", bin)
			s, err := plugin.OpenStorage(t.Context(), c, uri(t))
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, s)
			return s
		})
	})
}

// noLeases is a store without the optional capabilities: only the
// storage.Store methods of the sqlite store it wraps.
type noLeases struct{ storage.Store }

// TestLeasesOnlyWhenTheBackendHasThem: the client shim is a
// storage.Leaser exactly when the plugin's store is one.
func TestLeasesOnlyWhenTheBackendHasThem(t *testing.T) {
	open := func(ctx context.Context, uri string, logger *slog.Logger) (storage.Store, error) {
		s, err := sqlite.Open(ctx, uri, logger)
		if err != nil {
			return nil, err
		}
		return noLeases{s}, nil
	}
	s, stop, err := plugin.StorageOverGRPC(t.Context(), open, "sqlite://"+filepath.Join(t.TempDir(), "mcias.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, ok := s.(storage.Leaser); ok {
		t.Fatalf("%T is a storage.Leaser, but the plugin's store has no leases", s)
	}
	// The rest works as before.
	if _, err := s.Audit().SinkCursor(t.Context(), "file"); err != nil {
		t.Fatal(err)
	}
}
