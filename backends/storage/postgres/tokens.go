package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectToken = `SELECT jti, account_id, kind, audience, kid, issued_at, expires_at,
	revoked_at, revoke_reason FROM tokens`

type tokenStore struct{ s *Store }

var _ storage.TokenStore = tokenStore{}

func scanToken(row pgx.Row) (storage.Token, error) {
	var (
		t       storage.Token
		kind    string
		revoked *time.Time
	)
	if err := row.Scan(&t.JTI, &t.AccountID, &kind, &t.Audience, &t.KID,
		&t.IssuedAt, &t.ExpiresAt, &revoked, &t.RevokeReason); err != nil {
		return storage.Token{}, err
	}
	t.Kind = storage.TokenKind(kind)
	t.IssuedAt, t.ExpiresAt = utc(t.IssuedAt), utc(t.ExpiresAt)
	if revoked != nil {
		t.RevokedAt = utc(*revoked)
	}
	return t, nil
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// CreateToken implements storage.TokenStore.
func (st tokenStore) CreateToken(ctx context.Context, t storage.Token, replaces string, ev audit.Event) error {
	op := "create token " + t.JTI
	switch {
	case t.JTI == "":
		return fmt.Errorf("postgres: %s: %w: empty jti", op, sdk.ErrInvalidArgument)
	case t.AccountID == "":
		return fmt.Errorf("postgres: %s: %w: empty account id", op, sdk.ErrInvalidArgument)
	case t.Kind != storage.Session && t.Kind != storage.Service:
		return fmt.Errorf("postgres: %s: %w: token kind %q", op, sdk.ErrInvalidArgument, t.Kind)
	case t.ExpiresAt.IsZero():
		return fmt.Errorf("postgres: %s: %w: no expiry", op, sdk.ErrInvalidArgument)
	case replaces == t.JTI:
		return fmt.Errorf("postgres: %s: %w: a token cannot replace itself", op, sdk.ErrInvalidArgument)
	}
	issued := orNow(t.IssuedAt)
	return st.s.write(ctx, op, func(tx pgx.Tx) error {
		if replaces != "" {
			tag, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = $1, revoke_reason = 'renew'
				WHERE jti = $2 AND account_id = $3 AND revoked_at IS NULL`, issued, replaces, t.AccountID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				var owner string
				err := tx.QueryRow(ctx, `SELECT account_id FROM tokens WHERE jti = $1`, replaces).Scan(&owner)
				switch {
				case errors.Is(err, pgx.ErrNoRows):
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
		if replaces != "" {
			if err := notify(ctx, tx, t.AccountID); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tokens (jti, account_id, kind, audience, kid,
			issued_at, expires_at, revoked_at, revoke_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.JTI, t.AccountID, string(t.Kind), t.Audience, t.KID, issued, t.ExpiresAt,
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
	t, err := scanToken(st.s.pool.QueryRow(ctx, selectToken+` WHERE jti = $1`, jti))
	if err != nil {
		return storage.Token{}, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return t, nil
}

// RevokeToken implements storage.TokenStore.
func (st tokenStore) RevokeToken(ctx context.Context, jti string, at time.Time, reason string, ev audit.Event) error {
	op := "revoke token " + jti
	at = orNow(at)
	return st.s.write(ctx, op, func(tx pgx.Tx) error {
		// The first revocation wins; a second one only records its event.
		var owner string
		err := tx.QueryRow(ctx, `UPDATE tokens SET revoked_at = $1, revoke_reason = $2
			WHERE jti = $3 AND revoked_at IS NULL RETURNING account_id`, at, reason, jti).Scan(&owner)
		switch {
		case err == nil:
			if err := notify(ctx, tx, owner); err != nil {
				return err
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		default:
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokens WHERE jti = $1)`, jti).Scan(&exists); err != nil {
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
		return nil, fmt.Errorf("postgres: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	}
	var (
		where []string
		p     args
	)
	if f.AccountID != "" {
		where = append(where, `account_id = `+p.add(f.AccountID))
	}
	if f.RevokedOnly {
		where = append(where, `revoked_at IS NOT NULL`)
	}
	if !f.ExpiresAfter.IsZero() {
		where = append(where, `expires_at > `+p.add(bound(f.ExpiresAfter)))
	}
	if !f.RevokedAfter.IsZero() {
		where = append(where, `revoked_at > `+p.add(bound(f.RevokedAfter)))
	}
	if f.KID != "" {
		where = append(where, `kid = `+p.add(f.KID))
	}
	q := selectToken
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY issued_at, jti`
	if f.Limit > 0 {
		q += ` LIMIT ` + p.add(f.Limit)
	}
	rows, err := st.s.pool.Query(ctx, q, p...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return out, nil
}

// PruneTokens implements storage.TokenStore.
func (st tokenStore) PruneTokens(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := st.s.write(ctx, "prune tokens", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE expires_at < $1`, bound(before))
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}
