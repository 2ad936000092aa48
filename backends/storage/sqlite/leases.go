package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

var _ storage.Leaser = (*Store)(nil)

// acquireLease takes a free or expired lease, or renews the holder's own:
// the upsert changes the row only when the WHERE holds, and returns no
// row when it does not. ?1 name, ?2 holder, ?3 now, ?4 expiry (unix ns).
const acquireLease = `
INSERT INTO leases (name, holder, expires_ns) VALUES (?1, ?2, ?4)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ns = excluded.expires_ns
    WHERE leases.holder = excluded.holder OR leases.expires_ns <= ?3
RETURNING holder`

// AcquireLease implements storage.Leaser. It runs in a write transaction,
// which every process on the file takes in turn; the clock is this
// host's, which every process on one file shares.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	const op = "acquire lease"
	if err := checkLease(name, holder); err != nil {
		return false, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("sqlite: %s: %w: ttl not above zero", op, sdk.ErrInvalidArgument)
	}
	acquired := false
	err := s.write(ctx, op+" "+name, func(tx *sql.Tx) error {
		now := time.Now().UnixNano()
		var got string
		err := tx.QueryRowContext(ctx, acquireLease, name, holder, now, now+int64(ttl)).Scan(&got)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		acquired = true
		return nil
	})
	return acquired, err
}

// ReleaseLease implements storage.Leaser.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	const op = "release lease"
	if err := checkLease(name, holder); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return s.write(ctx, op+" "+name, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
}

func checkLease(name, holder string) error {
	if err := storage.CheckName("lease name", name); err != nil {
		return err
	}
	return storage.CheckName("lease holder", holder)
}
