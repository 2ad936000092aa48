package storagetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

func accountCases() []testCase {
	return []testCase{
		{"create and get account", testCreateGetAccount},
		{"create account rejects version other than 1", testCreateAccountVersion},
		{"create account conflicts", testCreateAccountConflicts},
		{"account not found", testAccountNotFound},
		{"username and skeleton reusable after delete", testUsernameReuseAfterDelete},
		{"update account", testUpdateAccount},
		{"update account version conflict", testUpdateAccountVersionConflict},
		{"update account uniqueness conflict", testUpdateAccountUniqueness},
		{"keep active admin guard", testKeepActiveAdmin},
		{"revoke tokens on update", testRevokeTokensOnUpdate},
		{"atomicity: failed update stores nothing", testUpdateAtomicity},
		{"list accounts filters", testListAccountsFilters},
		{"list accounts paging", testListAccountsPaging},
		{"count accounts", testCountAccounts},
	}
}

func testCreateGetAccount(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.newAccount("alice", "b-role", "admin", "b-role")
	a.TOTPSecret = []byte{0, 1, 2, 255}
	a.TOTPEnabled = true
	a.TOTPLastStep = 56789
	ev := f.event(audit.AccountCreate, a.ID)
	wantOK(t, "CreateAccount", s.Accounts().CreateAccount(t.Context(), a, ev))

	want := a
	want.Roles = []string{"admin", "b-role"} // sorted, unique
	sameAccount(t, "GetAccount", f.get(a.ID), want)

	byName, err := s.Accounts().GetAccountByUsername(t.Context(), "alice")
	wantOK(t, "GetAccountByUsername", err)
	sameAccount(t, "GetAccountByUsername", byName, want)

	// An account without roles or TOTP secret round-trips as empty.
	b := f.newAccount("bob")
	b.Type = storage.System
	b.PasswordHash = ""
	wantOK(t, "CreateAccount(bob)", s.Accounts().CreateAccount(t.Context(), b, f.event(audit.AccountCreate, b.ID)))
	gotB := f.get(b.ID)
	sameAccount(t, "GetAccount(bob)", gotB, b)
	if len(gotB.Roles) != 0 || len(gotB.TOTPSecret) != 0 {
		t.Errorf("bob: roles %v, totp secret %v; want none", gotB.Roles, gotB.TOTPSecret)
	}

	evs := f.events()
	if len(evs) != 2 {
		t.Fatalf("events = %d, want 2", len(evs))
	}
	sameEvent(t, "create event", evs[0], ev)
	if evs[0].Seq <= 0 {
		t.Errorf("event Seq = %d, want > 0", evs[0].Seq)
	}
}

func testCreateAccountVersion(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	for _, v := range []int64{0, 2, -1} {
		a := f.newAccount(fmt.Sprintf("user%d", v+10))
		a.Version = v
		err := s.Accounts().CreateAccount(t.Context(), a, f.event(audit.AccountCreate, a.ID))
		wantKind(t, fmt.Sprintf("CreateAccount(version %d)", v), err, sdk.ErrInvalidArgument)
	}
	if n := f.eventCount(); n != 0 {
		t.Errorf("events = %d after failed creates, want 0", n)
	}
}

func testCreateAccountConflicts(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	alice := f.account("alice")

	for _, tc := range []struct {
		name string
		mod  func(a *storage.Account)
	}{
		{"same id", func(a *storage.Account) { a.ID = alice.ID }},
		{"same username", func(a *storage.Account) { a.Username = "alice" }},
		{"same skeleton", func(a *storage.Account) { a.Skeleton = alice.Skeleton }},
		{"same username, other type", func(a *storage.Account) { a.Username = "alice"; a.Type = storage.System }},
		{"same username, inactive", func(a *storage.Account) { a.Username = "alice"; a.Status = storage.Inactive }},
	} {
		a := f.newAccount("other")
		tc.mod(&a)
		before := f.eventCount()
		err := s.Accounts().CreateAccount(t.Context(), a, f.event(audit.AccountCreate, a.ID))
		wantKind(t, "CreateAccount("+tc.name+")", err, sdk.ErrConflict)
		if n := f.eventCount(); n != before {
			t.Errorf("%s: events %d -> %d after a failed create", tc.name, before, n)
		}
	}
	sameAccount(t, "alice unchanged", f.get(alice.ID), alice)
	n, err := s.Accounts().CountAccounts(t.Context())
	wantOK(t, "CountAccounts", err)
	if n != 1 {
		t.Errorf("CountAccounts = %d, want 1", n)
	}

	// A duplicate event ID fails the create as a whole.
	a := f.newAccount("carol")
	ev := f.event(audit.AccountCreate, a.ID)
	ev.ID = f.events()[0].ID
	wantKind(t, "CreateAccount(duplicate event id)", s.Accounts().CreateAccount(t.Context(), a, ev), sdk.ErrConflict)
	_, err = s.Accounts().GetAccount(t.Context(), a.ID)
	wantKind(t, "GetAccount(carol)", err, sdk.ErrNotFound)
}

