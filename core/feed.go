package core

import (
	"context"
	"errors"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// Retry backoff of a change feed that ended or could not start.
const (
	feedRetryMin = 100 * time.Millisecond
	feedRetryMax = 5 * time.Second
)

// followChanges keeps the caches current with changes other processes
// commit, as fast as the store's change feed tells of them (several
// nodes on one database). It complements the refreshLoop's poll, which
// remains the safety net. A store without a feed makes it return at once.
func (s *Service) followChanges(ctx context.Context, feed storage.ChangeFeed) {
	defer s.wg.Done()
	backoff := feedRetryMin
	for {
		ch, err := feed.WatchChanges(ctx)
		switch {
		case errors.Is(err, sdk.ErrNotImplemented):
			return
		case err != nil:
			s.log.Warn("core: change feed unavailable; retrying", "err", err, "retry_in", backoff)
		default:
			backoff = feedRetryMin
			s.drainChanges(ctx, ch)
		}
		// The watch ended (a plugin restarted) or could not start.
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedRetryMax)
	}
}

// drainChanges applies the notifications of one watch until it ends.
func (s *Service) drainChanges(ctx context.Context, ch <-chan storage.Change) {
	for c := range ch {
		// Take whatever else is already queued: one round of reads
		// answers a burst of notifications.
		accounts := map[string]bool{}
		resync := false
		for more := true; more; {
			if c.AccountID == "" {
				resync = true
			} else {
				accounts[c.AccountID] = true
			}
			select {
			case c, more = <-ch:
			default:
				more = false
			}
		}
		if err := s.applyChanges(ctx, accounts, resync); err != nil {
			s.log.Warn("core: follow change feed", "err", err)
		}
	}
}

// applyChanges re-reads the named accounts (when cached) and their revoked
// tokens, and on resync the whole revocation feed.
func (s *Service) applyChanges(ctx context.Context, accounts map[string]bool, resync bool) error {
	var errs []error
	if resync {
		errs = append(errs, s.followRevocations(ctx))
	}
	now := s.now()
	for id := range accounts {
		revoked, err := s.store.Tokens().ListTokens(ctx, storage.TokenFilter{
			AccountID: id, RevokedOnly: true, ExpiresAfter: now,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range revoked {
			s.tokens.merge(t)
		}
		if !s.accounts.has(id) {
			continue
		}
		a, err := s.store.Accounts().GetAccount(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.accounts.put(a)
	}
	return errors.Join(errs...)
}
