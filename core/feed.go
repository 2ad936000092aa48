package core

import (
	"context"
	"errors"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// followChanges keeps the caches current with changes other processes
// commit, as fast as the store's change feed tells of them (several
// nodes on one database). It complements the refreshLoop's poll, which
// remains the safety net. A store without a feed makes it return at once.
func (s *Service) followChanges(ctx context.Context, feed storage.ChangeFeed) {
	defer s.wg.Done()
	ch, err := feed.WatchChanges(ctx)
	if errors.Is(err, sdk.ErrNotImplemented) {
		return
	}
	if err != nil {
		s.log.Warn("core: change feed unavailable; following changes by polling only", "err", err)
		return
	}
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
