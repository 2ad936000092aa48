package core

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// keyCache holds the published signing keys. Tokens are verified only
// against these, never against key material named in a token.
type keyCache struct {
	mu      sync.RWMutex
	byKID   map[string]custody.PublicKey
	ordered []custody.PublicKey // active first

	// refreshMu serialises refreshes; fetched is when the last one ran,
	// for the unknown-kid rate limit.
	refreshMu sync.Mutex
	fetched   time.Time
}

func stateRank(st custody.KeyState) int {
	switch st {
	case custody.StateActive:
		return 0
	case custody.StateNext:
		return 1
	case custody.StateRetiring:
		return 2
	default:
		return 3
	}
}

// refreshKeys re-reads the published keys from the custodian.
func (s *Service) refreshKeys(ctx context.Context) error {
	s.keys.refreshMu.Lock()
	defer s.keys.refreshMu.Unlock()
	return s.refreshKeysLocked(ctx)
}

func (s *Service) refreshKeysLocked(ctx context.Context) error {
	s.keys.fetched = s.now()
	pks, err := s.cust.PublicKeys(ctx)
	if err != nil {
		return fmt.Errorf("read public keys: %w", err)
	}
	byKID := make(map[string]custody.PublicKey, len(pks))
	var ordered []custody.PublicKey
	active := 0
	for _, pk := range pks {
		if pk.State == custody.StateRetired || len(pk.Key) != ed25519.PublicKeySize || pk.KID == "" {
			continue
		}
		if pk.State == custody.StateActive {
			active++
		}
		byKID[pk.KID] = pk
		ordered = append(ordered, pk)
	}
	if active != 1 {
		return fmt.Errorf("read public keys: custodian lists %d active keys, want 1: %w", active, sdk.ErrInternal)
	}
	slices.SortStableFunc(ordered, func(a, b custody.PublicKey) int {
		if d := stateRank(a.State) - stateRank(b.State); d != 0 {
			return d
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	s.keys.mu.Lock()
	s.keys.byKID, s.keys.ordered = byKID, ordered
	s.keys.mu.Unlock()
	return nil
}

// verificationKey returns the key for kid. An unknown kid may mean a
// rotation happened elsewhere, so it triggers a refresh, at most once per
// unknownKIDInterval.
func (s *Service) verificationKey(ctx context.Context, kid string) (ed25519.PublicKey, bool) {
	s.keys.mu.RLock()
	pk, ok := s.keys.byKID[kid]
	s.keys.mu.RUnlock()
	if ok {
		return pk.Key, true
	}
	s.keys.refreshMu.Lock()
	if s.now().Sub(s.keys.fetched) >= unknownKIDInterval {
		if err := s.refreshKeysLocked(ctx); err != nil {
			s.log.Warn("core: refresh signing keys on unknown kid", "err", err)
		}
	}
	s.keys.refreshMu.Unlock()
	s.keys.mu.RLock()
	pk, ok = s.keys.byKID[kid]
	s.keys.mu.RUnlock()
	return pk.Key, ok
}

// PublicKeys returns the keys a verifier should accept now, active first.
// It is served from the cache.
func (s *Service) PublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	if len(s.keys.ordered) == 0 {
		return nil, fmt.Errorf("core: public keys: none loaded: %w", sdk.ErrUnavailable)
	}
	return slices.Clone(s.keys.ordered), nil
}

// ActiveKey returns the key that signs new tokens.
func (s *Service) ActiveKey(ctx context.Context) (custody.PublicKey, error) {
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	if len(s.keys.ordered) == 0 || s.keys.ordered[0].State != custody.StateActive {
		return custody.PublicKey{}, fmt.Errorf("core: active key: none loaded: %w", sdk.ErrUnavailable)
	}
	return s.keys.ordered[0], nil
}

// tokenEntry is what the hot path needs to know of an issued token.
type tokenEntry struct {
	accountID string
	kind      storage.TokenKind
	audience  string
	expiresAt time.Time
	revoked   bool
}

// tokenCache knows every unexpired token this process has issued, loaded
// or looked up. Revocation is monotonic: once an entry is revoked no later
// write makes it live again, which makes the order of concurrent updates
// (a login caching its token while a password change revokes it)
// irrelevant.
type tokenCache struct {
	mu        sync.RWMutex
	byJTI     map[string]tokenEntry
	byAccount map[string]map[string]struct{}
}

func (c *tokenCache) init() {
	c.byJTI = map[string]tokenEntry{}
	c.byAccount = map[string]map[string]struct{}{}
}

func (c *tokenCache) get(jti string) (tokenEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.byJTI[jti]
	return e, ok
}

// merge records t, keeping an earlier revocation.
func (c *tokenCache) merge(t storage.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(t.JTI, tokenEntry{
		accountID: t.AccountID,
		kind:      t.Kind,
		audience:  t.Audience,
		expiresAt: t.ExpiresAt,
		revoked:   !t.RevokedAt.IsZero(),
	})
}

func (c *tokenCache) putLocked(jti string, e tokenEntry) {
	if old, ok := c.byJTI[jti]; ok && old.revoked {
		e.revoked = true
	}
	c.byJTI[jti] = e
	set := c.byAccount[e.accountID]
	if set == nil {
		set = map[string]struct{}{}
		c.byAccount[e.accountID] = set
	}
	set[jti] = struct{}{}
}

// forget drops a token whose record was never stored.
func (c *tokenCache) forget(jti string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byJTI[jti]; ok {
		delete(c.byJTI, jti)
		delete(c.byAccount[e.accountID], jti)
	}
}

func (c *tokenCache) revoke(jti string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byJTI[jti]; ok {
		e.revoked = true
		c.byJTI[jti] = e
	}
}

// revokeAccount marks every token of the account revoked except keep.
func (c *tokenCache) revokeAccount(accountID, keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for jti := range c.byAccount[accountID] {
		if jti == keep {
			continue
		}
		e := c.byJTI[jti]
		e.revoked = true
		c.byJTI[jti] = e
	}
}

// prune drops expired entries; an expired token fails on exp anyway.
func (c *tokenCache) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for jti, e := range c.byJTI {
		if now.After(e.expiresAt.Add(DefaultLeeway + time.Minute)) {
			delete(c.byJTI, jti)
			set := c.byAccount[e.accountID]
			delete(set, jti)
			if len(set) == 0 {
				delete(c.byAccount, e.accountID)
			}
		}
	}
}

// accountSnap is what the hot path needs to know of an account.
type accountSnap struct {
	version  int64
	status   storage.AccountStatus
	username string
	typ      storage.AccountType
	roles    []string
}

// accountCache holds snapshots keyed by account ID. Updates only move
// forward in Version, so a slow read cannot overwrite a newer write.
type accountCache struct {
	mu   sync.RWMutex
	byID map[string]accountSnap
}

func (c *accountCache) init() { c.byID = map[string]accountSnap{} }

func (c *accountCache) get(id string) (accountSnap, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.byID[id]
	return a, ok
}

func (c *accountCache) has(id string) bool {
	_, ok := c.get(id)
	return ok
}

func (c *accountCache) put(a storage.Account) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byID[a.ID]; ok && old.version >= a.Version {
		return
	}
	c.byID[a.ID] = accountSnap{
		version:  a.Version,
		status:   a.Status,
		username: a.Username,
		typ:      a.Type,
		roles:    slices.Clone(a.Roles),
	}
}
