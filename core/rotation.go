package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// Key rotation. The custodian keeps each key's state (custody.Rotator);
// the core decides when a key moves, from three durations:
//
//   - PublishAhead: a next key is published (in the JWKS) at least this
//     long before it signs, so verifiers that cache the key set have it
//     by the time they see a token it signed.
//   - RetireAfter: a retiring key stays published at least this long
//     after it stopped signing. It must cover the longest token it can
//     have signed (the longer of the session TTL and the service-token
//     cap) plus the leeway; a shorter value is refused at config load.
//   - RotateEvery: the schedule (0: rotation only on demand).
//
// An emergency rotation (a compromised key) activates a new key at once,
// retires the old one at once (verifiers stop accepting it as soon as
// they re-read the key set; this server at once) and revokes every
// unexpired token it signed.
//
// Several nodes on one database must not rotate on their own schedules:
// the schedule runs only on the node holding the storage lease
// "key-rotation" (lease.go) when the store offers storage.Leaser, so every
// node can carry the same rotate_every. On-demand rotation (RotateKeys) is
// an admin's act and runs on whichever node receives it.

// rotation reasons recorded on revoked tokens and in key_rotation events.
const (
	reasonKeyCompromised = "key_compromised"
)

// DefaultPublishAhead is the default lead of a next key: two refresh
// intervals of the key cache, so every MCIAS node has it before it signs.
const DefaultPublishAhead = 2 * time.Minute

// rotationState serialises rotation steps in this process.
type rotationState struct {
	mu sync.Mutex
}

// longestTokenLife is how long a token this configuration issues can be
// valid: the longer of the session TTL and the service-token cap, plus
// the leeway verifiers allow on exp.
func (c *Config) longestTokenLife() time.Duration {
	return max(c.TokenTTL, c.MaxServiceTokenTTL) + c.Leeway
}

// rotationDefaults fills and checks the rotation settings; called by
// applyDefaults after the token lifetimes are final.
func (c *Config) rotationDefaults() error {
	if c.PublishAhead == 0 {
		c.PublishAhead = DefaultPublishAhead
	}
	longest := c.longestTokenLife()
	if c.RetireAfter == 0 {
		c.RetireAfter = longest
	}
	switch {
	case c.PublishAhead < 0:
		return fmt.Errorf("core: config: keys publish_ahead %s must not be negative", c.PublishAhead)
	case c.RetireAfter < longest:
		return fmt.Errorf("core: config: keys retire_after %s would drop a key before the tokens it signed expire: "+
			"it must be at least the longest token lifetime (max of ttl and max_service_ttl) plus leeway, %s", c.RetireAfter, longest)
	case c.RotateEvery < 0:
		return fmt.Errorf("core: config: keys rotate_every %s must not be negative", c.RotateEvery)
	case c.RotateEvery > 0 && c.RotateEvery <= c.PublishAhead:
		return fmt.Errorf("core: config: keys rotate_every %s must be longer than publish_ahead %s", c.RotateEvery, c.PublishAhead)
	}
	return nil
}

// rotator returns the custodian's rotation capability, or a client-safe
// error when it has none.
func (s *Service) rotator(ctx context.Context) (custody.Rotator, error) {
	r, ok := s.cust.(custody.Rotator)
	if !ok {
		return nil, newError(sdk.ErrNotImplemented, "the key custodian does not rotate keys")
	}
	info, err := s.cust.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("core: rotate: custodian info: %w", err)
	}
	if !info.Rotation {
		return nil, newError(sdk.ErrNotImplemented, "the key custodian does not rotate keys")
	}
	return r, nil
}

// since is when k entered its state (CreatedAt for custodians that do not
// say).
func since(k custody.PublicKey) time.Time {
	if k.StateSince.IsZero() {
		return k.CreatedAt
	}
	return k.StateSince
}

// rotationTick is how often the schedule is checked.
func (c *Config) rotationTick() time.Duration {
	return min(max(c.PublishAhead/4, time.Second), refreshInterval)
}

