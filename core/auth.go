package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/metacircular/mcias/core/totp"
	"github.com/metacircular/mcias/core/username"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// msgBadLogin is the one answer to every failed login, whatever failed.
const msgBadLogin = "invalid username, password or TOTP code"

var (
	// errLoginRejected: the account changed under a login in a way that
	// voids it (disabled, password or TOTP changed).
	errLoginRejected = errors.New("login rejected")
	// errTOTPRejected: the code is wrong, outside the window, or its
	// step was already used.
	errTOTPRejected = errors.New("totp code rejected")
)

func totpAAD(id string) []byte    { return []byte("mcias:totp:" + id) }
func pgcredsAAD(id string) []byte { return []byte("mcias:pgcreds:" + id) }

// Login checks a username, password and (when enabled) TOTP code and
// issues a session token. Unknown user, wrong password, inactive account
// and wrong or replayed code all give the same ErrInvalidCredentials, and
// each path runs exactly one Argon2id so their times match too.
func (s *Service) Login(ctx context.Context, c Caller, name, pw, totpCode string) (IssuedToken, error) {
	fail := func(accountID, reason string) (IssuedToken, error) {
		// The submitted username is not recorded: it may be a password
		// typed into the wrong field.
		ev := s.event(c, audit.LoginFailure, accountID, audit.Failure, map[string]string{"reason": reason})
		if err := s.appendEvent(ctx, ev); err != nil {
			return IssuedToken{}, fmt.Errorf("core: login: %w", err)
		}
		return IssuedToken{}, newError(ErrInvalidCredentials, msgBadLogin)
	}
	if len(pw) > MaxPasswordBytes {
		pw = pw[:MaxPasswordBytes] // bounded work; the login fails below anyway
		s.hasher.VerifyDummy(ctx, pw)
		return fail("", "password_too_long")
	}
	if strings.ContainsFunc(pw, unicode.IsControl) {
		// No stored password can hold one (checkPassword); fail in the
		// same time as an unknown user.
		s.hasher.VerifyDummy(ctx, pw)
		return fail("", "password_control_characters")
	}
	canon, err := username.Canonical(name)
	if err != nil {
		s.hasher.VerifyDummy(ctx, pw)
		return fail("", "unknown_user")
	}
	a, err := s.store.Accounts().GetAccountByUsername(ctx, canon)
	if errors.Is(err, sdk.ErrNotFound) {
		s.hasher.VerifyDummy(ctx, pw)
		return fail("", "unknown_user")
	}
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: login: %w", err)
	}
	if a.PasswordHash == "" {
		s.hasher.VerifyDummy(ctx, pw)
		return fail(a.ID, "no_password")
	}
	ok, err := s.hasher.Verify(ctx, pw, a.PasswordHash)
	if errors.Is(err, sdk.ErrUnavailable) {
		return IssuedToken{}, fmt.Errorf("core: login: %w", err)
	}
	if err != nil {
		s.log.Error("core: login: stored password hash is malformed", "account_id", a.ID, "err", err)
		return fail(a.ID, "bad_stored_hash")
	}
	if !ok {
		return fail(a.ID, "wrong_password")
	}
	if a.Status != storage.Active {
		return fail(a.ID, "account_"+string(a.Status))
	}

	if a.TOTPEnabled {
		if totpCode == "" {
			ev := s.event(c, audit.LoginFailure, a.ID, audit.Failure, map[string]string{"reason": "totp_required"})
			if err := s.appendEvent(ctx, ev); err != nil {
				return IssuedToken{}, fmt.Errorf("core: login: %w", err)
			}
			return IssuedToken{}, newError(ErrTOTPRequired, "a TOTP code is required")
		}
		secret, err := s.cust.Decrypt(ctx, a.TOTPSecret, totpAAD(a.ID))
		if err != nil {
			return IssuedToken{}, fmt.Errorf("core: login: open totp secret: %w", err)
		}
		// The accepted step is stored by CAS: two logins racing with the
		// same code both pass Verify against the old step, but only one
		// update can win; the other re-reads, sees the step used, fails.
		a, err = s.casAccount(ctx, a.ID, &a, func(cur *storage.Account) (storage.UpdateOptions, audit.Event, error) {
			if cur.Status != storage.Active || !cur.TOTPEnabled || cur.PasswordHash != a.PasswordHash ||
				!bytes.Equal(cur.TOTPSecret, a.TOTPSecret) {
				return storage.UpdateOptions{}, audit.Event{}, errLoginRejected
			}
			step, ok := totp.Verify(secret, totpCode, s.now(), cur.TOTPLastStep)
			if !ok {
				return storage.UpdateOptions{}, audit.Event{}, errTOTPRejected
			}
			cur.TOTPLastStep = step
			return storage.UpdateOptions{}, s.event(c, TOTPUse, cur.ID, audit.Success, nil), nil
		})
		switch {
		case errors.Is(err, errTOTPRejected):
			return fail(a.ID, "wrong_totp")
		case errors.Is(err, errLoginRejected), errors.Is(err, sdk.ErrNotFound):
			return fail(a.ID, "account_changed")
		case err != nil:
			return IssuedToken{}, err
		}
	}

	ev := s.event(c, audit.LoginSuccess, a.ID, audit.Success, map[string]string{
		"kind": string(storage.Session), "totp": strconv.FormatBool(a.TOTPEnabled),
	})
	it, err := s.issue(ctx, issueRequest{account: a, kind: storage.Session, ttl: s.cfg.TokenTTL, ev: ev})
	if errors.Is(err, errAccountChanged) {
		return fail(a.ID, "account_changed")
	}
	if err != nil {
		return IssuedToken{}, fmt.Errorf("core: login: %w", err)
	}
	return it, nil
}

