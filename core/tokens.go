package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// Revoke reasons recorded on token records.
const (
	reasonLogout         = "logout"
	reasonRenew          = "renew"
	reasonAdmin          = "admin"
	reasonPasswordChange = "password_change"
	reasonDisabled       = "account_disabled"
	reasonDeleted        = "account_deleted"
	// reasonAccountChanged: revoked before it was handed out, because the
	// account changed while it was being issued.
	reasonAccountChanged = "account_changed"
)

// maxAudienceLen bounds an audience string; it is an identifier, not a
// document.
const maxAudienceLen = 256

// claims is the token payload as parsed. Audience accepts a string or an
// array, as RFC 7519 allows; we only ever write a single string.
type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles"`
}

// errInvalidToken is what every token check fails with; callers turn it
// into Validation{Valid:false} or ErrUnauthorized. The reason is logged
// at debug level only.
var errInvalidToken = errors.New("invalid token")

// issueRequest describes a token to issue.
type issueRequest struct {
	account  storage.Account
	kind     storage.TokenKind
	ttl      time.Duration
	audience string
	replaces string // jti revoked in the same transaction (renew)
	ev       audit.Event
}

// issue signs a token and records it with req.ev. The cache learns the
// token before its record is committed, so a revocation racing with the
// issue is always applied to it (see tokenCache).
func (s *Service) issue(ctx context.Context, req issueRequest) (IssuedToken, error) {
	key, err := s.ActiveKey(ctx)
	if err != nil {
		return IssuedToken{}, err
	}
	iat := s.now().UTC().Truncate(time.Second)
	exp := iat.Add(req.ttl)
	jti := uuid.NewString()
	roles := slices.Clone(req.account.Roles)
	if roles == nil {
		roles = []string{}
	}
	mc := jwt.MapClaims{
		"iss":   s.cfg.Issuer,
		"sub":   req.account.ID,
		"iat":   iat.Unix(),
		"nbf":   iat.Unix(),
		"exp":   exp.Unix(),
		"jti":   jti,
		"roles": roles,
	}
	if req.audience != "" {
		mc["aud"] = req.audience
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, mc)
	tok.Header["kid"] = key.KID
	signing, err := tok.SigningString()
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: sign token: %w: %w", sdk.ErrInternal, err)
	}
	sig, err := s.cust.Sign(ctx, key.KID, []byte(signing))
	if errors.Is(err, sdk.ErrNotFound) {
		// The key was rotated away under us; pick up the new one once.
		if rerr := s.refreshKeys(ctx); rerr == nil {
			if nk, kerr := s.ActiveKey(ctx); kerr == nil && nk.KID != key.KID {
				return s.issue(ctx, req)
			}
		}
	}
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: sign token: %w", err)
	}
	compact := signing + "." + tok.EncodeSegment(sig)

	rec := storage.Token{
		JTI:       jti,
		AccountID: req.account.ID,
		Kind:      req.kind,
		Audience:  req.audience,
		KID:       key.KID,
		IssuedAt:  iat,
		ExpiresAt: exp,
	}
	req.ev.Details = withDetail(req.ev.Details, "jti", jti)
	s.tokens.merge(rec)
	if err := s.store.Tokens().CreateToken(ctx, rec, req.replaces, req.ev); err != nil {
		s.tokens.forget(jti)
		return IssuedToken{}, fmt.Errorf("core: record token: %w", err)
	}
	if req.replaces != "" {
		s.tokens.revoke(req.replaces)
	}
	// req.account was read before the token was recorded. A password
	// change, disable or delete that committed in between revoked the
	// account's tokens before this one existed, so it would outlive the
	// change. Storage transactions are serialisable: a change committed
	// after the record revoked it; one committed before is seen here.
	cur, err := s.store.Accounts().GetAccount(ctx, req.account.ID)
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: recheck account: %w", err)
	}
	if !sameAuthority(req.account, cur) {
		return IssuedToken{}, s.voidIssued(ctx, req.ev, jti)
	}
	s.accounts.put(cur)
	s.pokeSinks()
	return IssuedToken{Token: compact, JTI: jti, ExpiresAt: exp}, nil
}

