package frontend

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a token bucket per client IP for the calls that check a
// password. One Limiter serves both transports, so a client gets the
// same budget whichever it uses, not one per transport.
type Limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// idleAfter is how long a bucket lives unused; by then it has refilled,
// so dropping it forgets nothing.
const idleAfter = 10 * time.Minute

// NewLimiter allows perMinute calls per IP on average, burst at once.
func NewLimiter(perMinute float64, burst int) *Limiter {
	return &Limiter{
		rate:    rate.Limit(perMinute / 60),
		burst:   burst,
		buckets: make(map[string]*bucket),
		swept:   time.Now(),
	}
}

// Allow takes one token for ip, or reports how long to wait.
func (l *Limiter) Allow(ip string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > idleAfter {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[ip]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[ip] = b
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
