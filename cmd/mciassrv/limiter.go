package main

import (
	"github.com/metacircular/mcias/api/frontend"
	"github.com/metacircular/mcias/sdk/storage"
)

// loginLimiter is the one password-attempt limiter of both transports: a
// client gets one budget per IP whichever API it uses. On a store that
// several nodes share (it offers the change feed, as PostgreSQL does) and
// that keeps buckets (storage.LoginLimiter), every node shares that
// budget. Otherwise (SQLite: one node) it lives in this process, which
// spares every password attempt a write transaction.
func loginLimiter(cfg LoginConfig, store storage.Store) *frontend.Limiter {
	if _, multiNode := store.(storage.ChangeFeed); multiNode {
		if shared, ok := store.(storage.LoginLimiter); ok {
			return frontend.NewSharedLimiter(cfg.RatePerMinute, cfg.Burst, shared)
		}
	}
	return frontend.NewLimiter(cfg.RatePerMinute, cfg.Burst)
}