// errAccountChanged: the account changed under an issue in a way that
// voids the token (password, status or TOTP factor).
var errAccountChanged = errors.New("account changed while the token was issued")

// sameAuthority reports whether the account is still the one that was
// read and active. Any update counts: a disable followed by a re-enable
// leaves every field as it was but must still void the token, and two
// snapshots cannot tell it from a harmless change (roles, a TOTP step).
// Such a change landing in the same instant fails one login (a retry
// passes) or one renew (whose old token is then already revoked, so the
// client logs in again): rare, and on the safe side.
func sameAuthority(then, now storage.Account) bool {
	return now.Status == storage.Active && now.Version == then.Version
}

// voidIssued revokes a token that was recorded but never handed out, and
// returns errAccountChanged (or the storage error).
func (s *Service) voidIssued(ctx context.Context, issued audit.Event, jti string) error {
	ev := issued
	ev.ID, ev.Time, ev.Seq = uuid.NewString(), s.now().UTC(), 0
	ev.Type, ev.Outcome = audit.TokenRevoke, audit.Success
	ev.Details = map[string]string{"jti": jti, "reason": reasonAccountChanged}
	s.tokens.revoke(jti)
	if err := s.store.Tokens().RevokeToken(ctx, jti, ev.Time, reasonAccountChanged, ev); err != nil {
		return fmt.Errorf("core: void token: %w", err)
	}
	s.pokeSinks()
	return errAccountChanged
}

// checked is a token that passed every check.
type checked struct {
	claims  claims
	account accountSnap
	entry   tokenEntry
}

// check verifies a token fully: signature by a published key with alg
// pinned to EdDSA, time claims, issuer, audience, the jti's record (known
// and not revoked) and the account (active). Only a cache miss reaches
// storage; a storage failure is returned as is, every other failure as
// errInvalidToken.
func (s *Service) check(ctx context.Context, token, audience string) (checked, error) {
	var c claims
	_, err := s.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
			return nil, errors.New("alg is not EdDSA")
		}
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 4.1.11: we understand no extension.
			return nil, errors.New("crit header not supported")
		}
		if typ, ok := t.Header["typ"]; ok {
			if ts, _ := typ.(string); !strings.EqualFold(ts, "JWT") {
				return nil, errors.New("typ is not JWT")
			}
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		key, ok := s.verificationKey(ctx, kid)
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return key, nil
	})
	if err != nil {
		s.log.Debug("core: token rejected", "err", err)
		return checked{}, errInvalidToken
	}
	if c.IssuedAt == nil || c.Subject == "" || c.ID == "" {
		return checked{}, errInvalidToken
	}
	// RFC 7519 4.1.3: a token meant for an audience is not valid where
	// none is being asked for, so a relying party's token cannot be
	// replayed as a bearer token against MCIAS itself.
	if audience == "" {
		if len(c.Audience) != 0 {
			return checked{}, errInvalidToken
		}
	} else if !slices.Contains(c.Audience, audience) {
		return checked{}, errInvalidToken
	}

	e, ok := s.tokens.get(c.ID)
	if !ok {
		rec, err := s.store.Tokens().GetToken(ctx, c.ID)
		if errors.Is(err, sdk.ErrNotFound) {
			return checked{}, errInvalidToken
		}
		if err != nil {
			return checked{}, fmt.Errorf("core: look up token: %w", err)
		}
		s.tokens.merge(rec)
		e, _ = s.tokens.get(c.ID)
	}
	if e.revoked || e.accountID != c.Subject {
		return checked{}, errInvalidToken
	}

	a, ok := s.accounts.get(c.Subject)
	if !ok {
		acct, err := s.store.Accounts().GetAccount(ctx, c.Subject)
		if errors.Is(err, sdk.ErrNotFound) {
			return checked{}, errInvalidToken
		}
		if err != nil {
			return checked{}, fmt.Errorf("core: look up account: %w", err)
		}
		s.accounts.put(acct)
		a, _ = s.accounts.get(c.Subject)
	}
	if a.status != storage.Active {
		return checked{}, errInvalidToken
	}
	return checked{claims: c, account: a, entry: e}, nil
}

