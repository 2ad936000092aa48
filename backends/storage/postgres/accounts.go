package postgres

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// defaultLimit is the page size when a filter leaves Limit at 0.
const defaultLimit = 100

const selectAccount = `SELECT id, username, skeleton, account_type, status, password_hash, roles,
	totp_secret, totp_enabled, totp_last_step, created_at, updated_at, version FROM accounts`

type accountStore struct{ s *Store }

var _ storage.AccountStore = accountStore{}

func scanAccount(row pgx.Row) (storage.Account, error) {
	var (
		a           storage.Account
		typ, status string
	)
	if err := row.Scan(&a.ID, &a.Username, &a.Skeleton, &typ, &status, &a.PasswordHash, &a.Roles,
		&a.TOTPSecret, &a.TOTPEnabled, &a.TOTPLastStep, &a.CreatedAt, &a.UpdatedAt, &a.Version); err != nil {
		return storage.Account{}, err
	}
	a.Type = storage.AccountType(typ)
	a.Status = storage.AccountStatus(status)
	a.CreatedAt, a.UpdatedAt = utc(a.CreatedAt), utc(a.UpdatedAt)
	if len(a.TOTPSecret) == 0 {
		a.TOTPSecret = nil
	}
	if len(a.Roles) == 0 {
		a.Roles = nil
	}
	return a, nil
}

