package rest

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per client IP. The IP is what Gin's
// ClientIP reports, which honours X-Forwarded-For only from configured
// trusted proxies, so a client cannot pick its own bucket.
type ipLimiter struct {
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

func newIPLimiter(perMinute float64, burst int) *ipLimiter {
	return &ipLimiter{
		rate:    rate.Limit(perMinute / 60),
		burst:   burst,
		buckets: make(map[string]*bucket),
		swept:   time.Now(),
	}
}

// allow takes one token for ip, or reports how long to wait.
func (l *ipLimiter) allow(ip string, now time.Time) (bool, time.Duration) {
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

// limit rejects requests over the per-IP rate with 429 and Retry-After.
func (l *ipLimiter) limit() gin.HandlerFunc {
	return func(c *gin.Context) {
		ok, wait := l.allow(c.ClientIP(), time.Now())
		if !ok {
			c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			abortJSON(c, http.StatusTooManyRequests, "rate_limited", "too many attempts from this address; retry later")
			return
		}
		c.Next()
	}
}