func testAccountNotFound(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	f.account("alice")
	_, err := s.Accounts().GetAccount(t.Context(), newID())
	wantKind(t, "GetAccount(unknown)", err, sdk.ErrNotFound)
	_, err = s.Accounts().GetAccountByUsername(t.Context(), "nobody")
	wantKind(t, "GetAccountByUsername(unknown)", err, sdk.ErrNotFound)
	// Usernames are stored canonical; lookups are exact.
	_, err = s.Accounts().GetAccountByUsername(t.Context(), "ALICE")
	wantKind(t, "GetAccountByUsername(ALICE)", err, sdk.ErrNotFound)

	ghost := f.newAccount("ghost")
	ghost.Version = 1
	_, err = s.Accounts().UpdateAccount(t.Context(), ghost, storage.UpdateOptions{}, f.event(audit.AccountUpdate, ghost.ID))
	wantKind(t, "UpdateAccount(unknown)", err, sdk.ErrNotFound)
}

func testUsernameReuseAfterDelete(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	old := f.account("alice")
	old.Status = storage.Deleted
	old = f.update(old, storage.UpdateOptions{})

	// The deleted account is still readable by ID, not by username.
	if got := f.get(old.ID); got.Status != storage.Deleted {
		t.Errorf("deleted account status = %q", got.Status)
	}
	_, err := s.Accounts().GetAccountByUsername(t.Context(), "alice")
	wantKind(t, "GetAccountByUsername(deleted)", err, sdk.ErrNotFound)

	// Same username and skeleton, new ID.
	next := f.account("alice")
	got, err := s.Accounts().GetAccountByUsername(t.Context(), "alice")
	wantOK(t, "GetAccountByUsername(new)", err)
	if got.ID != next.ID {
		t.Errorf("GetAccountByUsername = %s, want the new account %s", got.ID, next.ID)
	}

	// Two deleted accounts may share a username.
	next.Status = storage.Deleted
	f.update(next, storage.UpdateOptions{})
	third := f.account("alice")

	// Undeleting the old one now clashes.
	old.Status = storage.Active
	_, err = s.Accounts().UpdateAccount(t.Context(), old, storage.UpdateOptions{}, f.event(audit.AccountUpdate, old.ID))
	wantKind(t, "UpdateAccount(undelete clash)", err, sdk.ErrConflict)
	_ = third
}

func testUpdateAccount(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice", "reader")
	before := f.eventCount()

	a.Username = "alice2"
	a.Skeleton = "sk:alice2"
	a.Status = storage.Inactive
	a.PasswordHash = "$argon2id$v=19$m=65536,t=3,p=1$bmV3$bmV3"
	a.Roles = []string{"writer", "admin", "writer"}
	a.TOTPSecret = []byte("sealed")
	a.TOTPEnabled = true
	a.TOTPLastStep = 42
	a.UpdatedAt = f.tick()
	ev := f.event(audit.AccountUpdate, a.ID)
	got, err := s.Accounts().UpdateAccount(t.Context(), a, storage.UpdateOptions{}, ev)
	wantOK(t, "UpdateAccount", err)

	want := a
	want.Roles = []string{"admin", "writer"}
	want.Version = 2
	sameAccount(t, "returned", got, want)
	sameAccount(t, "stored", f.get(a.ID), want)

	evs := f.events()
	if len(evs) != before+1 {
		t.Fatalf("events = %d, want %d", len(evs), before+1)
	}
	sameEvent(t, "update event", evs[len(evs)-1], ev)

	// The old username is free, the new one taken.
	_, err = s.Accounts().GetAccountByUsername(t.Context(), "alice")
	wantKind(t, "GetAccountByUsername(old)", err, sdk.ErrNotFound)
	byName, err := s.Accounts().GetAccountByUsername(t.Context(), "alice2")
	wantOK(t, "GetAccountByUsername(new)", err)
	if byName.ID != a.ID {
		t.Errorf("GetAccountByUsername(alice2) = %s", byName.ID)
	}

	// CreatedAt and Type are immutable.
	got.CreatedAt = got.CreatedAt.Add(-1000000)
	got.Type = storage.System
	got.Roles = nil
	got.TOTPSecret = nil
	got = f.update(got, storage.UpdateOptions{})
	if got.Version != 3 || !got.CreatedAt.Equal(a.CreatedAt) || got.Type != storage.Human {
		t.Errorf("after update: version %d created %v type %q; want 3, %v, human", got.Version, got.CreatedAt, got.Type, a.CreatedAt)
	}
	if len(got.Roles) != 0 || len(got.TOTPSecret) != 0 {
		t.Errorf("roles %v secret %v, want cleared", got.Roles, got.TOTPSecret)
	}
}

