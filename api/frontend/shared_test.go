package frontend

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

func openShared(t *testing.T, path string) storage.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), "sqlite://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.WithoutCancel(t.Context())) })
	return s
}

// Two limiters on two stores over one database (two nodes) draw on one
// bucket per client: together they allow the burst once.
func TestSharedLimiterAcrossNodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	const burst = 4
	var nodes []*Limiter
	for range 2 {
		nodes = append(nodes, NewSharedLimiter(60, burst, openShared(t, path).(storage.LoginLimiter)))
	}
	now := time.Now()
	var (
		wg      sync.WaitGroup
		granted atomic.Int32
	)
	for i := range 20 {
		wg.Go(func() {
			// One client, written two ways: one bucket.
			ip := "192.0.2.5"
			if i%2 == 0 {
				ip = "::ffff:192.0.2.5"
			}
			ok, wait, err := nodes[i%2].Allow(t.Context(), ip, now)
			switch {
			case err != nil:
				t.Error(err)
			case ok:
				granted.Add(1)
			case wait <= 0 || wait > time.Second:
				t.Errorf("refused with wait %v, want (0, 1s]", wait)
			}
		})
	}
	wg.Wait()
	if got := granted.Load(); got != burst {
		t.Errorf("granted %d across two nodes, want the burst %d", got, burst)
	}
	if ok, _, err := nodes[0].Allow(t.Context(), "192.0.2.6", now); err != nil || !ok {
		t.Errorf("another client = %v, %v; want its own full bucket", ok, err)
	}
}

// A store that cannot answer refuses the attempt: fail closed.
func TestSharedLimiterFailsClosed(t *testing.T) {
	s := openShared(t, filepath.Join(t.TempDir(), "closed.db"))
	l := NewSharedLimiter(60, 10, s.(storage.LoginLimiter))
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ok, _, err := l.Allow(t.Context(), "192.0.2.1", time.Now())
	if ok || !errors.Is(err, ErrLimiterUnavailable) || !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Allow on a closed store = %v, %v; want refused with ErrLimiterUnavailable", ok, err)
	}
	if row, _ := Classify(err); row.HTTP != LimiterUnavailableRow.HTTP {
		t.Errorf("the error classifies as %d, want %d", row.HTTP, LimiterUnavailableRow.HTTP)
	}
}

// noSharedBuckets answers like a plugin whose backend has no limiter (or
// one built before the RPC existed), which no builtin backend is.
type noSharedBuckets struct{}

func (noSharedBuckets) TakeLoginAttempt(context.Context, string, float64, int, time.Time) (bool, time.Duration, error) {
	return false, 0, sdk.ErrNotImplemented
}

// A store without the capability falls back to the buckets in memory.
func TestSharedLimiterFallsBackToMemory(t *testing.T) {
	l := NewSharedLimiter(60, 1, noSharedBuckets{})
	now := time.Now()
	if ok, _, err := l.Allow(t.Context(), "192.0.2.1", now); err != nil || !ok {
		t.Fatalf("first = %v, %v; want allowed from memory", ok, err)
	}
	if ok, wait, err := l.Allow(t.Context(), "192.0.2.1", now); err != nil || ok || wait <= 0 {
		t.Fatalf("second = %v, %v, %v; want refused from memory", ok, wait, err)
	}
}
