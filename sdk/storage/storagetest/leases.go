package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// The Leaser cases run when the store offers the capability; a store
// without it passes them, since the capability is optional. A backend
// that means to offer leases asserts storage.Leaser in its own test.
//
// The waits below only ever make a lease older than its ttl, so a slow
// machine cannot make them fail.
func leaseCases() []testCase {
	return []testCase{
		{"leases: acquire, contend, renew, release", testLeaseBasics},
		{"leases: expire after ttl, renewal extends", testLeaseExpiry},
		{"leases: concurrent acquirers, one wins", testLeaseConcurrent},
		{"leases: bad arguments", testLeaseInvalid},
	}
}

// leaser returns the store's Leaser, or nil when it has none.
func leaser(t *testing.T, s storage.Store) storage.Leaser {
	t.Helper()
	l, ok := s.(storage.Leaser)
	if !ok {
		t.Log("the store is no storage.Leaser")
		return nil
	}
	return l
}

func acquire(t *testing.T, l storage.Leaser, name, holder string, ttl time.Duration) bool {
	t.Helper()
	ok, err := l.AcquireLease(t.Context(), name, holder, ttl)
	wantOK(t, fmt.Sprintf("AcquireLease(%s, %s)", name, holder), err)
	return ok
}

func testLeaseBasics(t *testing.T, s storage.Store) {
	l := leaser(t, s)
	if l == nil {
		return
	}
	ctx := t.Context()
	if !acquire(t, l, "rotate", "node-a", time.Hour) {
		t.Fatal("node-a could not take a free lease")
	}
	if acquire(t, l, "rotate", "node-b", time.Hour) {
		t.Fatal("node-b took a lease node-a holds")
	}
	if !acquire(t, l, "rotate", "node-a", time.Hour) {
		t.Fatal("node-a could not renew its own lease")
	}
	if !acquire(t, l, "deliver:file", "node-b", time.Hour) {
		t.Fatal("node-b could not take another, free lease: leases are per name")
	}
	// A release by a non-holder does nothing.
	wantOK(t, "ReleaseLease(non-holder)", l.ReleaseLease(ctx, "rotate", "node-b"))
	if acquire(t, l, "rotate", "node-b", time.Hour) {
		t.Fatal("a release by node-b freed node-a's lease")
	}
	wantOK(t, "ReleaseLease(never held)", l.ReleaseLease(ctx, "nobody-holds-this", "node-a"))
	wantOK(t, "ReleaseLease(holder)", l.ReleaseLease(ctx, "rotate", "node-a"))
	if !acquire(t, l, "rotate", "node-b", time.Hour) {
		t.Fatal("node-b could not take the lease node-a released")
	}
	if acquire(t, l, "rotate", "node-a", time.Hour) {
		t.Fatal("node-a took back a lease node-b now holds")
	}
	wantOK(t, "ReleaseLease(released twice)", l.ReleaseLease(ctx, "rotate", "node-a"))
	if acquire(t, l, "deliver:file", "node-a", time.Hour) {
		t.Fatal("node-a took deliver:file, which node-b holds")
	}
}

func testLeaseExpiry(t *testing.T, s storage.Store) {
	l := leaser(t, s)
	if l == nil {
		return
	}
	const short = 50 * time.Millisecond
	if !acquire(t, l, "checkpoint", "node-a", short) {
		t.Fatal("node-a could not take a free lease")
	}
	time.Sleep(3 * short)
	if !acquire(t, l, "checkpoint", "node-b", time.Hour) {
		t.Fatal("node-b could not take a lease expired after its ttl")
	}

	// A renewal sets the expiry from now by the new ttl: renewing a short
	// lease for an hour keeps others out past the short ttl.
	if !acquire(t, l, "rotate", "node-a", short) {
		t.Fatal("node-a could not take a free lease")
	}
	if !acquire(t, l, "rotate", "node-a", time.Hour) {
		t.Fatal("node-a could not renew its lease")
	}
	time.Sleep(3 * short)
	if acquire(t, l, "rotate", "node-b", time.Hour) {
		t.Fatal("node-b took a lease node-a renewed for an hour")
	}
	// And renewing for a short ttl lets it lapse soon.
	if !acquire(t, l, "rotate", "node-a", short) {
		t.Fatal("node-a could not renew its lease")
	}
	time.Sleep(3 * short)
	if !acquire(t, l, "rotate", "node-b", time.Hour) {
		t.Fatal("node-b could not take a lease whose renewal expired")
	}
}

func testLeaseConcurrent(t *testing.T, s storage.Store) {
	l := leaser(t, s)
	if l == nil {
		return
	}
	for round := range 3 {
		name := fmt.Sprintf("race-%d", round)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			won  []string
			errs []error
		)
		for w := range writers {
			holder := fmt.Sprintf("node-%d", w)
			wg.Go(func() {
				ok, err := l.AcquireLease(t.Context(), name, holder, time.Hour)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					won = append(won, holder)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("AcquireLease: %v", err)
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d holders took one lease (%v), want exactly 1", round, len(won), won)
		}
	}
}

func testLeaseInvalid(t *testing.T, s storage.Store) {
	l := leaser(t, s)
	if l == nil {
		return
	}
	ctx := t.Context()
	tooLong := strings.Repeat("n", storage.MaxNameLen+1)
	for _, c := range []struct {
		what, name, holder string
		ttl                time.Duration
	}{
		{"empty name", "", "node-a", time.Minute},
		{"empty holder", "rotate", "", time.Minute},
		{"long name", tooLong, "node-a", time.Minute},
		{"long holder", "rotate", tooLong, time.Minute},
		{"zero ttl", "rotate", "node-a", 0},
		{"negative ttl", "rotate", "node-a", -time.Second},
	} {
		ok, err := l.AcquireLease(ctx, c.name, c.holder, c.ttl)
		wantKind(t, "AcquireLease("+c.what+")", err, sdk.ErrInvalidArgument)
		if ok {
			t.Errorf("AcquireLease(%s) reported the lease taken", c.what)
		}
		if c.ttl > 0 {
			wantKind(t, "ReleaseLease("+c.what+")", l.ReleaseLease(ctx, c.name, c.holder), sdk.ErrInvalidArgument)
		}
	}
	// Nothing was taken.
	if !acquire(t, l, "rotate", "node-b", time.Minute) {
		t.Fatal("a refused acquire left the lease taken")
	}
}