func testUpdateAccountVersionConflict(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	v2 := f.update(a, storage.UpdateOptions{})
	if v2.Version != 2 {
		t.Fatalf("version = %d, want 2", v2.Version)
	}
	before := f.eventCount()
	for _, v := range []int64{1, 3, 0} {
		stale := a
		stale.Version = v
		stale.Status = storage.Inactive
		_, err := s.Accounts().UpdateAccount(t.Context(), stale, storage.UpdateOptions{}, f.event(audit.AccountUpdate, a.ID))
		wantKind(t, fmt.Sprintf("UpdateAccount(version %d)", v), err, sdk.ErrConflict)
	}
	sameAccount(t, "unchanged", f.get(a.ID), v2)
	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after failed updates", before, n)
	}
}

func testUpdateAccountUniqueness(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	f.account("alice")
	bob := f.account("bob")
	before := f.eventCount()
	for _, tc := range []struct {
		name               string
		username, skeleton string
	}{
		{"username", "alice", "sk:bob"},
		{"skeleton", "bob", "sk:alice"},
	} {
		b := bob
		b.Username, b.Skeleton = tc.username, tc.skeleton
		_, err := s.Accounts().UpdateAccount(t.Context(), b, storage.UpdateOptions{}, f.event(audit.AccountUpdate, b.ID))
		wantKind(t, "UpdateAccount("+tc.name+" clash)", err, sdk.ErrConflict)
	}
	sameAccount(t, "bob unchanged", f.get(bob.ID), bob)
	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after failed updates", before, n)
	}
}

func testKeepActiveAdmin(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	guard := storage.UpdateOptions{KeepActiveAdmin: true}
	root := f.account("root", "admin")
	// An inactive admin does not count.
	idle := f.account("idle", "admin")
	idle.Status = storage.Inactive
	idle = f.update(idle, storage.UpdateOptions{})
	// Nor does an admin role on a deleted account.
	gone := f.account("gone", "admin")
	gone.Status = storage.Deleted
	f.update(gone, storage.UpdateOptions{})

	for _, tc := range []struct {
		name string
		mod  func(a *storage.Account)
	}{
		{"demote", func(a *storage.Account) { a.Roles = []string{"reader"} }},
		{"disable", func(a *storage.Account) { a.Status = storage.Inactive }},
		{"delete", func(a *storage.Account) { a.Status = storage.Deleted }},
	} {
		before := f.eventCount()
		a := root
		tc.mod(&a)
		_, err := s.Accounts().UpdateAccount(t.Context(), a, guard, f.event(audit.AccountUpdate, a.ID))
		wantKind(t, "UpdateAccount(last admin, "+tc.name+")", err, sdk.ErrPrecondition)
		sameAccount(t, tc.name+": root unchanged", f.get(root.ID), root)
		if n := f.eventCount(); n != before {
			t.Errorf("%s: events %d -> %d after a failed guard", tc.name, before, n)
		}
	}

	// An update that keeps the admin passes the guard.
	root.PasswordHash = "$argon2id$v=19$m=65536,t=3,p=1$eA$eA"
	root = f.update(root, guard)

	// With a second active admin, the first may go.
	idle.Status = storage.Active
	f.update(idle, guard)
	root.Roles = nil
	root = f.update(root, guard)
	if len(root.Roles) != 0 {
		t.Errorf("root roles = %v, want none", root.Roles)
	}

	// Without the guard nothing stops the last admin from going.
	idle = f.get(idle.ID)
	idle.Status = storage.Inactive
	f.update(idle, storage.UpdateOptions{})
}