// rotationLoop runs the schedule (while this process holds the rotation
// lease): it activates a next key once it has
// been published long enough, retires retiring keys whose tokens are all
// expired, and creates the next key when a scheduled rotation is due.
func (s *Service) rotationLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.rotationTick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.RotationStep(ctx); err != nil && !errors.Is(err, sdk.ErrNotImplemented) {
			s.log.Warn("core: key rotation step", "err", err)
		}
	}
}

// RotationStep moves keys along the schedule once. The background loop
// calls it; tests call it with a fake clock.
func (s *Service) RotationStep(ctx context.Context) error {
	r, err := s.rotator(ctx)
	if err != nil {
		return err
	}
	s.rot.mu.Lock()
	defer s.rot.mu.Unlock()
	keys, err := s.cust.PublicKeys(ctx)
	if err != nil {
		return fmt.Errorf("core: rotate: %w", err)
	}
	now := s.now()
	changed := false
	defer func() {
		if changed {
			if err := s.refreshKeys(ctx); err != nil {
				s.log.Warn("core: refresh keys after rotation", "err", err)
			}
		}
	}()
	var next, active *custody.PublicKey
	for i, k := range keys {
		switch k.State {
		case custody.StateNext:
			next = &keys[i]
		case custody.StateActive:
			active = &keys[i]
		case custody.StateRetiring:
			if now.Before(since(k).Add(s.cfg.RetireAfter)) {
				continue
			}
			if err := r.RetireKey(ctx, k.KID, now); err != nil {
				return fmt.Errorf("core: rotate: retire %s: %w", k.KID, err)
			}
			changed = true
			s.rotationEvent(ctx, Caller{}, "retire", k.KID, map[string]string{"retiring_since": since(k).UTC().Format(time.RFC3339)})
		}
	}
	switch {
	case next != nil && !now.Before(since(*next).Add(s.cfg.PublishAhead)):
		if err := r.ActivateKey(ctx, next.KID, now); err != nil {
			return fmt.Errorf("core: rotate: activate %s: %w", next.KID, err)
		}
		changed = true
		d := map[string]string{}
		if active != nil {
			d["previous_kid"] = active.KID
		}
		s.rotationEvent(ctx, Caller{}, "activate", next.KID, d)
	case next == nil && active != nil && s.cfg.RotateEvery > 0 && !now.Before(since(*active).Add(s.cfg.RotateEvery-s.cfg.PublishAhead)):
		k, err := r.CreateNextKey(ctx, now)
		if err != nil {
			return fmt.Errorf("core: rotate: create next key: %w", err)
		}
		changed = true
		s.rotationEvent(ctx, Caller{}, "create_next", k.KID, map[string]string{"scheduled": "true"})
	}
	return nil
}

// rotationEventTimeout bounds the store of a key_rotation event.
const rotationEventTimeout = 10 * time.Second

// rotationEvent records a key_rotation event. Storage being down must
// not undo a rotation that the custodian already made durable, so a
// failure is logged, not returned.
func (s *Service) rotationEvent(ctx context.Context, c Caller, action, kid string, d map[string]string) {
	d = withDetail(d, "action", action)
	d["kid"] = kid
	s.log.Info("core: key rotation", "action", action, "kid", kid)
	// Not cut short by a shutdown that began after the custodian acted.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rotationEventTimeout)
	defer cancel()
	if err := s.appendEvent(ctx, s.event(c, audit.KeyRotation, "", audit.Success, d)); err != nil {
		s.log.Error("core: key rotation: audit event not stored", "action", action, "kid", kid, "err", err)
	}
}

// RotationResult is what an on-demand rotation did.
type RotationResult struct {
	// Keys are the published keys after it, active first.
	Keys []custody.PublicKey
	// ActivatesAt is when the next key starts signing (normal rotation).
	ActivatesAt time.Time
	// Revoked counts the tokens an emergency rotation revoked.
	Revoked int
}

