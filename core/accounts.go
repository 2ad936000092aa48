package core

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/metacircular/mcias/core/username"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// casAttempts bounds the optimistic-concurrency retry: a version conflict
// re-reads the account and re-applies the change this many times in all.
const casAttempts = 5

const (
	maxRoles = 64
	// msgUsernameTaken is the one message for both clashes, so a probe
	// cannot tell an exact match from a look-alike.
	msgUsernameTaken = "username is taken or too similar to an existing one"
	msgLastAdmin     = "cannot remove the last active admin"
	msgNoAccount     = "account not found"
	// msgPasswordControl: NUL and the other control characters (Unicode
	// Cc: U+0000-U+001F, U+007F-U+009F) cannot be typed reliably, are cut
	// short by C tools and terminals, and make a password of 12 NULs pass
	// the length rule.
	msgPasswordControl = "password must not contain control characters (such as NUL, tab or newline)"
)

var roleRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._:-]{0,63}$`)

func requirePrincipal(c Caller) (*Principal, error) {
	if c.Principal == nil || c.Principal.AccountID == "" {
		return nil, newError(ErrUnauthorized, "authentication required")
	}
	return c.Principal, nil
}

func requireAdmin(c Caller) error {
	if _, err := requirePrincipal(c); err != nil {
		return err
	}
	if !c.Principal.IsAdmin() {
		return newError(ErrForbidden, "this needs the admin role")
	}
	return nil
}

// mutateFunc applies a change to a fresh copy of an account and names the
// guards and the event to store with it. An error stops casAccount and is
// returned as is.
type mutateFunc func(a *storage.Account) (storage.UpdateOptions, audit.Event, error)

// casAccount reads account id (or starts from first when given), applies
// mutate to a copy and stores it; on a version conflict it re-reads and
// re-applies, so every decision mutate makes is made again on fresh
// data. The caches are updated on success.
func (s *Service) casAccount(ctx context.Context, id string, first *storage.Account, mutate mutateFunc) (storage.Account, error) {
	var lastErr error
	for attempt := 0; attempt < casAttempts; attempt++ {
		var cur storage.Account
		if attempt == 0 && first != nil {
			cur = *first
		} else {
			a, err := s.getAccount(ctx, id)
			if err != nil {
				return storage.Account{}, err
			}
			cur = a
		}
		cur.Roles = slices.Clone(cur.Roles)
		cur.TOTPSecret = slices.Clone(cur.TOTPSecret)
		opts, ev, err := mutate(&cur)
		if err != nil {
			return storage.Account{}, err
		}
		stored, err := s.store.Accounts().UpdateAccount(ctx, cur, opts, ev)
		switch {
		case err == nil:
			s.afterAccountWrite(ctx, stored, opts)
			return stored, nil
		case errors.Is(err, sdk.ErrConflict):
			lastErr = err
			continue
		case errors.Is(err, sdk.ErrPrecondition):
			return storage.Account{}, newError(sdk.ErrConflict, msgLastAdmin)
		case errors.Is(err, sdk.ErrNotFound):
			return storage.Account{}, newError(sdk.ErrNotFound, msgNoAccount)
		default:
			return storage.Account{}, fmt.Errorf("core: update account: %w", err)
		}
	}
	s.log.Warn("core: update account: giving up after version conflicts", "account_id", id, "err", lastErr)
	return storage.Account{}, newError(sdk.ErrConflict, "the account was changed concurrently; try again")
}

// canonicalID returns a UUID in the canonical lowercase form that ids and
// jtis are stored in, so a client that upper-cases one (RFC 9562 says
// UUIDs compare case-insensitively) still finds it. Anything that is not
// the 36-character hyphenated form is returned unchanged and is then
// simply not found.
func canonicalID(id string) string {
	if len(id) != 36 {
		return id
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return id
	}
	return u.String()
}

// getAccount reads an account by ID with a client-safe not-found error.
func (s *Service) getAccount(ctx context.Context, id string) (storage.Account, error) {
	if _, err := uuid.Parse(id); err != nil {
		return storage.Account{}, newError(sdk.ErrNotFound, msgNoAccount)
	}
	a, err := s.store.Accounts().GetAccount(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		return storage.Account{}, newError(sdk.ErrNotFound, msgNoAccount)
	}
	if err != nil {
		return storage.Account{}, fmt.Errorf("core: get account: %w", err)
	}
	return a, nil
}

// getLiveAccount is getAccount for acts that a deleted account does not
// admit: to a client it no longer exists.
func (s *Service) getLiveAccount(ctx context.Context, id string) (storage.Account, error) {
	a, err := s.getAccount(ctx, id)
	if err == nil && a.Status == storage.Deleted {
		return storage.Account{}, newError(sdk.ErrNotFound, msgNoAccount)
	}
	return a, err
}

func toAccount(a storage.Account) Account {
	return Account{
		ID:          a.ID,
		Username:    a.Username,
		Type:        a.Type,
		Status:      a.Status,
		TOTPEnabled: a.TOTPEnabled,
		Roles:       rolesOut(a.Roles),
		CreatedAt:   a.CreatedAt.UTC(),
		UpdatedAt:   a.UpdatedAt.UTC(),
	}
}

// checkPassword applies the password policy.
func (s *Service) checkPassword(pw string) error {
	if !utf8.ValidString(pw) {
		return invalid("password must be valid UTF-8")
	}
	if len(pw) > MaxPasswordBytes {
		return invalid(fmt.Sprintf("password must be at most %d bytes", MaxPasswordBytes))
	}
	if strings.ContainsFunc(pw, unicode.IsControl) {
		return invalid(msgPasswordControl)
	}
	if utf8.RuneCountInString(pw) < s.cfg.MinPasswordLength {
		return invalid(fmt.Sprintf("password must be at least %d characters", s.cfg.MinPasswordLength))
	}
	if strings.TrimSpace(pw) == "" {
		return invalid("password must not be only spaces")
	}
	return nil
}

// normRoles validates roles and returns them sorted and unique.
func normRoles(roles []string) ([]string, error) {
	if len(roles) > maxRoles {
		return nil, invalid(fmt.Sprintf("an account holds at most %d roles", maxRoles))
	}
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if !roleRE.MatchString(r) {
			return nil, invalid("a role is 1-64 characters of a-z, 0-9, '.', '_', ':' or '-', starting with a letter or digit")
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func parseType(t storage.AccountType) error {
	if t != storage.Human && t != storage.System {
		return invalid("account_type must be human or system")
	}
	return nil
}

// createAccount stores a new active account.
func (s *Service) createAccount(ctx context.Context, c Caller, name string, typ storage.AccountType, pw string, roles []string, details map[string]string) (storage.Account, error) {
	canon, err := username.Canonical(name)
	if err != nil {
		return storage.Account{}, invalid(err.Error())
	}
	if err := parseType(typ); err != nil {
		return storage.Account{}, err
	}
	var hash string
	switch {
	case pw != "":
		if err := s.checkPassword(pw); err != nil {
			return storage.Account{}, err
		}
		if hash, err = s.hasher.Hash(ctx, pw); err != nil {
			return storage.Account{}, fmt.Errorf("core: create account: %w", err)
		}
	case typ == storage.Human:
		return storage.Account{}, invalid("a human account needs a password")
	}
	now := s.now().UTC()
	a := storage.Account{
		ID:           uuid.NewString(),
		Username:     canon,
		Skeleton:     username.Skeleton(canon),
		Type:         typ,
		Status:       storage.Active,
		PasswordHash: hash,
		Roles:        roles,
		CreatedAt:    now,
		UpdatedAt:    now,
		Version:      1,
	}
	if details == nil {
		details = map[string]string{}
	}
	details["username"] = canon
	details["account_type"] = string(typ)
	if len(roles) > 0 {
		details["roles"] = strings.Join(roles, ",")
	}
	ev := s.event(c, audit.AccountCreate, a.ID, audit.Success, details)
	if err := s.store.Accounts().CreateAccount(ctx, a, ev); err != nil {
		if errors.Is(err, sdk.ErrConflict) {
			return storage.Account{}, newError(sdk.ErrConflict, msgUsernameTaken)
		}
		return storage.Account{}, fmt.Errorf("core: create account: %w", err)
	}
	s.accounts.put(a)
	s.pokeSinks()
	return a, nil
}

// Bootstrap creates the first account, a human admin, when the database
// holds none at all. On a database that has accounts it does nothing and
// returns false.
func (s *Service) Bootstrap(ctx context.Context, name, pw string) (bool, error) {
	n, err := s.store.Accounts().CountAccounts(ctx)
	if err != nil {
		return false, fmt.Errorf("core: bootstrap: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	if pw == "" {
		return false, invalid("the first admin needs a password")
	}
	if _, err := s.createAccount(ctx, Caller{}, name, storage.Human, pw, []string{RoleAdmin}, map[string]string{"bootstrap": "true"}); err != nil {
		// Nodes starting together on one empty database all get here; the
		// username's uniqueness lets exactly one create the admin, and the
		// others find it made.
		if n, cerr := s.store.Accounts().CountAccounts(ctx); cerr == nil && n > 0 && errors.Is(err, sdk.ErrConflict) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// Me returns the caller's own account.
func (s *Service) Me(ctx context.Context, c Caller) (Account, error) {
	p, err := requirePrincipal(c)
	if err != nil {
		return Account{}, err
	}
	a, err := s.getLiveAccount(ctx, p.AccountID)
	if err != nil {
		return Account{}, err
	}
	return toAccount(a), nil
}

// ListAccounts lists accounts; deleted ones only when asked for by status.
func (s *Service) ListAccounts(ctx context.Context, c Caller, q AccountQuery) (AccountPage, error) {
	if err := requireAdmin(c); err != nil {
		return AccountPage{}, err
	}
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return AccountPage{}, err
	}
	if q.Type != "" {
		if err := parseType(q.Type); err != nil {
			return AccountPage{}, err
		}
	}
	switch q.Status {
	case "", storage.Active, storage.Inactive, storage.Deleted:
	default:
		return AccountPage{}, invalid("status must be active, inactive or deleted")
	}
	f := storage.AccountFilter{Type: q.Type, Status: q.Status, Role: q.Role, Limit: limit}
	if q.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(raw) == 0 {
			return AccountPage{}, invalid("cursor is not valid")
		}
		f.Cursor = string(raw)
	}
	as, next, err := s.store.Accounts().ListAccounts(ctx, f)
	if errors.Is(err, sdk.ErrInvalidArgument) {
		return AccountPage{}, invalid("cursor is not valid")
	}
	if err != nil {
		return AccountPage{}, fmt.Errorf("core: list accounts: %w", err)
	}
	page := AccountPage{Accounts: make([]Account, 0, len(as))}
	for _, a := range as {
		page.Accounts = append(page.Accounts, toAccount(a))
	}
	if next != "" {
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	return page, nil
}

// CreateAccount creates an active account with no roles.
func (s *Service) CreateAccount(ctx context.Context, c Caller, na NewAccount) (Account, error) {
	if err := requireAdmin(c); err != nil {
		return Account{}, err
	}
	a, err := s.createAccount(ctx, c, na.Username, na.Type, na.Password, nil, nil)
	if err != nil {
		return Account{}, err
	}
	return toAccount(a), nil
}

// GetAccount returns any account, deleted ones included (they keep their
// row for the audit history).
func (s *Service) GetAccount(ctx context.Context, c Caller, id string) (Account, error) {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return Account{}, err
	}
	a, err := s.getAccount(ctx, id)
	if err != nil {
		return Account{}, err
	}
	return toAccount(a), nil
}

// UpdateAccount changes an account's status between active and inactive.
// Disabling kills every token of the account for good and may not remove
// the last active admin.
func (s *Service) UpdateAccount(ctx context.Context, c Caller, id string, u AccountUpdate) (Account, error) {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return Account{}, err
	}
	if u.Status == nil {
		a, err := s.getLiveAccount(ctx, id)
		if err != nil {
			return Account{}, err
		}
		return toAccount(a), nil
	}
	to := *u.Status
	if to != storage.Active && to != storage.Inactive {
		return Account{}, invalid("status must be active or inactive (delete an account with DELETE)")
	}
	var unchanged *storage.Account
	stored, err := s.casAccount(ctx, id, nil, func(a *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if a.Status == storage.Deleted {
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrNotFound, msgNoAccount)
		}
		if a.Status == to {
			cp := *a
			unchanged = &cp
			return storage.UpdateOptions{}, audit.Event{}, errUnchanged
		}
		from := a.Status
		a.Status = to
		a.UpdatedAt = s.now().UTC()
		opts := storage.UpdateOptions{KeepActiveAdmin: true}
		if to == storage.Inactive {
			opts.RevokeTokens, opts.RevokeReason = true, reasonDisabled
		}
		ev := s.event(c, audit.AccountUpdate, a.ID, audit.Success, map[string]string{
			"status_from": string(from), "status_to": string(to),
		})
		return opts, ev, nil
	})
	if errors.Is(err, errUnchanged) {
		return toAccount(*unchanged), nil
	}
	if err != nil {
		return Account{}, err
	}
	return toAccount(stored), nil
}

// errUnchanged stops a CAS update that would change nothing.
var errUnchanged = errors.New("unchanged")

// DeleteAccount marks an account deleted: its row stays for the audit
// history, its secrets are wiped, its tokens die and its username is
// freed. The last active admin cannot be deleted.
func (s *Service) DeleteAccount(ctx context.Context, c Caller, id string) error {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return err
	}
	_, err := s.casAccount(ctx, id, nil, func(a *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if a.Status == storage.Deleted {
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrNotFound, msgNoAccount)
		}
		a.Status = storage.Deleted
		a.PasswordHash = ""
		a.TOTPSecret, a.TOTPEnabled = nil, false
		a.UpdatedAt = s.now().UTC()
		ev := s.event(c, audit.AccountDelete, a.ID, audit.Success, map[string]string{"username": a.Username})
		return storage.UpdateOptions{KeepActiveAdmin: true, RevokeTokens: true, RevokeReason: reasonDeleted}, ev, nil
	})
	return err
}

// SetPassword sets another account's password (admin reset); every token
// of the account dies.
func (s *Service) SetPassword(ctx context.Context, c Caller, id, pw string) error {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return err
	}
	if err := s.checkPassword(pw); err != nil {
		return err
	}
	if _, err := s.getLiveAccount(ctx, id); err != nil {
		return err
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return fmt.Errorf("core: set password: %w", err)
	}
	_, err = s.casAccount(ctx, id, nil, func(a *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if a.Status == storage.Deleted {
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrNotFound, msgNoAccount)
		}
		a.PasswordHash = hash
		a.UpdatedAt = s.now().UTC()
		ev := s.event(c, audit.PasswordChange, a.ID, audit.Success, map[string]string{"by": "admin"})
		return storage.UpdateOptions{RevokeTokens: true, RevokeReason: reasonPasswordChange}, ev, nil
	})
	return err
}

// GetRoles returns an account's roles, sorted.
func (s *Service) GetRoles(ctx context.Context, c Caller, id string) ([]string, error) {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	a, err := s.getLiveAccount(ctx, id)
	if err != nil {
		return nil, err
	}
	return rolesOut(a.Roles), nil
}

// SetRoles replaces an account's roles. Taking admin from the last active
// admin is refused.
func (s *Service) SetRoles(ctx context.Context, c Caller, id string, roles []string) ([]string, error) {
	id = canonicalID(id)
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	want, err := normRoles(roles)
	if err != nil {
		return nil, err
	}
	var unchanged []string
	stored, err := s.casAccount(ctx, id, nil, func(a *storage.Account) (storage.UpdateOptions, audit.Event, error) {
		if a.Status == storage.Deleted {
			return storage.UpdateOptions{}, audit.Event{}, newError(sdk.ErrNotFound, msgNoAccount)
		}
		if slices.Equal(a.Roles, want) {
			unchanged = a.Roles
			return storage.UpdateOptions{}, audit.Event{}, errUnchanged
		}
		ev := s.event(c, audit.RoleChange, a.ID, audit.Success, map[string]string{
			"roles_from": strings.Join(a.Roles, ","), "roles_to": strings.Join(want, ","),
		})
		a.Roles = slices.Clone(want)
		a.UpdatedAt = s.now().UTC()
		return storage.UpdateOptions{KeepActiveAdmin: true}, ev, nil
	})
	if errors.Is(err, errUnchanged) {
		return rolesOut(unchanged), nil
	}
	if err != nil {
		return nil, err
	}
	return rolesOut(stored.Roles), nil
}
