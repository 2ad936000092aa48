package core_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk/storage"
)

// hookStore is the real store with a hook that runs once, right after the
// next account read: the moment a concurrent admin change can slip in
// between what a login or an issue has read and the token it records.
type hookStore struct {
	storage.Store
	hook atomic.Pointer[func()]
}

func (h *hookStore) arm(f func()) { h.hook.Store(&f) }

func (h *hookStore) fire() {
	if f := h.hook.Swap(nil); f != nil {
		(*f)()
	}
}

func (h *hookStore) Accounts() storage.AccountStore { return hookAccounts{h.Store.Accounts(), h} }

type hookAccounts struct {
	storage.AccountStore
	h *hookStore
}

func (a hookAccounts) GetAccount(ctx context.Context, id string) (storage.Account, error) {
	acct, err := a.AccountStore.GetAccount(ctx, id)
	a.h.fire()
	return acct, err
}

func (a hookAccounts) GetAccountByUsername(ctx context.Context, u string) (storage.Account, error) {
	acct, err := a.AccountStore.GetAccountByUsername(ctx, u)
	a.h.fire()
	return acct, err
}

// TestIssueRacesAccountChange: a password change, a disable or a delete
// that commits while a login (or a service-token issue) is between reading
// the account and recording its token must still kill that token for
// good. Before the fix the token was recorded after the change had
// revoked the account's tokens, so it outlived the change (and came back
// to life when a disabled account was re-enabled).
func TestIssueRacesAccountChange(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	hs := &hookStore{Store: e.store.Store}
	svc, err := core.New(ctx, e.cfg, core.Deps{Store: hs, Custodian: e.cust, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	inactive, active := storage.Inactive, storage.Active
	disableEnable := func(t *testing.T, id string) {
		if _, err := svc.UpdateAccount(ctx, e.admin, id, core.AccountUpdate{Status: &inactive}); err != nil {
			t.Errorf("disable: %v", err)
		}
		if _, err := svc.UpdateAccount(ctx, e.admin, id, core.AccountUpdate{Status: &active}); err != nil {
			t.Errorf("re-enable: %v", err)
		}
	}
	tests := []struct {
		name   string
		system bool
		change func(t *testing.T, id string)
	}{
		{"login vs admin sets password", false, func(t *testing.T, id string) {
			if err := svc.SetPassword(ctx, e.admin, id, "brand new password"); err != nil {
				t.Errorf("set password: %v", err)
			}
		}},
		{"login vs disable and re-enable", false, disableEnable},
		{"login vs delete", false, func(t *testing.T, id string) {
			if err := svc.DeleteAccount(ctx, e.admin, id); err != nil {
				t.Errorf("delete: %v", err)
			}
		}},
		{"service token vs disable and re-enable", true, disableEnable},
	}
	for i, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			name := "racer" + string(rune('a'+i))
			pw := "racer password 12"
			if tc.system {
				pw = ""
			}
			a := e.user(name, pw)
			hs.arm(func() { tc.change(t, a.ID) })
			var tok string
			if tc.system {
				it, err := svc.IssueServiceToken(ctx, e.admin, a.ID, time.Hour, "")
				if err != nil {
					return // refused: nothing outlives the change
				}
				tok = it.Token
			} else {
				it, err := svc.Login(ctx, core.Caller{IP: "192.0.2.9"}, name, pw, "")
				if err != nil {
					if !errors.Is(err, core.ErrInvalidCredentials) {
						t.Fatalf("login: %v, want ErrInvalidCredentials", err)
					}
					return
				}
				tok = it.Token
			}
			if hs.hook.Load() != nil {
				t.Fatal("the change never ran")
			}
			if v, err := svc.Validate(ctx, tok, ""); err != nil || v.Valid {
				t.Fatalf("token issued across the change: valid=%v err=%v", v.Valid, err)
			}
			fresh := e.open()
			if v, err := fresh.Validate(ctx, tok, ""); err != nil || v.Valid {
				t.Fatalf("after restart, token issued across the change: valid=%v err=%v", v.Valid, err)
			}
		})
	}
}