func testRevokeTokensOnUpdate(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	other := f.account("bob")
	t0 := f.tick()
	kept := f.token(a.ID, t0, t0.Add(hour))
	live := f.token(a.ID, t0, t0.Add(hour))
	expired := f.token(a.ID, t0.Add(-2*hour), t0.Add(-hour))
	already := f.token(a.ID, t0, t0.Add(hour))
	firstRevoke := f.tick()
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(t.Context(), already.JTI, firstRevoke, "logout", f.event(audit.Logout, a.ID)))
	bobs := f.token(other.ID, t0, t0.Add(hour))

	a.PasswordHash = "$argon2id$v=19$m=65536,t=3,p=1$bmV3$bmV3"
	a.UpdatedAt = f.tick()
	opts := storage.UpdateOptions{RevokeTokens: true, KeepJTI: kept.JTI, RevokeReason: "password_change"}
	_, err := s.Accounts().UpdateAccount(t.Context(), a, opts, f.event(audit.PasswordChange, a.ID))
	wantOK(t, "UpdateAccount(RevokeTokens)", err)

	for _, tc := range []struct {
		name       string
		jti        string
		revokedAt  time.Time
		wantReason string
	}{
		{"kept", kept.JTI, time.Time{}, ""},
		{"live", live.JTI, a.UpdatedAt, "password_change"},
		{"expired", expired.JTI, time.Time{}, ""},
		{"already revoked", already.JTI, firstRevoke, "logout"},
		{"other account", bobs.JTI, time.Time{}, ""},
	} {
		got := f.getToken(tc.jti)
		if !got.RevokedAt.Equal(tc.revokedAt) || got.RevokeReason != tc.wantReason {
			t.Errorf("%s: revoked at %v reason %q; want %v %q", tc.name, got.RevokedAt, got.RevokeReason, tc.revokedAt, tc.wantReason)
		}
		wantUTC(t, tc.name, got.RevokedAt)
	}

	// Without KeepJTI every live token goes.
	a = f.get(a.ID)
	a.Status = storage.Inactive
	f.update(a, storage.UpdateOptions{RevokeTokens: true, RevokeReason: "account_disabled"})
	if got := f.getToken(kept.JTI); got.RevokedAt.IsZero() || got.RevokeReason != "account_disabled" {
		t.Errorf("kept token after disable: revoked at %v reason %q", got.RevokedAt, got.RevokeReason)
	}
}

func testUpdateAtomicity(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	root := f.account("root", "admin")
	t0 := f.tick()
	tok := f.token(root.ID, t0, t0.Add(hour))
	before := f.eventCount()

	// A failed guard revokes no token.
	a := root
	a.Status = storage.Inactive
	opts := storage.UpdateOptions{KeepActiveAdmin: true, RevokeTokens: true, RevokeReason: "account_disabled"}
	_, err := s.Accounts().UpdateAccount(t.Context(), a, opts, f.event(audit.AccountUpdate, a.ID))
	wantKind(t, "UpdateAccount(guard)", err, sdk.ErrPrecondition)
	if got := f.getToken(tok.JTI); !got.RevokedAt.IsZero() {
		t.Errorf("token revoked by a failed update")
	}

	// A duplicate event ID fails the whole update, the change included.
	a = root
	a.Roles = []string{"admin", "writer"}
	ev := f.event(audit.AccountUpdate, a.ID)
	ev.ID = f.events()[0].ID
	_, err = s.Accounts().UpdateAccount(t.Context(), a, storage.UpdateOptions{RevokeTokens: true}, ev)
	wantKind(t, "UpdateAccount(duplicate event id)", err, sdk.ErrConflict)
	sameAccount(t, "root unchanged", f.get(root.ID), root)
	if got := f.getToken(tok.JTI); !got.RevokedAt.IsZero() {
		t.Errorf("token revoked by a failed update")
	}
	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after failed updates", before, n)
	}
}

