package sqlite

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Two Stores on one file (two nodes sharing SQLite) share the buckets:
// together they grant exactly the burst.
func TestLoginLimiterTwoProcesses(t *testing.T) {
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
	const burst, perStore = 7, 20
	now := time.Now()
	var (
		wg      sync.WaitGroup
		granted atomic.Int32
	)
	for _, s := range stores {
		for range perStore {
			wg.Go(func() {
				ok, _, err := s.TakeLoginAttempt(t.Context(), "ip:192.0.2.9", 1, burst, now)
				if err != nil {
					t.Error(err)
				}
				if ok {
					granted.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if got := granted.Load(); got != burst {
		t.Errorf("granted %d of %d across two stores, want %d", got, 2*perStore, burst)
	}
}

// Buckets idle until full are pruned; the others stay.
func TestLoginLimiterPrunes(t *testing.T) {
	s, err := open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "p.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	t0 := time.Now()
	take := func(key string, at time.Time) {
		t.Helper()
		// 60 a minute, burst 3: full again 3 s after the last take.
		if _, _, err := s.TakeLoginAttempt(t.Context(), key, 60, 3, at); err != nil {
			t.Fatal(err)
		}
	}
	take("old", t0)
	take("recent", t0.Add(pruneEvery+time.Second))
	take("now", t0.Add(pruneEvery+2*time.Second))
	var keys []string
	rows, err := s.db.QueryContext(t.Context(), `SELECT key FROM login_limits ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 2 || keys[0] != "now" || keys[1] != "recent" {
		t.Errorf("buckets after prune = %v, want [now recent]", keys)
	}
}
