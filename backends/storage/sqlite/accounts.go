package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// defaultLimit is the page size when a filter leaves Limit at 0.
const defaultLimit = 100

// selectAccount reads an account and its roles in one statement, so a
// read needs no transaction to be consistent.
const selectAccount = `SELECT a.id, a.username, a.skeleton, a.account_type, a.status,
	a.password_hash, a.totp_secret, a.totp_enabled, a.totp_last_step,
	a.created_at, a.updated_at, a.version,
	(SELECT json_group_array(r.role) FROM account_roles r WHERE r.account_id = a.id)
FROM accounts a`

type accountStore struct{ s *Store }

var _ storage.AccountStore = accountStore{}

type rowScanner interface{ Scan(dest ...any) error }

func scanAccount(row rowScanner) (storage.Account, error) {
	var (
		a                  storage.Account
		typ, status, roles string
		created, updated   int64
	)
	if err := row.Scan(&a.ID, &a.Username, &a.Skeleton, &typ, &status,
		&a.PasswordHash, &a.TOTPSecret, &a.TOTPEnabled, &a.TOTPLastStep,
		&created, &updated, &a.Version, &roles); err != nil {
		return storage.Account{}, err
	}
	a.Type = storage.AccountType(typ)
	a.Status = storage.AccountStatus(status)
	a.CreatedAt = fromNanos(created)
	a.UpdatedAt = fromNanos(updated)
	if len(a.TOTPSecret) == 0 {
		a.TOTPSecret = nil
	}
	if err := json.Unmarshal([]byte(roles), &a.Roles); err != nil {
		return storage.Account{}, fmt.Errorf("%w: roles of account %s: %v", sdk.ErrInternal, a.ID, err)
	}
	if len(a.Roles) == 0 {
		a.Roles = nil
	}
	slices.Sort(a.Roles)
	return a, nil
}