// Validate checks a token for a relying party that expects audience
// ("" for none). A bad token is Validation{Valid:false} with a nil error;
// an error means the answer could not be worked out (ErrUnavailable).
// In steady state it makes no backend call.
func (s *Service) Validate(ctx context.Context, token, audience string) (Validation, error) {
	ck, err := s.check(ctx, token, audience)
	if errors.Is(err, errInvalidToken) {
		return Validation{}, nil
	}
	if err != nil {
		return Validation{}, err
	}
	return Validation{
		Valid:       true,
		Sub:         ck.claims.Subject,
		Username:    ck.account.username,
		AccountType: ck.account.typ,
		Roles:       rolesOut(ck.account.roles),
		ExpiresAt:   ck.claims.ExpiresAt.UTC(),
		JTI:         ck.claims.ID,
	}, nil
}

// Authenticate turns a bearer token for the MCIAS API into a principal.
// Such a token carries no audience. Roles are the account's current ones,
// not those frozen into the token, so a demotion takes effect at once.
func (s *Service) Authenticate(ctx context.Context, token string) (*Principal, error) {
	ck, err := s.check(ctx, token, "")
	if errors.Is(err, errInvalidToken) {
		return nil, newError(ErrUnauthorized, "the token is missing, invalid, expired or revoked")
	}
	if err != nil {
		return nil, err
	}
	return &Principal{
		AccountID:   ck.claims.Subject,
		Username:    ck.account.username,
		AccountType: ck.account.typ,
		Roles:       rolesOut(ck.account.roles),
		JTI:         ck.claims.ID,
		ExpiresAt:   ck.claims.ExpiresAt.UTC(),
	}, nil
}

// Logout revokes the caller's token.
func (s *Service) Logout(ctx context.Context, c Caller) error {
	p, err := requirePrincipal(c)
	if err != nil {
		return err
	}
	ev := s.event(c, audit.Logout, p.AccountID, audit.Success, map[string]string{"jti": p.JTI})
	if err := s.store.Tokens().RevokeToken(ctx, p.JTI, s.now().UTC(), reasonLogout, ev); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return newError(ErrUnauthorized, "the token is no longer valid")
		}
		return fmt.Errorf("core: logout: %w", err)
	}
	s.tokens.revoke(p.JTI)
	s.pokeSinks()
	return nil
}

// Renew issues a fresh token of the same kind and audience as the
// caller's and revokes the caller's, atomically.
func (s *Service) Renew(ctx context.Context, c Caller) (IssuedToken, error) {
	p, err := requirePrincipal(c)
	if err != nil {
		return IssuedToken{}, err
	}
	e, ok := s.tokens.get(p.JTI)
	if !ok || e.revoked {
		return IssuedToken{}, newError(ErrUnauthorized, "the token is no longer valid")
	}
	a, err := s.store.Accounts().GetAccount(ctx, p.AccountID)
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: renew: %w", err)
	}
	if a.Status != storage.Active {
		return IssuedToken{}, newError(ErrUnauthorized, "the token is no longer valid")
	}
	ttl := s.cfg.TokenTTL
	if e.kind == storage.Service {
		// A service token keeps the lifetime the admin chose for it: a
		// short-lived one must not renew itself into the default.
		rec, err := s.store.Tokens().GetToken(ctx, p.JTI)
		if errors.Is(err, sdk.ErrNotFound) {
			return IssuedToken{}, newError(ErrUnauthorized, "the token is no longer valid")
		}
		if err != nil {
			return IssuedToken{}, fmt.Errorf("core: renew: %w", err)
		}
		ttl = min(max(rec.ExpiresAt.Sub(rec.IssuedAt), time.Second), s.cfg.MaxServiceTokenTTL)
	}
	ev := s.event(c, audit.TokenRenew, a.ID, audit.Success, map[string]string{
		"replaces": p.JTI, "kind": string(e.kind),
	})
	it, err := s.issue(ctx, issueRequest{
		account: a, kind: e.kind, ttl: ttl, audience: e.audience, replaces: p.JTI, ev: ev,
	})
	if errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) || errors.Is(err, errAccountChanged) {
		// Revoked (logout, renew, password change, disable) between
		// Authenticate and here.
		return IssuedToken{}, newError(ErrUnauthorized, "the token is no longer valid")
	}
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: renew: %w", err)
	}
	return it, nil
}

