package core_test

import (
	"context"
	"testing"

	"github.com/metacircular/mcias/sdk/storage"
)

// TestBootstrapRaceLoser: a node that saw an empty database but lost the
// race to create the admin starts normally, creates nothing, and the
// admin exists once.
func TestBootstrapRaceLoser(t *testing.T) {
	e := newEnv(t) // the winner bootstrapped adminName
	deps := e.deps
	deps.Store = &raceLoser{Store: e.store}
	e.deps = deps
	loser := e.open()
	created, err := loser.Bootstrap(t.Context(), adminName, "another-password-123")
	if err != nil || created {
		t.Fatalf("losing node: Bootstrap = %v, %v; want false, nil", created, err)
	}
	all, _, err := e.store.Accounts().ListAccounts(t.Context(), storage.AccountFilter{Role: "admin"})
	if err != nil || len(all) != 1 {
		t.Fatalf("admins: %d, %v; want exactly one", len(all), err)
	}
	// The winner's password still logs in; the loser's was never set.
	e.login(adminName, adminPW)
}

// raceLoser's first CountAccounts answers 0, as for a node that counted
// just before the winner's commit; later counts are true.
type raceLoser struct {
	storage.Store
	counted bool
}

func (r *raceLoser) Accounts() storage.AccountStore { return loserAccounts{r.Store.Accounts(), r} }

type loserAccounts struct {
	storage.AccountStore
	r *raceLoser
}

func (a loserAccounts) CountAccounts(ctx context.Context) (int, error) {
	if !a.r.counted {
		a.r.counted = true
		return 0, nil
	}
	return a.AccountStore.CountAccounts(ctx)
}
