package storagetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// The LoginLimiter cases run when the store offers the capability; a
// store without it (no LoginLimiter, or ErrNotImplemented from a plugin
// whose backend lacks it) passes them, since the capability is optional.
func limiterCases() []testCase {
	return []testCase{
		{"login limiter: concurrent takers get exactly burst", testLimiterConcurrent},
		{"login limiter: refill, retry after, clock skew", testLimiterRefill},
		{"login limiter: keys are separate buckets", testLimiterKeys},
		{"login limiter: bad arguments", testLimiterInvalid},
	}
}

// limiter returns the store's LoginLimiter, or nil when it has none.
func limiter(t *testing.T, s storage.Store) storage.LoginLimiter {
	t.Helper()
	l, ok := s.(storage.LoginLimiter)
	if !ok {
		t.Log("the store is no storage.LoginLimiter")
		return nil
	}
	_, _, err := l.TakeLoginAttempt(t.Context(), "probe:"+newID(), 1, 1, time.Now())
	if errors.Is(err, sdk.ErrNotImplemented) {
		t.Logf("the store has no login limiter: %v", err)
		return nil
	}
	if err != nil {
		t.Fatalf("probe TakeLoginAttempt: %v", err)
	}
	return l
}

// testLimiterConcurrent: with burst B and no refill (every taker passes
// the same instant), exactly B of many concurrent takes succeed.
func testLimiterConcurrent(t *testing.T, s storage.Store) {
	l := limiter(t, s)
	if l == nil {
		return
	}
	const (
		burst  = 5
		takers = 48
	)
	key := "ip:192.0.2.7"
	now := baseTime()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted int
		errs    []error
	)
	start := make(chan struct{})
	for range takers {
		wg.Go(func() {
			<-start
			ok, wait, err := l.TakeLoginAttempt(t.Context(), key, 6, burst, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case ok:
				granted++
				if wait != 0 {
					errs = append(errs, errors.New("a granted take reported a wait"))
				}
			case wait <= 0:
				errs = append(errs, errors.New("a refused take reported no wait"))
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if granted != burst {
		t.Errorf("%d of %d concurrent takes granted, want exactly the burst %d", granted, takers, burst)
	}
	// Refused takes used nothing: one refill period later, one more.
	if ok, _, err := l.TakeLoginAttempt(t.Context(), key, 6, burst, now.Add(10*time.Second)); err != nil || !ok {
		t.Errorf("take after one refill period = %v, %v; want granted", ok, err)
	}
}

func testLimiterRefill(t *testing.T, s storage.Store) {
	l := limiter(t, s)
	if l == nil {
		return
	}
	key := "ip:2001:db8::1"
	t0 := baseTime()
	take := func(at time.Duration) (bool, time.Duration) {
		t.Helper()
		// 60 a minute: one token a second; burst 2.
		ok, wait, err := l.TakeLoginAttempt(t.Context(), key, 60, 2, t0.Add(at))
		if err != nil {
			t.Fatalf("TakeLoginAttempt at +%v: %v", at, err)
		}
		return ok, wait
	}
	near := func(got, want time.Duration) bool {
		d := got - want
		return d > -time.Millisecond && d < time.Millisecond
	}
	if ok, _ := take(0); !ok {
		t.Fatal("first take of a new key refused; want a full bucket")
	}
	if ok, _ := take(0); !ok {
		t.Fatal("second take refused with burst 2")
	}
	if ok, wait := take(0); ok || !near(wait, time.Second) {
		t.Fatalf("third take = %v, wait %v; want refused, wait 1s", ok, wait)
	}
	if ok, wait := take(250 * time.Millisecond); ok || !near(wait, 750*time.Millisecond) {
		t.Fatalf("take at +250ms = %v, wait %v; want refused, wait 750ms", ok, wait)
	}
	// An earlier clock (another node's, slightly behind) refills nothing
	// and does not move the bucket back.
	if ok, _ := take(-time.Hour); ok {
		t.Fatal("take an hour back granted; want refused")
	}
	if ok, _ := take(time.Second); !ok {
		t.Fatal("take at +1s refused; want one token refilled")
	}
	if ok, _ := take(time.Second); ok {
		t.Fatal("second take at +1s granted; want refused")
	}
	// Idle far longer than a refill of the whole burst: full, not more.
	for i, want := range []bool{true, true, false} {
		if ok, _ := take(time.Hour); ok != want {
			t.Fatalf("take %d after an hour = %v, want %v (capped at burst 2)", i+1, ok, want)
		}
	}
}

func testLimiterKeys(t *testing.T, s storage.Store) {
	l := limiter(t, s)
	if l == nil {
		return
	}
	now := baseTime()
	if ok, _, err := l.TakeLoginAttempt(t.Context(), "ip:192.0.2.1", 1, 1, now); err != nil || !ok {
		t.Fatalf("first key = %v, %v; want granted", ok, err)
	}
	if ok, _, err := l.TakeLoginAttempt(t.Context(), "ip:192.0.2.1", 1, 1, now); err != nil || ok {
		t.Fatalf("first key again = %v, %v; want refused", ok, err)
	}
	if ok, _, err := l.TakeLoginAttempt(t.Context(), "ip:192.0.2.2", 1, 1, now); err != nil || !ok {
		t.Fatalf("second key = %v, %v; want granted (its own bucket)", ok, err)
	}
}

func testLimiterInvalid(t *testing.T, s storage.Store) {
	l := limiter(t, s)
	if l == nil {
		return
	}
	now := baseTime()
	long := make([]byte, 513)
	for i := range long {
		long[i] = 'k'
	}
	for _, tc := range []struct {
		name  string
		key   string
		rate  float64
		burst int
	}{
		{"empty key", "", 1, 1},
		{"key too long", string(long), 1, 1},
		{"zero rate", "k", 0, 1},
		{"negative rate", "k", -1, 1},
		{"zero burst", "k", 1, 0},
	} {
		t.Run("case="+tc.name, func(t *testing.T) {
			_, _, err := l.TakeLoginAttempt(t.Context(), tc.key, tc.rate, tc.burst, now)
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("err = %v, want ErrInvalidArgument", err)
			}
		})
	}
	// Nothing was stored: "k" still has a full bucket.
	if ok, _, err := l.TakeLoginAttempt(t.Context(), "k", 1, 1, now); err != nil || !ok {
		t.Errorf("take after refused calls = %v, %v; want granted", ok, err)
	}
}
