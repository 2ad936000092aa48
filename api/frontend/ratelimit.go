package frontend

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// Limiter is a token bucket per client IP for the calls that check a
// password. One Limiter serves both transports, so a client gets the
// same budget whichever it uses, not one per transport.
//
// When the store offers storage.LoginLimiter (NewSharedLimiter), the
// buckets live in the database and every node on it draws on the same
// ones, so N nodes allow a client the configured rate once, not N times.
// A store that cannot answer then refuses the attempt (fail closed: the
// caller answers 503), since guessing "allowed" would lift the limit
// exactly while the database is in trouble. A store without the
// capability (sdk.ErrNotImplemented, a plugin whose backend lacks it)
// falls back to the buckets in memory below.
//
// At most max buckets are kept, in least-recently-used order: a new IP
// beyond the cap evicts the bucket that has been idle longest. Evicting
// fails open for that one address (its next attempt starts a full
// bucket), which only matters to an attacker who keeps more than max
// addresses busy at once and so is already not slowed by a per-IP limit;
// refusing new addresses when full would instead let such an attacker
// lock every other client out of login (ARCHITECTURE.md).
type Limiter struct {
	perMinute float64
	rate      rate.Limit
	burst     int
	max       int
	shared    storage.LoginLimiter // nil: memory only

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

// NewSharedLimiter is NewLimiter whose buckets are kept by shared, the
// store's LoginLimiter, so that every node on the store shares them.
func NewSharedLimiter(perMinute float64, burst int, shared storage.LoginLimiter) *Limiter {
	l := newLimiter(perMinute, burst, maxBuckets)
	l.shared = shared
	return l
}

func newLimiter(perMinute float64, burst, max int) *Limiter {
	return &Limiter{
		perMinute: perMinute,
		rate:      rate.Limit(perMinute / 60),
		burst:     burst,
		max:       max,
		buckets:   make(map[string]*list.Element),
	}
}

// sharedTimeout bounds one take from the shared buckets, so a database
// that does not answer costs a login a bounded wait and then a 503.
const sharedTimeout = 5 * time.Second

// ErrLimiterUnavailable wraps the error of a shared limiter that cannot
// answer; the attempt is refused with 503 (LimiterUnavailableRow).
var ErrLimiterUnavailable = errors.New("login limiter unavailable")

// Allow takes one token for ip, or reports how long to wait. An error
// (wrapping ErrLimiterUnavailable) means the shared buckets could not be
// read: the attempt must be refused.
func (l *Limiter) Allow(ctx context.Context, ip string, now time.Time) (bool, time.Duration, error) {
	key := Key(ip)
	if l.shared != nil {
		ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		defer cancel()
		ok, wait, err := l.shared.TakeLoginAttempt(ctx, key, l.perMinute, l.burst, now)
		if !errors.Is(err, sdk.ErrNotImplemented) {
			if err != nil {
				return false, 0, fmt.Errorf("%w: %w", ErrLimiterUnavailable, err)
			}
			return ok, wait, nil
		}
	}
	ok, wait := l.allowMemory(key, now)
	return ok, wait, nil
}

// Key is the canonical bucket name of a client IP: "ip:" and the IP in
// its shortest form (an IPv4-mapped IPv6 address as IPv4), so one client
// has one bucket however its address was written. What is not an IP is
// kept as it is.
func Key(ip string) string {
	if p := net.ParseIP(ip); p != nil {
		return "ip:" + p.String()
	}
	return "ip:" + ip
}

// allowMemory takes one token for key from the buckets in memory.
func (l *Limiter) allowMemory(ip string, now time.Time) (bool, time.Duration) {
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