// IssueServiceToken issues a token for an active system account. ttl 0
// means the configured default; otherwise it must lie in [1s, max].
func (s *Service) IssueServiceToken(ctx context.Context, c Caller, accountID string, ttl time.Duration, audience string) (IssuedToken, error) {
	accountID = canonicalID(accountID)
	if err := requireAdmin(c); err != nil {
		return IssuedToken{}, err
	}
	switch {
	case ttl == 0:
		ttl = s.cfg.ServiceTokenTTL
	case ttl < time.Second || ttl > s.cfg.MaxServiceTokenTTL:
		// Compared as durations, so no value can overflow into range.
		return IssuedToken{}, invalid(fmt.Sprintf("ttl must be between 1 second and %d seconds", int64(s.cfg.MaxServiceTokenTTL/time.Second)))
	}
	if err := checkAudience(audience); err != nil {
		return IssuedToken{}, err
	}
	a, err := s.getAccount(ctx, accountID)
	if err != nil {
		return IssuedToken{}, err
	}
	if a.Type != storage.System || a.Status != storage.Active {
		return IssuedToken{}, invalid("service tokens are issued only for active system accounts")
	}
	details := map[string]string{"kind": string(storage.Service), "ttl_seconds": strconv.FormatInt(int64(ttl/time.Second), 10)}
	if audience != "" {
		details["audience"] = audience
	}
	ev := s.event(c, audit.TokenIssue, a.ID, audit.Success, details)
	it, err := s.issue(ctx, issueRequest{account: a, kind: storage.Service, ttl: ttl, audience: audience, ev: ev})
	if errors.Is(err, errAccountChanged) {
		return IssuedToken{}, newError(sdk.ErrConflict, "the account changed while the token was issued; try again")
	}
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: issue service token: %w", err)
	}
	return it, nil
}

// RevokeToken revokes any token by jti. Revoking a revoked token
// succeeds and is audited again.
func (s *Service) RevokeToken(ctx context.Context, c Caller, jti string) error {
	jti = canonicalID(jti)
	if err := requireAdmin(c); err != nil {
		return err
	}
	if _, err := uuid.Parse(jti); err != nil {
		return newError(sdk.ErrNotFound, "token not found")
	}
	rec, err := s.store.Tokens().GetToken(ctx, jti)
	if errors.Is(err, sdk.ErrNotFound) {
		return newError(sdk.ErrNotFound, "token not found")
	}
	if err != nil {
		return fmt.Errorf("core: revoke token: %w", err)
	}
	ev := s.event(c, audit.TokenRevoke, rec.AccountID, audit.Success, map[string]string{"jti": jti, "reason": reasonAdmin})
	if err := s.store.Tokens().RevokeToken(ctx, jti, s.now().UTC(), reasonAdmin, ev); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return newError(sdk.ErrNotFound, "token not found")
		}
		return fmt.Errorf("core: revoke token: %w", err)
	}
	rec.RevokedAt = s.now()
	s.tokens.merge(rec)
	s.pokeSinks()
	return nil
}

func checkAudience(aud string) error {
	if len(aud) > maxAudienceLen {
		return invalid(fmt.Sprintf("audience must be at most %d bytes", maxAudienceLen))
	}
	for _, r := range aud {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar {
			return invalid("audience must be printable text without spaces")
		}
	}
	return nil
}

func rolesOut(r []string) []string {
	if r == nil {
		return []string{}
	}
	return slices.Clone(r)
}