func testListAccountsFilters(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	admin := f.account("admin1", "admin", "reader")
	human := f.account("human1", "reader")
	sys := f.newAccount("svc1", "reader")
	sys.Type = storage.System
	wantOK(t, "CreateAccount(svc1)", s.Accounts().CreateAccount(t.Context(), sys, f.event(audit.AccountCreate, sys.ID)))
	idle := f.account("idle1")
	idle.Status = storage.Inactive
	idle = f.update(idle, storage.UpdateOptions{})
	gone := f.account("gone1", "admin")
	gone.Status = storage.Deleted
	gone = f.update(gone, storage.UpdateOptions{})

	for _, tc := range []struct {
		name string
		f    storage.AccountFilter
		want []string
	}{
		{"no filter", storage.AccountFilter{}, []string{admin.ID, human.ID, sys.ID, idle.ID}},
		{"include deleted", storage.AccountFilter{IncludeDeleted: true}, []string{admin.ID, human.ID, sys.ID, idle.ID, gone.ID}},
		{"type human", storage.AccountFilter{Type: storage.Human}, []string{admin.ID, human.ID, idle.ID}},
		{"type system", storage.AccountFilter{Type: storage.System}, []string{sys.ID}},
		{"status active", storage.AccountFilter{Status: storage.Active}, []string{admin.ID, human.ID, sys.ID}},
		{"status inactive", storage.AccountFilter{Status: storage.Inactive}, []string{idle.ID}},
		{"status deleted", storage.AccountFilter{Status: storage.Deleted}, []string{gone.ID}},
		{"role admin", storage.AccountFilter{Role: "admin"}, []string{admin.ID}},
		{"role admin include deleted", storage.AccountFilter{Role: "admin", IncludeDeleted: true}, []string{admin.ID, gone.ID}},
		{"role reader system", storage.AccountFilter{Role: "reader", Type: storage.System}, []string{sys.ID}},
		{"unknown role", storage.AccountFilter{Role: "nope"}, nil},
	} {
		got, next, err := s.Accounts().ListAccounts(t.Context(), tc.f)
		wantOK(t, "ListAccounts("+tc.name+")", err)
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("%s: ids = %v, want %v", tc.name, ids(got), tc.want)
		}
		if next != "" {
			t.Errorf("%s: next = %q, want end", tc.name, next)
		}
	}

	// Listed accounts carry every field.
	got, _, err := s.Accounts().ListAccounts(t.Context(), storage.AccountFilter{Role: "admin"})
	wantOK(t, "ListAccounts", err)
	if len(got) == 1 {
		sameAccount(t, "listed admin", got[0], admin)
	}
}

func testListAccountsPaging(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	var want []string
	for i := range 7 {
		want = append(want, f.account(fmt.Sprintf("user%02d", i)).ID)
	}
	// Two accounts created at the same instant are ordered by ID.
	same := f.tick()
	for _, name := range []string{"tie-a", "tie-b"} {
		a := f.newAccount(name)
		a.CreatedAt, a.UpdatedAt = same, same
		wantOK(t, "CreateAccount", s.Accounts().CreateAccount(t.Context(), a, f.event(audit.AccountCreate, a.ID)))
		want = append(want, a.ID)
	}
	slices.Sort(want[7:])

	for _, limit := range []int{1, 2, 3, 9, 10} {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			page, next, err := s.Accounts().ListAccounts(t.Context(), storage.AccountFilter{Limit: limit, Cursor: cursor})
			wantOK(t, "ListAccounts", err)
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			got = append(got, ids(page)...)
			if next == "" {
				break
			}
			if len(page) != limit {
				t.Errorf("limit %d: short page %d with a next cursor", limit, len(page))
			}
			cursor = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: ids = %v, want %v", limit, got, want)
		}
	}

	// The default page size is 100.
	for i := range 101 - len(want) {
		f.account(fmt.Sprintf("more%03d", i))
	}
	page, next, err := s.Accounts().ListAccounts(t.Context(), storage.AccountFilter{})
	wantOK(t, "ListAccounts(default limit)", err)
	if len(page) != 100 || next == "" {
		t.Errorf("default page: %d accounts, next %q; want 100 and a cursor", len(page), next)
	}
	page, next, err = s.Accounts().ListAccounts(t.Context(), storage.AccountFilter{Cursor: next})
	wantOK(t, "ListAccounts(second page)", err)
	if len(page) != 1 || next != "" {
		t.Errorf("second page: %d accounts, next %q; want 1 and end", len(page), next)
	}

	_, _, err = s.Accounts().ListAccounts(t.Context(), storage.AccountFilter{Cursor: "!!not a cursor!!"})
	wantKind(t, "ListAccounts(bad cursor)", err, sdk.ErrInvalidArgument)
}

func testCountAccounts(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	count := func() int {
		t.Helper()
		n, err := s.Accounts().CountAccounts(t.Context())
		wantOK(t, "CountAccounts", err)
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("fresh store: CountAccounts = %d, want 0", n)
	}
	a := f.account("alice")
	f.account("bob")
	a.Status = storage.Deleted
	f.update(a, storage.UpdateOptions{})
	if n := count(); n != 2 {
		t.Errorf("CountAccounts = %d, want 2 (deleted included)", n)
	}
}