// normRoles returns roles sorted and without duplicates, never nil (a nil
// slice would be stored as NULL).
func normRoles(roles []string) ([]string, error) {
	out := slices.Clone(roles)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, r := range out {
		if r == "" {
			return nil, fmt.Errorf("%w: empty role", sdk.ErrInvalidArgument)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func validAccount(a storage.Account) error {
	switch {
	case a.ID == "":
		return fmt.Errorf("%w: empty account id", sdk.ErrInvalidArgument)
	case a.Username == "":
		return fmt.Errorf("%w: empty username", sdk.ErrInvalidArgument)
	case a.Skeleton == "":
		return fmt.Errorf("%w: empty username skeleton", sdk.ErrInvalidArgument)
	case a.Type != storage.Human && a.Type != storage.System:
		return fmt.Errorf("%w: account type %q", sdk.ErrInvalidArgument, a.Type)
	case a.Status != storage.Active && a.Status != storage.Inactive && a.Status != storage.Deleted:
		return fmt.Errorf("%w: account status %q", sdk.ErrInvalidArgument, a.Status)
	}
	return nil
}

// nullBytes stores an empty secret as NULL.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// CreateAccount implements storage.AccountStore.
func (st accountStore) CreateAccount(ctx context.Context, a storage.Account, ev audit.Event) error {
	op := "create account " + a.ID
	if err := validAccount(a); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if a.Version != 1 {
		return fmt.Errorf("postgres: %s: %w: version must be 1, got %d", op, sdk.ErrInvalidArgument, a.Version)
	}
	roles, err := normRoles(a.Roles)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	created := orNow(a.CreatedAt)
	updated := a.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	return st.s.write(ctx, op, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, username, skeleton, account_type, status,
			password_hash, roles, totp_secret, totp_enabled, totp_last_step, created_at, updated_at, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)`,
			a.ID, a.Username, a.Skeleton, string(a.Type), string(a.Status), a.PasswordHash, roles,
			nullBytes(a.TOTPSecret), a.TOTPEnabled, a.TOTPLastStep, created, updated); err != nil {
			return err
		}
		return insertEvent(ctx, tx, ev)
	})
}

// GetAccount implements storage.AccountStore.
func (st accountStore) GetAccount(ctx context.Context, id string) (storage.Account, error) {
	op := "get account " + id
	if err := st.s.read(op); err != nil {
		return storage.Account{}, err
	}
	a, err := scanAccount(st.s.pool.QueryRow(ctx, selectAccount+` WHERE id = $1`, id))
	if err != nil {
		return storage.Account{}, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return a, nil
}

// GetAccountByUsername implements storage.AccountStore.
func (st accountStore) GetAccountByUsername(ctx context.Context, username string) (storage.Account, error) {
	// The username is not echoed: it may be an unknown login attempt.
	const op = "get account by username"
	if err := st.s.read(op); err != nil {
		return storage.Account{}, err
	}
	a, err := scanAccount(st.s.pool.QueryRow(ctx, selectAccount+` WHERE username = $1 AND status <> 'deleted'`, username))
	if err != nil {
		return storage.Account{}, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return a, nil
}

// accountCursor is the position after the last account of a page.
type accountCursor struct {
	created time.Time
	id      string
}

func (c accountCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.created.UnixMicro(), 10) + ":" + c.id))
}

func decodeAccountCursor(s string) (accountCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return accountCursor{}, fmt.Errorf("%w: malformed cursor", sdk.ErrInvalidArgument)
	}
	num, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || id == "" {
		return accountCursor{}, fmt.Errorf("%w: malformed cursor", sdk.ErrInvalidArgument)
	}
	return accountCursor{created: bound(time.UnixMicro(n).UTC()), id: id}, nil
}

// args builds a parameter list and hands out its $n placeholders.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// ListAccounts implements storage.AccountStore.
func (st accountStore) ListAccounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, string, error) {
	const op = "list accounts"
	if err := st.s.read(op); err != nil {
		return nil, "", err
	}
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, "", fmt.Errorf("postgres: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultLimit
	}
	var (
		where []string
		p     args
	)
	if f.Type != "" {
		where = append(where, `account_type = `+p.add(string(f.Type)))
	}
	switch {
	case f.Status != "":
		where = append(where, `status = `+p.add(string(f.Status)))
	case !f.IncludeDeleted:
		where = append(where, `status <> 'deleted'`)
	}
	if f.Role != "" {
		where = append(where, `roles @> ARRAY[`+p.add(f.Role)+`::text]`)
	}
	if f.Cursor != "" {
		c, err := decodeAccountCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("postgres: %s: %w", op, err)
		}
		where = append(where, `(created_at, id) > (`+p.add(c.created)+`, `+p.add(c.id)+`)`)
	}
	q := selectAccount
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	// One extra row tells whether a next page exists.
	q += ` ORDER BY created_at, id LIMIT ` + p.add(limit+1)
	rows, err := st.s.pool.Query(ctx, q, p...)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Account, error) { return scanAccount(r) })
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = accountCursor{created: last.CreatedAt, id: last.ID}.encode()
	}
	return out, next, nil
}

// UpdateAccount implements storage.AccountStore.
func (st accountStore) UpdateAccount(ctx context.Context, a storage.Account, opts storage.UpdateOptions, ev audit.Event) (storage.Account, error) {
	op := "update account " + a.ID
	if err := validAccount(a); err != nil {
		return storage.Account{}, fmt.Errorf("postgres: %s: %w", op, err)
	}
	roles, err := normRoles(a.Roles)
	if err != nil {
		return storage.Account{}, fmt.Errorf("postgres: %s: %w", op, err)
	}
	updated := orNow(a.UpdatedAt)
	var out storage.Account
	err = st.s.write(ctx, op, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET username = $1, skeleton = $2, status = $3,
			password_hash = $4, roles = $5, totp_secret = $6, totp_enabled = $7, totp_last_step = $8,
			updated_at = $9, version = version + 1
			WHERE id = $10 AND version = $11`,
			a.Username, a.Skeleton, string(a.Status), a.PasswordHash, roles, nullBytes(a.TOTPSecret),
			a.TOTPEnabled, a.TOTPLastStep, updated, a.ID, a.Version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`, a.ID).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return sdk.ErrNotFound
			}
			return fmt.Errorf("%w: version %d is stale", sdk.ErrConflict, a.Version)
		}
		if a.Status == storage.Deleted {
			if _, err := tx.Exec(ctx, `DELETE FROM pg_creds WHERE account_id = $1`, a.ID); err != nil {
				return err
			}
		}
		if opts.KeepActiveAdmin {
			// Every writer holds the write lock, so this sees every
			// committed change and none can commit before this one.
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts
				WHERE status = 'active' AND roles @> ARRAY['admin'::text])`).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: no active admin would remain", sdk.ErrPrecondition)
			}
		}
		if opts.RevokeTokens {
			if _, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = $1, revoke_reason = $2
				WHERE account_id = $3 AND revoked_at IS NULL AND expires_at > $1 AND jti <> $4`,
				updated, opts.RevokeReason, a.ID, opts.KeepJTI); err != nil {
				return err
			}
		}
		if err := notify(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		out, err = scanAccount(tx.QueryRow(ctx, selectAccount+` WHERE id = $1`, a.ID))
		return err
	})
	if err != nil {
		return storage.Account{}, err
	}
	return out, nil
}

// CountAccounts implements storage.AccountStore.
func (st accountStore) CountAccounts(ctx context.Context) (int, error) {
	const op = "count accounts"
	if err := st.s.read(op); err != nil {
		return 0, err
	}
	var n int
	if err := st.s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return n, nil
}