// ChangePassword changes the caller's own password. Every other token of
// the account dies, atomically with the change; the caller's survives.
func (s *Service) ChangePassword(ctx context.Context, c Caller, current, next string) error {
	p, err := requirePrincipal(c)
	if err != nil {
		return err
	}
	if err := s.checkPassword(next); err != nil {
		return err
	}
	a, err := s.getLiveAccount(ctx, p.AccountID)
	if err != nil {
		return err
	}
	ok := false
	if a.PasswordHash != "" && len(current) <= MaxPasswordBytes {
		ok, err = s.hasher.Verify(ctx, current, a.PasswordHash)
		if errors.Is(err, sdk.ErrUnavailable) {
			return fmt.Errorf("core: change password: %w", err)
		}
	} else {
		s.hasher.VerifyDummy(ctx, current)
	}
	if !ok {
		ev := s.event(c, audit.PasswordChange, a.ID, audit.Failure, map[string]string{"by": "self", "reason": "wrong_current_password"})
		if err := s.appendEvent(ctx, ev); err != nil {
			return fmt.Errorf("core: change password: %w", err)
		}
		return newError(ErrInvalidCredentials, "the current password is wrong")
	}
	hash, err := s.hasher.Hash(ctx, next)
	if err != nil {
		return fmt.Errorf("core: change password: %w", err)
	}
	_, err = s.casAccount(ctx, a.ID, &a, func(cur *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if cur.Status != storage.Active || cur.PasswordHash != a.PasswordHash {
			// The current password was checked against a hash that is
			// gone; the check no longer holds.
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrConflict, "the account changed meanwhile; try again")
		}
		cur.PasswordHash = hash
		cur.UpdatedAt = s.now().UTC()
		ev := s.event(c, audit.PasswordChange, cur.ID, audit.Success, map[string]string{"by": "self"})
		return storage.UpdateOptions{RevokeTokens: true, KeepJTI: p.JTI, RevokeReason: reasonPasswordChange}, ev, nil
	})
	return err
}

