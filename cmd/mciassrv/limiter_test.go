package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/metacircular/mcias/backends/storage/postgres"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/internal/pgtest"
	"github.com/metacircular/mcias/sdk/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two limiters built on one store stand for two nodes. On PostgreSQL (a
// store several nodes share) they must draw from one budget; on SQLite
// (one node) each keeps its own in memory and storage sees no bucket.
func TestLoginLimiterSharedOnlyOnMultiNodeStore(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := LoginConfig{RatePerMinute: 1, Burst: 2}
	now := time.Now()
	for _, tc := range []struct {
		name   string
		open   func(t *testing.T) storage.Store
		shared bool
	}{
		{"sqlite", func(t *testing.T) storage.Store {
			st, err := sqlite.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "m.db"), logger)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, false},
		{"postgres", func(t *testing.T) storage.Store {
			st, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), logger)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			t.Cleanup(func() { _ = st.Close(t.Context()) })
			a, b := loginLimiter(cfg, st), loginLimiter(cfg, st)
			allowed := 0
			for i := range 4 {
				l := a
				if i%2 == 1 {
					l = b
				}
				ok, _, err := l.Allow(t.Context(), "192.0.2.7", now)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					allowed++
				}
			}
			want := 4 // each of the two keeps its own burst of 2
			if tc.shared {
				want = 2 // one burst of 2 between them
			}
			if allowed != want {
				t.Fatalf("%d of 4 attempts allowed across two limiters, want %d", allowed, want)
			}
		})
	}
}