// normRoles returns roles sorted and without duplicates.
func normRoles(roles []string) ([]string, error) {
	out := slices.Clone(roles)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, r := range out {
		if r == "" {
			return nil, fmt.Errorf("%w: empty role", sdk.ErrInvalidArgument)
		}
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

// nullBlob stores an empty secret as NULL.
func nullBlob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func insertRoles(ctx context.Context, tx *sql.Tx, id string, roles []string) error {
	for _, r := range roles {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO account_roles (account_id, role) VALUES (?, ?)`, id, r); err != nil {
			return err
		}
	}
	return nil
}

// CreateAccount implements storage.AccountStore.
func (st accountStore) CreateAccount(ctx context.Context, a storage.Account, ev audit.Event) error {
	op := "create account " + a.ID
	if err := validAccount(a); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if a.Version != 1 {
		return fmt.Errorf("sqlite: %s: %w: version must be 1, got %d", op, sdk.ErrInvalidArgument, a.Version)
	}
	roles, err := normRoles(a.Roles)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	created := orNow(a.CreatedAt)
	updated := a.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	return st.s.write(ctx, op, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, username, skeleton, account_type,
			status, password_hash, totp_secret, totp_enabled, totp_last_step, created_at, updated_at, version)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			a.ID, a.Username, a.Skeleton, string(a.Type), string(a.Status), a.PasswordHash,
			nullBlob(a.TOTPSecret), a.TOTPEnabled, a.TOTPLastStep, nanos(created), nanos(updated),
		); err != nil {
			return err
		}
		if err := insertRoles(ctx, tx, a.ID, roles); err != nil {
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
	a, err := scanAccount(st.s.stmtGetAccount.QueryRowContext(ctx, id))
	if err != nil {
		return storage.Account{}, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return a, nil
}

// GetAccountByUsername implements storage.AccountStore.
func (st accountStore) GetAccountByUsername(ctx context.Context, username string) (storage.Account, error) {
	// The username is not echoed: it may be an unknown login attempt.
	op := "get account by username"
	if err := st.s.read(op); err != nil {
		return storage.Account{}, err
	}
	a, err := scanAccount(st.s.stmtGetAccountByName.QueryRowContext(ctx, username))
	if err != nil {
		return storage.Account{}, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return a, nil
}

// accountCursor is the position after the last account of a page.
type accountCursor struct {
	created int64
	id      string
}

func (c accountCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.created, 10) + ":" + c.id))
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
	return accountCursor{created: n, id: id}, nil
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
		return nil, "", fmt.Errorf("sqlite: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultLimit
	}
	var (
		where []string
		args  []any
	)
	if f.Type != "" {
		where = append(where, `a.account_type = ?`)
		args = append(args, string(f.Type))
	}
	switch {
	case f.Status != "":
		where = append(where, `a.status = ?`)
		args = append(args, string(f.Status))
	case !f.IncludeDeleted:
		where = append(where, `a.status != 'deleted'`)
	}
	if f.Role != "" {
		where = append(where, `EXISTS (SELECT 1 FROM account_roles r WHERE r.account_id = a.id AND r.role = ?)`)
		args = append(args, f.Role)
	}
	if f.Cursor != "" {
		c, err := decodeAccountCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: %s: %w", op, err)
		}
		where = append(where, `(a.created_at, a.id) > (?, ?)`)
		args = append(args, c.created, c.id)
	}
	q := selectAccount
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	// One extra row tells whether a next page exists.
	q += ` ORDER BY a.created_at, a.id LIMIT ?`
	args = append(args, limit+1)

	rows, err := st.s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	defer rows.Close()
	var out []storage.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: %s: %w", op, classify(err))
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = accountCursor{created: nanos(last.CreatedAt), id: last.ID}.encode()
	}
	return out, next, nil
}

// UpdateAccount implements storage.AccountStore.
func (st accountStore) UpdateAccount(ctx context.Context, a storage.Account, opts storage.UpdateOptions, ev audit.Event) (storage.Account, error) {
	op := "update account " + a.ID
	if err := validAccount(a); err != nil {
		return storage.Account{}, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	roles, err := normRoles(a.Roles)
	if err != nil {
		return storage.Account{}, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	updated := orNow(a.UpdatedAt)
	var out storage.Account
	err = st.s.write(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET username = ?, skeleton = ?, status = ?,
			password_hash = ?, totp_secret = ?, totp_enabled = ?, totp_last_step = ?,
			updated_at = ?, version = version + 1
			WHERE id = ? AND version = ?`,
			a.Username, a.Skeleton, string(a.Status), a.PasswordHash, nullBlob(a.TOTPSecret),
			a.TOTPEnabled, a.TOTPLastStep, nanos(updated), a.ID, a.Version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var exists bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?)`, a.ID).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return sdk.ErrNotFound
			}
			return fmt.Errorf("%w: version %d is stale", sdk.ErrConflict, a.Version)
		}
		if err := replaceRoles(ctx, tx, a.ID, roles); err != nil {
			return err
		}
		if a.Status == storage.Deleted {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pg_creds WHERE account_id = ?`, a.ID); err != nil {
				return err
			}
		}
		if opts.KeepActiveAdmin {
			var ok bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM account_roles r
				JOIN accounts x ON x.id = r.account_id
				WHERE r.role = 'admin' AND x.status = 'active')`).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: no active admin would remain", sdk.ErrPrecondition)
			}
		}
		if opts.RevokeTokens {
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ?, revoke_reason = ?
				WHERE account_id = ? AND revoked_at IS NULL AND expires_at > ? AND jti != ?`,
				nanos(updated), opts.RevokeReason, a.ID, nanos(updated), opts.KeepJTI); err != nil {
				return err
			}
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		out, err = scanAccount(tx.QueryRowContext(ctx, selectAccount+` WHERE a.id = ?`, a.ID))
		return err
	})
	if err != nil {
		return storage.Account{}, err
	}
	return out, nil
}

// replaceRoles makes the account's roles exactly roles, touching only the
// rows that differ.
func replaceRoles(ctx context.Context, tx *sql.Tx, id string, roles []string) error {
	rows, err := tx.QueryContext(ctx, `SELECT role FROM account_roles WHERE account_id = ?`, id)
	if err != nil {
		return err
	}
	var old []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return err
		}
		old = append(old, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, r := range old {
		if _, keep := slices.BinarySearch(roles, r); keep {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM account_roles WHERE account_id = ? AND role = ?`, id, r); err != nil {
			return err
		}
	}
	var add []string
	for _, r := range roles {
		if !slices.Contains(old, r) {
			add = append(add, r)
		}
	}
	return insertRoles(ctx, tx, id, add)
}

// CountAccounts implements storage.AccountStore.
func (st accountStore) CountAccounts(ctx context.Context) (int, error) {
	const op = "count accounts"
	if err := st.s.read(op); err != nil {
		return 0, err
	}
	var n int
	if err := st.s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return n, nil
}