// EnrollTOTP starts TOTP enrollment for the caller: a new secret is
// stored sealed, pending until ConfirmTOTP. The secret is shown once,
// here. An account with TOTP enabled cannot enroll again (that would let
// a stolen token switch TOTP off); an admin removes it first.
func (s *Service) EnrollTOTP(ctx context.Context, c Caller) (TOTPEnrollment, error) {
	p, err := requirePrincipal(c)
	if err != nil {
		return TOTPEnrollment{}, err
	}
	a, err := s.getLiveAccount(ctx, p.AccountID)
	if err != nil {
		return TOTPEnrollment{}, err
	}
	errEnabled := newError(sdk.ErrConflict, "TOTP is already enabled; an admin must remove it before enrolling again")
	if a.TOTPEnabled {
		return TOTPEnrollment{}, errEnabled
	}
	secret, err := totp.GenerateSecret()
	if err != nil {
		return TOTPEnrollment{}, fmt.Errorf("core: enroll totp: %w: %w", sdk.ErrInternal, err)
	}
	sealed, err := s.cust.Encrypt(ctx, secret, totpAAD(a.ID))
	if err != nil {
		return TOTPEnrollment{}, fmt.Errorf("core: enroll totp: seal secret: %w", err)
	}
	_, err = s.casAccount(ctx, a.ID, &a, func(cur *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if cur.TOTPEnabled {
			return storage.UpdateOptions{}, audit.Event{}, errEnabled
		}
		cur.TOTPSecret, cur.TOTPLastStep = sealed, 0
		cur.UpdatedAt = s.now().UTC()
		return storage.UpdateOptions{}, s.event(c, audit.TOTPEnroll, cur.ID, audit.Success, nil), nil
	})
	if err != nil {
		return TOTPEnrollment{}, err
	}
	return TOTPEnrollment{
		Secret:     totp.EncodeSecret(secret),
		OTPAuthURI: totp.URI(s.cfg.Issuer, a.Username, secret),
	}, nil
}

// ConfirmTOTP enables TOTP once the caller proves, with a code, that the
// pending secret reached the authenticator.
func (s *Service) ConfirmTOTP(ctx context.Context, c Caller, code string) error {
	p, err := requirePrincipal(c)
	if err != nil {
		return err
	}
	a, err := s.getLiveAccount(ctx, p.AccountID)
	if err != nil {
		return err
	}
	if a.TOTPEnabled {
		return newError(sdk.ErrConflict, "TOTP is already enabled")
	}
	if len(a.TOTPSecret) == 0 {
		return newError(sdk.ErrConflict, "no TOTP enrollment is pending; enroll first")
	}
	secret, err := s.cust.Decrypt(ctx, a.TOTPSecret, totpAAD(a.ID))
	if err != nil {
		return fmt.Errorf("core: confirm totp: open secret: %w", err)
	}
	_, err = s.casAccount(ctx, a.ID, &a, func(cur *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if cur.TOTPEnabled || !bytes.Equal(cur.TOTPSecret, a.TOTPSecret) {
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrConflict, "the TOTP enrollment changed meanwhile; enroll again")
		}
		step, ok := totp.Verify(secret, code, s.now(), cur.TOTPLastStep)
		if !ok {
			return storage.UpdateOptions{}, audit.Event{}, errTOTPRejected
		}
		cur.TOTPEnabled, cur.TOTPLastStep = true, step
		cur.UpdatedAt = s.now().UTC()
		return storage.UpdateOptions{}, s.event(c, audit.TOTPConfirm, cur.ID, audit.Success, nil), nil
	})
	if errors.Is(err, errTOTPRejected) {
		ev := s.event(c, audit.TOTPConfirm, a.ID, audit.Failure, map[string]string{"reason": "wrong_code"})
		if err := s.appendEvent(ctx, ev); err != nil {
			return fmt.Errorf("core: confirm totp: %w", err)
		}
		return invalid("the TOTP code is wrong or expired")
	}
	return err
}

// RemoveTOTP switches TOTP off for an account and wipes its secret
// (admin; the way back for a user who lost the authenticator).
func (s *Service) RemoveTOTP(ctx context.Context, c Caller, id string) error {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return err
	}
	_, err := s.casAccount(ctx, id, nil, func(cur *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if cur.Status == storage.Deleted {
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrNotFound, msgNoAccount)
		}
		if !cur.TOTPEnabled && len(cur.TOTPSecret) == 0 {
			return storage.UpdateOptions{}, audit.Event{}, errUnchanged
		}
		cur.TOTPSecret, cur.TOTPEnabled, cur.TOTPLastStep = nil, false, 0
		cur.UpdatedAt = s.now().UTC()
		return storage.UpdateOptions{}, s.event(c, audit.TOTPRemove, cur.ID, audit.Success, nil), nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}
