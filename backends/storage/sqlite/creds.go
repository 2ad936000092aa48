package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectPGCreds = `SELECT account_id, host, port, dbname, username, password, updated_at, version
	FROM pg_creds`

type credentialStore struct{ s *Store }

var _ storage.CredentialStore = credentialStore{}

func scanPGCreds(row rowScanner) (storage.PGCreds, error) {
	var (
		c       storage.PGCreds
		updated int64
	)
	if err := row.Scan(&c.AccountID, &c.Host, &c.Port, &c.Database, &c.Username,
		&c.Password, &updated, &c.Version); err != nil {
		return storage.PGCreds{}, err
	}
	c.UpdatedAt = fromNanos(updated)
	return c, nil
}

// GetPGCreds implements storage.CredentialStore.
func (st credentialStore) GetPGCreds(ctx context.Context, accountID string) (storage.PGCreds, error) {
	op := "get pgcreds " + accountID
	if err := st.s.read(op); err != nil {
		return storage.PGCreds{}, err
	}
	c, err := scanPGCreds(st.s.stmtGetPGCreds.QueryRowContext(ctx, accountID))
	if err != nil {
		return storage.PGCreds{}, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return c, nil
}

// PutPGCreds implements storage.CredentialStore.
func (st credentialStore) PutPGCreds(ctx context.Context, c storage.PGCreds, ev audit.Event) (storage.PGCreds, error) {
	op := "put pgcreds " + c.AccountID
	switch {
	case c.AccountID == "":
		return storage.PGCreds{}, fmt.Errorf("sqlite: %s: %w: empty account id", op, sdk.ErrInvalidArgument)
	case c.Version < 0:
		return storage.PGCreds{}, fmt.Errorf("sqlite: %s: %w: negative version", op, sdk.ErrInvalidArgument)
	case c.Password == nil:
		// A nil sealed password can only be a caller bug.
		return storage.PGCreds{}, fmt.Errorf("sqlite: %s: %w: no password", op, sdk.ErrInvalidArgument)
	}
	c.UpdatedAt = orNow(c.UpdatedAt)
	var out storage.PGCreds
	err := st.s.write(ctx, op, func(tx *sql.Tx) error {
		if c.Version == 0 {
			// The primary key refuses a second credential (conflict), the
			// foreign key an unknown account (not found).
			if _, err := tx.ExecContext(ctx, `INSERT INTO pg_creds (account_id, host, port, dbname,
				username, password, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, 1)`,
				c.AccountID, c.Host, c.Port, c.Database, c.Username, c.Password, nanos(c.UpdatedAt)); err != nil {
				return err
			}
		} else {
			res, err := tx.ExecContext(ctx, `UPDATE pg_creds SET host = ?, port = ?, dbname = ?,
				username = ?, password = ?, updated_at = ?, version = version + 1
				WHERE account_id = ? AND version = ?`,
				c.Host, c.Port, c.Database, c.Username, c.Password, nanos(c.UpdatedAt), c.AccountID, c.Version)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				var exists bool
				if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?)`,
					c.AccountID).Scan(&exists); err != nil {
					return err
				}
				if !exists {
					return fmt.Errorf("%w: account %s", sdk.ErrNotFound, c.AccountID)
				}
				return fmt.Errorf("%w: version %d is stale", sdk.ErrConflict, c.Version)
			}
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		var err error
		out, err = scanPGCreds(tx.QueryRowContext(ctx, selectPGCreds+` WHERE account_id = ?`, c.AccountID))
		return err
	})
	if err != nil {
		return storage.PGCreds{}, err
	}
	return out, nil
}
