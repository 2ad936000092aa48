package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectToken = `SELECT jti, account_id, kind, audience, kid, issued_at, expires_at,
	revoked_at, revoke_reason FROM tokens`

type tokenStore struct{ s *Store }

var _ storage.TokenStore = tokenStore{}

func scanToken(row rowScanner) (storage.Token, error) {
	var (
		t               storage.Token
		kind            string
		issued, expires int64
		revoked         sql.NullInt64
	)
	if err := row.Scan(&t.JTI, &t.AccountID, &kind, &t.Audience, &t.KID,
		&issued, &expires, &revoked, &t.RevokeReason); err != nil {
		return storage.Token{}, err
	}
	t.Kind = storage.TokenKind(kind)
	t.IssuedAt = fromNanos(issued)
	t.ExpiresAt = fromNanos(expires)
	if revoked.Valid {
		t.RevokedAt = fromNanos(revoked.Int64)
	}
	return t, nil
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// CreateToken implements storage.TokenStore.
func (st tokenStore) CreateToken(ctx context.Context, t storage.Token, replaces string, ev audit.Event) error {
	op := "create token " + t.JTI
	switch {
	case t.JTI == "":
		return fmt.Errorf("sqlite: %s: %w: empty jti", op, sdk.ErrInvalidArgument)
	case t.AccountID == "":
		return fmt.Errorf("sqlite: %s: %w: empty account id", op, sdk.ErrInvalidArgument)
	case t.Kind != storage.Session && t.Kind != storage.Service:
		return fmt.Errorf("sqlite: %s: %w: token kind %q", op, sdk.ErrInvalidArgument, t.Kind)
	case t.ExpiresAt.IsZero():
		return fmt.Errorf("sqlite: %s: %w: no expiry", op, sdk.ErrInvalidArgument)
	case replaces == t.JTI:
		return fmt.Errorf("sqlite: %s: %w: a token cannot replace itself", op, sdk.ErrInvalidArgument)
	}
	issued := orNow(t.IssuedAt)
	return st.s.write(ctx, op, func(tx *sql.Tx) error {
		if replaces != "" {
			res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ?, revoke_reason = 'renew'
				WHERE jti = ? AND account_id = ? AND revoked_at IS NULL`,
				nanos(issued), replaces, t.AccountID)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				var owner string
				err := tx.QueryRowContext(ctx, `SELECT account_id FROM tokens WHERE jti = ?`, replaces).Scan(&owner)
				switch {
				case err == sql.ErrNoRows:
					return fmt.Errorf("%w: replaced token %s", sdk.ErrNotFound, replaces)
				case err != nil:
					return err
				case owner != t.AccountID:
					return fmt.Errorf("%w: replaced token %s belongs to another account", sdk.ErrConflict, replaces)
				default:
					return fmt.Errorf("%w: replaced token %s is already revoked", sdk.ErrConflict, replaces)
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (jti, account_id, kind, audience, kid,
			issued_at, expires_at, revoked_at, revoke_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.JTI, t.AccountID, string(t.Kind), t.Audience, t.KID, nanos(issued), nanos(t.ExpiresAt),
			nullTime(t.RevokedAt), t.RevokeReason); err != nil {
			return err
		}
		return insertEvent(ctx, tx, ev)
	})
}

// GetToken implements storage.TokenStore.
func (st tokenStore) GetToken(ctx context.Context, jti string) (storage.Token, error) {
	op := "get token " + jti
	if err := st.s.read(op); err != nil {
		return storage.Token{}, err
	}
	t, err := scanToken(st.s.stmtGetToken.QueryRowContext(ctx, jti))
	if err != nil {
		return storage.Token{}, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return t, nil
}

// RevokeToken implements storage.TokenStore.
func (st tokenStore) RevokeToken(ctx context.Context, jti string, at time.Time, reason string, ev audit.Event) error {
	op := "revoke token " + jti
	at = orNow(at)
	return st.s.write(ctx, op, func(tx *sql.Tx) error {
		// The first revocation wins; a second one only records its event.
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ?, revoke_reason = ?
			WHERE jti = ? AND revoked_at IS NULL`, nanos(at), reason, jti)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var exists bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tokens WHERE jti = ?)`, jti).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return sdk.ErrNotFound
			}
		}
		return insertEvent(ctx, tx, ev)
	})
}

// ListTokens implements storage.TokenStore.
func (st tokenStore) ListTokens(ctx context.Context, f storage.TokenFilter) ([]storage.Token, error) {
	const op = "list tokens"
	if err := st.s.read(op); err != nil {
		return nil, err
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("sqlite: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	}
	var (
		where []string
		args  []any
	)
	if f.AccountID != "" {
		where = append(where, `account_id = ?`)
		args = append(args, f.AccountID)
	}
	if f.RevokedOnly {
		where = append(where, `revoked_at IS NOT NULL`)
	}
	if !f.ExpiresAfter.IsZero() {
		where = append(where, `expires_at > ?`)
		args = append(args, boundNanos(f.ExpiresAfter))
	}
	if !f.RevokedAfter.IsZero() {
		where = append(where, `revoked_at > ?`)
		args = append(args, boundNanos(f.RevokedAfter))
	}
	if f.KID != "" {
		where = append(where, `kid = ?`)
		args = append(args, f.KID)
	}
	q := selectToken
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY issued_at, jti`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := st.s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	defer rows.Close()
	var out []storage.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", op, classify(err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return out, nil
}

// PruneTokens implements storage.TokenStore.
func (st tokenStore) PruneTokens(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := st.s.write(ctx, "prune tokens", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE expires_at < ?`, nanos(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
