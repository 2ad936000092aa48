package postgres

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

var _ storage.LoginLimiter = (*Store)(nil)

// pruneEvery is how often one Store deletes the buckets that are full
// again; a pruned bucket and a missing one mean the same.
const pruneEvery = time.Minute

// takeAttempt is one atomic read-modify-write of a bucket: INSERT ... ON
// CONFLICT DO UPDATE locks the row (or inserts a full bucket less one
// token), and under READ COMMITTED a conflicting taker waits for the lock
// and then computes from the committed row, so concurrent takers on every
// node are serialised per key without the store's global write lock.
// $1 key, $2 now (unix ns), $3 burst, $4 refill per nanosecond. The SET
// expressions all see the old row.
const takeAttempt = `
INSERT INTO login_limits AS l (key, tokens, updated_ns, granted)
VALUES ($1, $3::float8 - 1, $2, true)
ON CONFLICT (key) DO UPDATE SET
    tokens = CASE
        WHEN LEAST($3::float8, l.tokens + GREATEST(0, $2 - l.updated_ns) * $4::float8) >= 1
        THEN LEAST($3::float8, l.tokens + GREATEST(0, $2 - l.updated_ns) * $4::float8) - 1
        ELSE LEAST($3::float8, l.tokens + GREATEST(0, $2 - l.updated_ns) * $4::float8)
    END,
    updated_ns = GREATEST(l.updated_ns, $2),
    granted = LEAST($3::float8, l.tokens + GREATEST(0, $2 - l.updated_ns) * $4::float8) >= 1
RETURNING granted, tokens`

// TakeLoginAttempt implements storage.LoginLimiter with one statement.
func (s *Store) TakeLoginAttempt(ctx context.Context, key string, ratePerMinute float64, burst int, now time.Time) (bool, time.Duration, error) {
	const op = "take login attempt"
	perNano, err := bucketRate(key, ratePerMinute, burst)
	if err != nil {
		return false, 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if err := s.read(op); err != nil {
		return false, 0, err
	}
	ns := now.UnixNano()
	if due(&s.nextPrune, ns) {
		// Idle for burst/rate, a bucket is full again.
		full := int64(math.Ceil(float64(burst) / perNano))
		if _, err := s.pool.Exec(ctx, `DELETE FROM login_limits WHERE updated_ns < $1`, ns-full); err != nil {
			return false, 0, fmt.Errorf("postgres: %s: prune: %w", op, classify(err))
		}
	}
	var (
		granted bool
		tokens  float64
	)
	if err := s.pool.QueryRow(ctx, takeAttempt, key, ns, burst, perNano).Scan(&granted, &tokens); err != nil {
		return false, 0, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	if granted {
		return true, 0, nil
	}
	return false, time.Duration(math.Ceil((1 - tokens) / perNano)), nil
}

// bucketRate checks the arguments of a take and returns the refill rate
// in tokens per nanosecond.
func bucketRate(key string, ratePerMinute float64, burst int) (float64, error) {
	switch {
	case key == "":
		return 0, fmt.Errorf("%w: empty key", sdk.ErrInvalidArgument)
	case len(key) > 512:
		return 0, fmt.Errorf("%w: key longer than 512 bytes", sdk.ErrInvalidArgument)
	case !(ratePerMinute > 0) || math.IsInf(ratePerMinute, 0):
		return 0, fmt.Errorf("%w: rate %v per minute is not above zero", sdk.ErrInvalidArgument, ratePerMinute)
	case burst < 1:
		return 0, fmt.Errorf("%w: burst %d is below one", sdk.ErrInvalidArgument, burst)
	}
	return ratePerMinute / float64(time.Minute), nil
}

// due reports whether this caller should prune now, moving the next
// prune a period on; of concurrent callers, one wins.
func due(next *atomic.Int64, now int64) bool {
	n := next.Load()
	return now >= n && next.CompareAndSwap(n, now+int64(pruneEvery))
}
