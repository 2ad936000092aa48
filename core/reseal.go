package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// ResealReport says what Reseal did.
type ResealReport struct {
	TOTP, PGCreds int // secrets moved from the old custodian to the new one
	Already       int // secrets the new custodian already opened (an earlier run)
}

// Reseal moves every secret at rest (TOTP secrets, Postgres passwords)
// from custodian from to custodian to: each is opened by from and sealed
// again by to, with the same associated data, and written back with its
// version checked and an audit event (account_update or pgcreds_write,
// detail resealed=true). It is the secrets half of moving a deployment
// from one custodian to another (local custody to an HSM); run it with
// the server stopped. It is idempotent: a secret that to already opens
// is left alone, so an interrupted run can simply be repeated. No secret
// is logged or put in an event.
func Reseal(ctx context.Context, store storage.Store, from, to custody.Custodian, now func() time.Time) (ResealReport, error) {
	if now == nil {
		now = time.Now
	}
	var rep ResealReport
	move := func(sealed, aad []byte) ([]byte, bool, error) {
		if pt, err := to.Decrypt(ctx, sealed, aad); err == nil {
			clear(pt)
			return nil, false, nil
		}
		pt, err := from.Decrypt(ctx, sealed, aad)
		if err != nil {
			return nil, false, fmt.Errorf("the old custodian cannot open it either: %w", err)
		}
		defer clear(pt)
		out, err := to.Encrypt(ctx, pt, aad)
		return out, true, err
	}
	event := func(typ audit.Type, accountID string) audit.Event {
		return audit.Event{ID: uuid.NewString(), Time: now().UTC(), Type: typ, AccountID: accountID,
			Outcome: audit.Success, Details: map[string]string{"resealed": "true"}}
	}
	cursor := ""
	for {
		page, next, err := store.Accounts().ListAccounts(ctx, storage.AccountFilter{IncludeDeleted: true, Limit: 100, Cursor: cursor})
		if err != nil {
			return rep, fmt.Errorf("core: reseal: list accounts: %w", err)
		}
		for _, a := range page {
			if len(a.TOTPSecret) > 0 {
				sealed, moved, err := move(a.TOTPSecret, totpAAD(a.ID))
				if err != nil {
					return rep, fmt.Errorf("core: reseal: TOTP secret of account %s: %w", a.ID, err)
				}
				if !moved {
					rep.Already++
				} else {
					a.TOTPSecret = sealed
					if _, err := store.Accounts().UpdateAccount(ctx, a, storage.UpdateOptions{}, event(audit.AccountUpdate, a.ID)); err != nil {
						return rep, fmt.Errorf("core: reseal: store TOTP secret of account %s: %w", a.ID, err)
					}
					rep.TOTP++
				}
			}
			pc, err := store.Credentials().GetPGCreds(ctx, a.ID)
			if errors.Is(err, sdk.ErrNotFound) {
				continue
			}
			if err != nil {
				return rep, fmt.Errorf("core: reseal: read Postgres credential of account %s: %w", a.ID, err)
			}
			sealed, moved, err := move(pc.Password, pgcredsAAD(a.ID))
			if err != nil {
				return rep, fmt.Errorf("core: reseal: Postgres password of account %s: %w", a.ID, err)
			}
			if !moved {
				rep.Already++
				continue
			}
			pc.Password, pc.UpdatedAt = sealed, now().UTC()
			if _, err := store.Credentials().PutPGCreds(ctx, pc, event(audit.PGCredsWrite, a.ID)); err != nil {
				return rep, fmt.Errorf("core: reseal: store Postgres credential of account %s: %w", a.ID, err)
			}
			rep.PGCreds++
		}
		if next == "" {
			return rep, nil
		}
		cursor = next
	}
}

// ImportKeys publishes the signing keys of custodian from (active and
// retiring) in custodian to as retiring, verification-only keys, when to
// can (custody.KeyImporter): tokens signed before a move between
// custodians keep verifying until the rotation schedule retires those
// keys (retire_after from the move), while to signs new tokens with its
// own key. It returns how many keys to now publishes for from; without
// the capability it returns ErrNotImplemented and the old tokens end at
// the switch.
func ImportKeys(ctx context.Context, from, to custody.Custodian, now func() time.Time) (int, error) {
	if now == nil {
		now = time.Now
	}
	im, ok := to.(custody.KeyImporter)
	if !ok {
		return 0, fmt.Errorf("core: import keys: the new custodian cannot import keys: %w", sdk.ErrNotImplemented)
	}
	keys, err := from.PublicKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("core: import keys: old custodian: %w", err)
	}
	n := 0
	for _, k := range keys {
		if k.State != custody.StateActive && k.State != custody.StateRetiring {
			continue
		}
		if err := im.ImportRetiringKey(ctx, k, now()); err != nil {
			return n, fmt.Errorf("core: import keys: %s: %w", k.KID, err)
		}
		n++
	}
	return n, nil
}
