package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

var _ storage.Leaser = (*Store)(nil)

// acquireLease takes a free or expired lease, or renews the holder's own,
// in one statement: the upsert changes the row only when the WHERE holds
// and returns no row when it does not. Under READ COMMITTED a concurrent
// acquirer waits for the row lock and re-checks the WHERE against the
// committed row, so of two contenders one wins. Expiry is the database
// clock's (now()), so the nodes' clocks do not matter. $1 name, $2
// holder, $3 ttl in microseconds.
const acquireLease = `
INSERT INTO leases AS l (name, holder, expires_at)
VALUES ($1, $2, now() + $3 * interval '1 microsecond')
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
RETURNING holder`

// AcquireLease implements storage.Leaser.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	const op = "acquire lease"
	if err := checkLease(name, holder); err != nil {
		return false, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("postgres: %s: %w: ttl not above zero", op, sdk.ErrInvalidArgument)
	}
	if err := s.read(op); err != nil {
		return false, err
	}
	// Round up so a ttl below a microsecond still lasts a moment.
	micros := (ttl + time.Microsecond - 1) / time.Microsecond
	var got string
	err := s.pool.QueryRow(ctx, acquireLease, name, holder, int64(micros)).Scan(&got)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("postgres: %s %q: %w", op, name, classify(err))
	}
	return true, nil
}

// ReleaseLease implements storage.Leaser.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	const op = "release lease"
	if err := checkLease(name, holder); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if err := s.read(op); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("postgres: %s %q: %w", op, name, classify(err))
	}
	return nil
}

func checkLease(name, holder string) error {
	if err := storage.CheckName("lease name", name); err != nil {
		return err
	}
	return storage.CheckName("lease holder", holder)
}
