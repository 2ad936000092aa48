package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// The optional login limiter crosses the wire as one unary RPC per take.

var _ storage.LoginLimiter = (*storageClient)(nil)

// TakeLoginAttempt implements storage.LoginLimiter on the plugin side.
func (s *storageServer) TakeLoginAttempt(ctx context.Context, req *storagev1.TakeLoginAttemptRequest) (*storagev1.TakeLoginAttemptResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	l, ok := st.(storage.LoginLimiter)
	if !ok {
		return nil, toStatus(fmt.Errorf("take login attempt: %w: the backend has no login limiter", sdk.ErrNotImplemented))
	}
	allowed, wait, err := l.TakeLoginAttempt(ctx, req.GetKey(), req.GetRatePerMinute(), int(req.GetBurst()), timeFromPB(req.GetNow()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.TakeLoginAttemptResponse{Allowed: allowed, RetryAfterNanos: int64(wait)}, nil
}

// TakeLoginAttempt implements storage.LoginLimiter on the host side; a
// plugin whose backend has no limiter, or one built before the RPC
// existed, answers sdk.ErrNotImplemented.
func (s *storageClient) TakeLoginAttempt(ctx context.Context, key string, ratePerMinute float64, burst int, now time.Time) (bool, time.Duration, error) {
	resp, err := s.c.TakeLoginAttempt(ctx, &storagev1.TakeLoginAttemptRequest{
		Key: key, RatePerMinute: ratePerMinute, Burst: int64(burst), Now: timeToPB(now),
	})
	if err != nil {
		return false, 0, fromStatus("storage plugin: take login attempt", err)
	}
	return resp.GetAllowed(), time.Duration(resp.GetRetryAfterNanos()), nil
}
