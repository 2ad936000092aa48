package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectPGCreds = `SELECT account_id, host, port, dbname, username, password, updated_at, version
	FROM pg_creds`

type credentialStore struct{ s *Store }

var _ storage.CredentialStore = credentialStore{}

func scanPGCreds(row pgx.Row) (storage.PGCreds, error) {
	var c storage.PGCreds
	if err := row.Scan(&c.AccountID, &c.Host, &c.Port, &c.Database, &c.Username,
		&c.Password, &c.UpdatedAt, &c.Version); err != nil {
		return storage.PGCreds{}, err
	}
	c.UpdatedAt = utc(c.UpdatedAt)
	return c, nil
}

// GetPGCreds implements storage.CredentialStore.
func (st credentialStore) GetPGCreds(ctx context.Context, accountID string) (storage.PGCreds, error) {
	op := "get pgcreds " + accountID
	if err := st.s.read(op); err != nil {
		return storage.PGCreds{}, err
	}
	c, err := scanPGCreds(st.s.pool.QueryRow(ctx, selectPGCreds+` WHERE account_id = $1`, accountID))
	if err != nil {
		return storage.PGCreds{}, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return c, nil
}

// PutPGCreds implements storage.CredentialStore.
func (st credentialStore) PutPGCreds(ctx context.Context, c storage.PGCreds, ev audit.Event) (storage.PGCreds, error) {
	op := "put pgcreds " + c.AccountID
	switch {
	case c.AccountID == "":
		return storage.PGCreds{}, fmt.Errorf("postgres: %s: %w: empty account id", op, sdk.ErrInvalidArgument)
	case c.Version < 0:
		return storage.PGCreds{}, fmt.Errorf("postgres: %s: %w: negative version", op, sdk.ErrInvalidArgument)
	case c.Password == nil:
		// A nil sealed password can only be a caller bug.
		return storage.PGCreds{}, fmt.Errorf("postgres: %s: %w: no password", op, sdk.ErrInvalidArgument)
	}
	c.UpdatedAt = orNow(c.UpdatedAt)
	var out storage.PGCreds
	err := st.s.write(ctx, op, func(tx pgx.Tx) error {
		if c.Version == 0 {
			// The primary key refuses a second credential (conflict), the
			// foreign key an unknown account (not found).
			if _, err := tx.Exec(ctx, `INSERT INTO pg_creds (account_id, host, port, dbname,
				username, password, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)`,
				c.AccountID, c.Host, c.Port, c.Database, c.Username, c.Password, c.UpdatedAt); err != nil {
				return err
			}
		} else {
			tag, err := tx.Exec(ctx, `UPDATE pg_creds SET host = $1, port = $2, dbname = $3,
				username = $4, password = $5, updated_at = $6, version = version + 1
				WHERE account_id = $7 AND version = $8`,
				c.Host, c.Port, c.Database, c.Username, c.Password, c.UpdatedAt, c.AccountID, c.Version)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				var exists bool
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`,
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
		out, err = scanPGCreds(tx.QueryRow(ctx, selectPGCreds+` WHERE account_id = $1`, c.AccountID))
		return err
	})
	if err != nil {
		return storage.PGCreds{}, err
	}
	return out, nil
}
