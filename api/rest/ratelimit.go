package rest

import (
	"container/list"
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
//
// At most max buckets are kept, in least-recently-used order: a new IP
// beyond the cap evicts the bucket that has been idle longest. Evicting
// fails open for that one address (its next attempt starts a full
// bucket), which only matters to an attacker who keeps more than max
// addresses busy at once and so is already not slowed by a per-IP limit;
// refusing new addresses when full would instead let such an attacker
// lock every other client out of login (ARCHITECTURE.md).
type ipLimiter struct {
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

func newIPLimiter(perMinute float64, burst, max int) *ipLimiter {
	return &ipLimiter{
		rate:    rate.Limit(perMinute / 60),
		burst:   burst,
		max:     max,
		buckets: make(map[string]*list.Element),
	}
}

// allow takes one token for ip, or reports how long to wait.
func (l *ipLimiter) allow(ip string, now time.Time) (bool, time.Duration) {
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

func (l *ipLimiter) drop(e *list.Element) {
	delete(l.buckets, l.lru.Remove(e).(*bucket).ip)
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
