package frontend

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a token bucket per client IP for the calls that check a
// password. One Limiter serves both transports, so a client gets the
// same budget whichever it uses, not one per transport.
//
// At most max buckets are kept, in least-recently-used order: a new IP
// beyond the cap evicts the bucket that has been idle longest. Evicting
// fails open for that one address (its next attempt starts a full
// bucket), which only matters to an attacker who keeps more than max
// addresses busy at once and so is already not slowed by a per-IP limit;
// refusing new addresses when full would instead let such an attacker
// lock every other client out of login (ARCHITECTURE.md).
type Limiter struct {
	rate  rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[string]*list.Element // value: *bucket
	lru     list.List                // front: most recently used
}

type bucket struct {
	ip   string
	lim  *rate.Limiter
	seen time.Time
}

// idleAfter is how long a bucket lives unused; by then it has refilled,
// so dropping it forgets nothing.
const idleAfter = 10 * time.Minute

// maxBuckets bounds the limiter's memory (a bucket is about 200 bytes, so
// some 13 MiB at the cap) whatever the number of source addresses.
const maxBuckets = 65536

// NewLimiter allows perMinute calls per IP on average, burst at once.
func NewLimiter(perMinute float64, burst int) *Limiter {
	return newLimiter(perMinute, burst, maxBuckets)
}

func newLimiter(perMinute float64, burst, max int) *Limiter {
	return &Limiter{
		rate:    rate.Limit(perMinute / 60),
		burst:   burst,
		max:     max,
		buckets: make(map[string]*list.Element),
	}
}

// Allow takes one token for ip, or reports how long to wait.
func (l *Limiter) Allow(ip string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The idle buckets are all at the back: drop them, oldest first.
	for e := l.lru.Back(); e != nil && now.Sub(e.Value.(*bucket).seen) > idleAfter; e = l.lru.Back() {
		l.drop(e)
	}
	var b *bucket
	if e, ok := l.buckets[ip]; ok {
		b = e.Value.(*bucket)
		l.lru.MoveToFront(e)
	} else {
		if l.lru.Len() >= l.max {
			l.drop(l.lru.Back())
		}
		b = &bucket{ip: ip, lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[ip] = l.lru.PushFront(b)
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, idleAfter
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *Limiter) drop(e *list.Element) {
	delete(l.buckets, l.lru.Remove(e).(*bucket).ip)
}
