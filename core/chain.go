package core

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
)

// The audit chain as a verifier reads it (sdk/audit.Verifier): the
// events in storage order with their hashes, and every key that can have
// signed a checkpoint.

// ReadChain returns up to limit events (0 means 100, at most 500) with
// Seq > afterSeq, oldest first, with PrevHash and Hash as stored. Admin
// only.
func (s *Service) ReadChain(ctx context.Context, c Caller, afterSeq int64, limit int) ([]audit.Event, error) {
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	if afterSeq < 0 {
		return nil, invalid("after_seq must not be negative")
	}
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, err
	}
	evs, err := s.store.Audit().ReadEvents(ctx, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("core: read audit chain: %w", err)
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	return evs, nil
}

// ListKeys returns every signing key the custodian knows, read from it
// now: next, active, retiring and, when the custodian keeps them
// (custody.KeyHistory), retired keys, so that checkpoints signed before
// a rotation still verify. Active first, then next, retiring, retired,
// newest first within a state. Admin only.
func (s *Service) ListKeys(ctx context.Context, c Caller) ([]custody.PublicKey, error) {
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	var keys []custody.PublicKey
	err := sdk.ErrNotImplemented
	if h, ok := s.cust.(custody.KeyHistory); ok {
		// Behind the plugin wire the capability is always offered; a
		// custodian without it answers ErrNotImplemented.
		keys, err = h.AllPublicKeys(ctx)
	}
	if errors.Is(err, sdk.ErrNotImplemented) {
		keys, err = s.cust.PublicKeys(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("core: list keys: %w", err)
	}
	slices.SortStableFunc(keys, func(a, b custody.PublicKey) int {
		if d := stateRank(a.State) - stateRank(b.State); d != 0 {
			return d
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	return keys, nil
}
