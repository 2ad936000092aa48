package main

import (
	"context"
	"testing"

	"github.com/metacircular/mcias/backends/storage/postgres"
	"github.com/metacircular/mcias/internal/pgtest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
	"github.com/metacircular/mcias/sdk/storage"
	"github.com/metacircular/mcias/sdk/storage/storagetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestConformance runs the storage suite against the postgres backend
// three ways, each on a real PostgreSQL server with a fresh database per
// case: in-process, through the gRPC shims in-process, and as this very
// plugin binary under go-plugin.
func TestConformance(t *testing.T) {
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
			s, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, s)
			return s
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			s, stop, err := plugin.StorageOverGRPC(t.Context(), postgres.Open, pgtest.NewDatabase(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			closeAtEnd(t, s)
			return s
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "mcias-plugin-postgres")
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			uri := pgtest.NewDatabase(t)
			c, _ := plugintest.Start(t, plugin.KindStorage, "postgres", bin)
			s, err := plugin.OpenStorage(t.Context(), c, uri)
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, s)
			return s
		})
	})
}
