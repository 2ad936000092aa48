package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"unicode"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// maxPGField bounds each text field of a Postgres credential.
const maxPGField = 255

// GetPGCreds returns an account's Postgres credential with the password
// in clear. The read is audited (without the password); if the event
// cannot be stored the credential is not returned.
func (s *Service) GetPGCreds(ctx context.Context, c Caller, accountID string) (PGCreds, error) {
	accountID = canonicalID(accountID)
	if err := requireAdmin(c); err != nil {
		return PGCreds{}, err
	}
	if _, err := s.getLiveAccount(ctx, accountID); err != nil {
		return PGCreds{}, err
	}
	pc, err := s.store.Credentials().GetPGCreds(ctx, accountID)
	if errors.Is(err, sdk.ErrNotFound) {
		return PGCreds{}, newError(sdk.ErrNotFound, "the account has no Postgres credential")
	}
	if err != nil {
		return PGCreds{}, fmt.Errorf("core: get pgcreds: %w", err)
	}
	pw, err := s.cust.Decrypt(ctx, pc.Password, pgcredsAAD(accountID))
	if err != nil {
		return PGCreds{}, fmt.Errorf("core: get pgcreds: open password: %w", err)
	}
	ev := s.event(c, audit.PGCredsRead, accountID, audit.Success, pgDetails(pc.Host, pc.Port, pc.Database, pc.Username))
	if err := s.appendEvent(ctx, ev); err != nil {
		return PGCreds{}, fmt.Errorf("core: get pgcreds: %w", err)
	}
	return PGCreds{Host: pc.Host, Port: pc.Port, Database: pc.Database, Username: pc.Username, Password: string(pw)}, nil
}

// SetPGCreds creates or replaces an account's Postgres credential; the
// password is sealed by custody before storage sees it.
func (s *Service) SetPGCreds(ctx context.Context, c Caller, accountID string, pc PGCreds) error {
	accountID = canonicalID(accountID)
	if err := requireAdmin(c); err != nil {
		return err
	}
	if err := checkPGCreds(pc); err != nil {
		return err
	}
	if _, err := s.getLiveAccount(ctx, accountID); err != nil {
		return err
	}
	sealed, err := s.cust.Encrypt(ctx, []byte(pc.Password), pgcredsAAD(accountID))
	if err != nil {
		return fmt.Errorf("core: set pgcreds: seal password: %w", err)
	}
	for attempt := 0; attempt < casAttempts; attempt++ {
		var version int64
		old, err := s.store.Credentials().GetPGCreds(ctx, accountID)
		switch {
		case err == nil:
			version = old.Version
		case errors.Is(err, sdk.ErrNotFound):
			version = 0
		default:
			return fmt.Errorf("core: set pgcreds: %w", err)
		}
		ev := s.event(c, audit.PGCredsWrite, accountID, audit.Success, pgDetails(pc.Host, pc.Port, pc.Database, pc.Username))
		_, err = s.store.Credentials().PutPGCreds(ctx, storage.PGCreds{
			AccountID: accountID,
			Host:      pc.Host,
			Port:      pc.Port,
			Database:  pc.Database,
			Username:  pc.Username,
			Password:  sealed,
			UpdatedAt: s.now().UTC(),
			Version:   version,
		}, ev)
		switch {
		case err == nil:
			s.pokeSinks()
			return nil
		case errors.Is(err, sdk.ErrConflict):
			continue
		case errors.Is(err, sdk.ErrNotFound):
			return newError(sdk.ErrNotFound, msgNoAccount)
		default:
			return fmt.Errorf("core: set pgcreds: %w", err)
		}
	}
	return newError(sdk.ErrConflict, "the credential was changed concurrently; try again")
}

func pgDetails(host string, port int, db, user string) map[string]string {
	return map[string]string{"host": host, "port": strconv.Itoa(port), "database": db, "username": user}
}

func checkPGCreds(pc PGCreds) error {
	fields := []struct{ name, v string }{
		{"host", pc.Host}, {"database", pc.Database}, {"username", pc.Username},
	}
	for _, f := range fields {
		if f.v == "" || len(f.v) > maxPGField {
			return invalid(fmt.Sprintf("%s must be 1-%d bytes", f.name, maxPGField))
		}
		for _, r := range f.v {
			if unicode.IsControl(r) || r == unicode.ReplacementChar {
				return invalid(f.name + " must be printable text")
			}
		}
	}
	if pc.Port < 1 || pc.Port > 65535 {
		return invalid("port must be between 1 and 65535")
	}
	if pc.Password == "" || len(pc.Password) > MaxPasswordBytes {
		return invalid(fmt.Sprintf("password must be 1-%d bytes", MaxPasswordBytes))
	}
	return nil
}
