package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
	"github.com/metacircular/mcias/sdk/storage"
)

// BenchmarkGetToken measures one storage read (the revocation lookup the
// core makes when its cache misses) in-process, through the gRPC shims in
// the same process, and through the plugin binary: the cost of the wire.
func BenchmarkGetToken(b *testing.B) {
	uri := func(b *testing.B) string { return "sqlite://" + filepath.Join(b.TempDir(), "mcias.db") }
	ways := []struct {
		name string
		open func(b *testing.B) storage.Store
	}{
		{"direct", func(b *testing.B) storage.Store {
			s, err := sqlite.Open(b.Context(), uri(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"grpc", func(b *testing.B) storage.Store {
			s, stop, err := plugin.StorageOverGRPC(b.Context(), sqlite.Open, uri(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(stop)
			return s
		}},
		{"plugin", func(b *testing.B) storage.Store {
			c, _ := plugintest.Start(b, plugin.KindStorage, "sqlite", plugintest.Build(b, ".", ".", "mcias-plugin-sqlite"))
			s, err := plugin.OpenStorage(b.Context(), c, uri(b))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, w := range ways {
		b.Run("way="+w.name, func(b *testing.B) {
			s := w.open(b)
			now := time.Now().UTC()
			a := storage.Account{ID: "3f1e6c2a-0000-4000-8000-000000000001", Username: "alice", Skeleton: "alice",
				Type: storage.Human, Status: storage.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
			tok := storage.Token{JTI: "3f1e6c2a-0000-4000-8000-000000000002", AccountID: a.ID, Kind: storage.Session,
				KID: "k", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			ev := func(id string) audit.Event {
				return audit.Event{ID: id, Time: now, Type: audit.LoginSuccess, Outcome: audit.Success}
			}
			if err := s.Accounts().CreateAccount(b.Context(), a, ev("e1")); err != nil {
				b.Fatal(err)
			}
			if err := s.Tokens().CreateToken(b.Context(), tok, "", ev("e2")); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Tokens().GetToken(b.Context(), tok.JTI); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