// RotateKeys rotates on demand (admin only). A normal rotation publishes
// a next key now; it starts signing after PublishAhead. With a next key
// already published it changes nothing and says when that key activates.
// An emergency rotation replaces the active key at once: the next key
// (made now if there is none) signs from now on, the old key is retired
// and unpublished, and every unexpired token it signed is revoked.
func (s *Service) RotateKeys(ctx context.Context, c Caller, emergency bool) (RotationResult, error) {
	if err := requireAdmin(c); err != nil {
		return RotationResult{}, err
	}
	r, err := s.rotator(ctx)
	if err != nil {
		return RotationResult{}, err
	}
	s.rot.mu.Lock()
	keys, err := s.cust.PublicKeys(ctx)
	if err != nil {
		s.rot.mu.Unlock()
		return RotationResult{}, fmt.Errorf("core: rotate: %w", err)
	}
	var next, active *custody.PublicKey
	for i, k := range keys {
		switch k.State {
		case custody.StateNext:
			next = &keys[i]
		case custody.StateActive:
			active = &keys[i]
		}
	}
	if active == nil {
		s.rot.mu.Unlock()
		return RotationResult{}, fmt.Errorf("core: rotate: the custodian lists no active key: %w", sdk.ErrInternal)
	}
	if next == nil {
		k, err := r.CreateNextKey(ctx, s.now())
		if err != nil {
			s.rot.mu.Unlock()
			return RotationResult{}, fmt.Errorf("core: rotate: create next key: %w", err)
		}
		next = &k
		s.rotationEvent(ctx, c, "create_next", k.KID, map[string]string{"emergency": strconv.FormatBool(emergency)})
	}
	res := RotationResult{}
	if !emergency {
		res.ActivatesAt = since(*next).Add(s.cfg.PublishAhead)
		s.rot.mu.Unlock()
		if err := s.refreshKeys(ctx); err != nil {
			return RotationResult{}, fmt.Errorf("core: rotate: %w", err)
		}
		res.Keys, err = s.PublicKeys(ctx)
		return res, err
	}
	compromised := active.KID
	err = r.ActivateKey(ctx, next.KID, s.now())
	if err == nil {
		err = r.RetireKey(ctx, compromised, s.now())
	}
	s.rot.mu.Unlock()
	if rerr := s.refreshKeys(ctx); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return RotationResult{}, fmt.Errorf("core: emergency rotation: %w", err)
	}
	n, rerr := s.revokeByKID(ctx, c, compromised)
	s.rotationEvent(ctx, c, "emergency", next.KID, map[string]string{
		"retired_kid": compromised, "revoked_tokens": strconv.Itoa(n),
	})
	if rerr != nil {
		// The key is retired, so its tokens no longer verify here
		// anyway; the revocation records are for the audit trail and
		// for other nodes. Report it so the admin can retry.
		return RotationResult{}, fmt.Errorf("core: emergency rotation: key retired, revoked %d tokens, then: %w", n, rerr)
	}
	res.Revoked = n
	res.Keys, err = s.PublicKeys(ctx)
	return res, err
}

// revokeByKID revokes every unexpired, unrevoked token signed by kid.
func (s *Service) revokeByKID(ctx context.Context, c Caller, kid string) (int, error) {
	live, err := s.store.Tokens().ListTokens(ctx, storage.TokenFilter{KID: kid, ExpiresAfter: s.now()})
	if err != nil {
		return 0, fmt.Errorf("list tokens: %w", err)
	}
	n := 0
	for _, t := range live {
		if !t.RevokedAt.IsZero() {
			continue
		}
		now := s.now().UTC()
		ev := s.event(c, audit.TokenRevoke, t.AccountID, audit.Success, map[string]string{"jti": t.JTI, "reason": reasonKeyCompromised, "kid": kid})
		if err := s.store.Tokens().RevokeToken(ctx, t.JTI, now, reasonKeyCompromised, ev); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return n, fmt.Errorf("revoke %s: %w", t.JTI, err)
		}
		t.RevokedAt, t.RevokeReason = now, reasonKeyCompromised
		s.tokens.merge(t)
		n++
	}
	s.pokeSinks()
	return n, nil
}
