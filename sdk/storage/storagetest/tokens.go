package storagetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const hour = time.Hour

func tokenCases() []testCase {
	return []testCase{
		{"create and get token", testCreateGetToken},
		{"create token conflicts", testCreateTokenConflicts},
		{"create token replaces", testCreateTokenReplaces},
		{"create token replaces refused", testCreateTokenReplacesRefused},
		{"revoke token", testRevokeToken},
		{"list tokens filters", testListTokens},
		{"list tokens by key id", testListTokensKID},
		{"prune tokens", testPruneTokens},
	}
}

func testCreateGetToken(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("svc")
	t0 := f.tick()
	want := storage.Token{
		JTI:       newID(),
		AccountID: a.ID,
		Kind:      storage.Service,
		Audience:  "https://db.example",
		KID:       "kid-abc",
		IssuedAt:  t0,
		ExpiresAt: t0.Add(24 * hour),
	}
	ev := f.event(audit.TokenIssue, a.ID)
	wantOK(t, "CreateToken", s.Tokens().CreateToken(t.Context(), want, "", ev))
	got := f.getToken(want.JTI)
	if got.JTI != want.JTI || got.AccountID != want.AccountID || got.Kind != want.Kind ||
		got.Audience != want.Audience || got.KID != want.KID || !got.IssuedAt.Equal(want.IssuedAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.RevokedAt.IsZero() || got.RevokeReason != "" {
		t.Errorf("GetToken = %+v, want %+v", got, want)
	}
	wantUTC(t, "token", got.IssuedAt, got.ExpiresAt)
	evs := f.events()
	sameEvent(t, "issue event", evs[len(evs)-1], ev)

	_, err := s.Tokens().GetToken(t.Context(), newID())
	wantKind(t, "GetToken(unknown)", err, sdk.ErrNotFound)
}

func testCreateTokenConflicts(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	t0 := f.tick()
	tok := f.token(a.ID, t0, t0.Add(hour))
	before := f.eventCount()

	dup := tok
	dup.ExpiresAt = t0.Add(2 * hour)
	err := s.Tokens().CreateToken(t.Context(), dup, "", f.event(audit.LoginSuccess, a.ID))
	wantKind(t, "CreateToken(duplicate jti)", err, sdk.ErrConflict)
	if got := f.getToken(tok.JTI); !got.ExpiresAt.Equal(tok.ExpiresAt) {
		t.Errorf("duplicate create changed the token: expires %v", got.ExpiresAt)
	}

	// A token for an account that does not exist is refused.
	orphan := storage.Token{JTI: newID(), AccountID: newID(), Kind: storage.Session, IssuedAt: t0, ExpiresAt: t0.Add(hour)}
	if err := s.Tokens().CreateToken(t.Context(), orphan, "", f.event(audit.LoginSuccess, orphan.AccountID)); err == nil {
		t.Errorf("CreateToken(unknown account) succeeded")
	}
	_, err = s.Tokens().GetToken(t.Context(), orphan.JTI)
	wantKind(t, "GetToken(orphan)", err, sdk.ErrNotFound)

	// A duplicate event ID fails the create.
	ok := storage.Token{JTI: newID(), AccountID: a.ID, Kind: storage.Session, IssuedAt: t0, ExpiresAt: t0.Add(hour)}
	ev := f.event(audit.LoginSuccess, a.ID)
	ev.ID = f.events()[0].ID
	wantKind(t, "CreateToken(duplicate event id)", s.Tokens().CreateToken(t.Context(), ok, "", ev), sdk.ErrConflict)
	_, err = s.Tokens().GetToken(t.Context(), ok.JTI)
	wantKind(t, "GetToken(after failed create)", err, sdk.ErrNotFound)

	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after failed creates", before, n)
	}
}

func testCreateTokenReplaces(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	t0 := f.tick()
	old := f.token(a.ID, t0, t0.Add(hour))
	t1 := f.tick()
	next := storage.Token{JTI: newID(), AccountID: a.ID, Kind: storage.Session, KID: "kid-1", IssuedAt: t1, ExpiresAt: t1.Add(hour)}
	wantOK(t, "CreateToken(replaces)", s.Tokens().CreateToken(t.Context(), next, old.JTI, f.event(audit.TokenRenew, a.ID)))

	gotOld := f.getToken(old.JTI)
	if gotOld.RevokedAt.IsZero() || gotOld.RevokeReason != "renew" {
		t.Errorf("replaced token: revoked at %v reason %q; want revoked, renew", gotOld.RevokedAt, gotOld.RevokeReason)
	}
	if got := f.getToken(next.JTI); !got.RevokedAt.IsZero() {
		t.Errorf("new token is revoked")
	}
}

func testCreateTokenReplacesRefused(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	b := f.account("bob")
	t0 := f.tick()
	revoked := f.token(a.ID, t0, t0.Add(hour))
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(t.Context(), revoked.JTI, f.tick(), "logout", f.event(audit.Logout, a.ID)))
	bobs := f.token(b.ID, t0, t0.Add(hour))

	for _, tc := range []struct {
		name     string
		replaces string
		want     []error
	}{
		{"unknown", newID(), []error{sdk.ErrNotFound}},
		{"revoked", revoked.JTI, []error{sdk.ErrConflict}},
		{"other account", bobs.JTI, []error{sdk.ErrConflict, sdk.ErrNotFound}},
	} {
		before := f.eventCount()
		next := storage.Token{JTI: newID(), AccountID: a.ID, Kind: storage.Session, IssuedAt: t0, ExpiresAt: t0.Add(hour)}
		err := s.Tokens().CreateToken(t.Context(), next, tc.replaces, f.event(audit.TokenRenew, a.ID))
		if !slices.ContainsFunc(tc.want, func(k error) bool { return errors.Is(err, k) }) {
			t.Errorf("%s: err = %v, want one of %v", tc.name, err, tc.want)
		}
		_, err = s.Tokens().GetToken(t.Context(), next.JTI)
		wantKind(t, tc.name+": new token", err, sdk.ErrNotFound)
		if n := f.eventCount(); n != before {
			t.Errorf("%s: events %d -> %d after a refused renew", tc.name, before, n)
		}
	}
	if got := f.getToken(bobs.JTI); !got.RevokedAt.IsZero() {
		t.Errorf("bob's token was revoked by alice's renew")
	}
	if got := f.getToken(revoked.JTI); got.RevokeReason != "logout" {
		t.Errorf("revoked token reason = %q, want logout", got.RevokeReason)
	}
}

func testRevokeToken(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	t0 := f.tick()
	tok := f.token(a.ID, t0, t0.Add(hour))
	before := f.eventCount()

	first := f.tick()
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(t.Context(), tok.JTI, first, "admin", f.event(audit.TokenRevoke, a.ID)))
	// Again: idempotent, the first revocation stays, the event is stored.
	wantOK(t, "RevokeToken(again)", s.Tokens().RevokeToken(t.Context(), tok.JTI, f.tick(), "logout", f.event(audit.TokenRevoke, a.ID)))
	got := f.getToken(tok.JTI)
	if !got.RevokedAt.Equal(first) || got.RevokeReason != "admin" {
		t.Errorf("revoked at %v reason %q; want %v admin", got.RevokedAt, got.RevokeReason, first)
	}
	wantUTC(t, "revoked at", got.RevokedAt)
	if n := f.eventCount(); n != before+2 {
		t.Errorf("events %d -> %d, want +2", before, n)
	}

	err := s.Tokens().RevokeToken(t.Context(), newID(), f.tick(), "admin", f.event(audit.TokenRevoke, a.ID))
	wantKind(t, "RevokeToken(unknown)", err, sdk.ErrNotFound)
	if n := f.eventCount(); n != before+2 {
		t.Errorf("events %d after revoking an unknown token, want %d", n, before+2)
	}
}

func testListTokens(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	b := f.account("bob")
	t0 := f.tick()
	// Issued in this order; the list is ordered by issue time.
	a1 := f.token(a.ID, t0.Add(1*time.Second), t0.Add(hour))
	a2 := f.token(a.ID, t0.Add(2*time.Second), t0.Add(-time.Minute)) // expired
	b1 := f.token(b.ID, t0.Add(3*time.Second), t0.Add(hour))
	a3 := f.token(a.ID, t0.Add(4*time.Second), t0.Add(2*hour))
	r1 := t0.Add(10 * time.Second)
	r2 := t0.Add(20 * time.Second)
	wantOK(t, "RevokeToken(a1)", s.Tokens().RevokeToken(t.Context(), a1.JTI, r1, "logout", f.event(audit.Logout, a.ID)))
	wantOK(t, "RevokeToken(b1)", s.Tokens().RevokeToken(t.Context(), b1.JTI, r2, "admin", f.event(audit.TokenRevoke, b.ID)))
	wantOK(t, "RevokeToken(a2)", s.Tokens().RevokeToken(t.Context(), a2.JTI, r2, "admin", f.event(audit.TokenRevoke, a.ID)))

	for _, tc := range []struct {
		name string
		f    storage.TokenFilter
		want []string
	}{
		{"all", storage.TokenFilter{}, []string{a1.JTI, a2.JTI, b1.JTI, a3.JTI}},
		{"account", storage.TokenFilter{AccountID: a.ID}, []string{a1.JTI, a2.JTI, a3.JTI}},
		{"unknown account", storage.TokenFilter{AccountID: newID()}, nil},
		{"revoked", storage.TokenFilter{RevokedOnly: true}, []string{a1.JTI, a2.JTI, b1.JTI}},
		{"revoked unexpired", storage.TokenFilter{RevokedOnly: true, ExpiresAfter: t0}, []string{a1.JTI, b1.JTI}},
		{"expires after", storage.TokenFilter{ExpiresAfter: t0.Add(hour)}, []string{a3.JTI}},
		{"revoked after", storage.TokenFilter{RevokedAfter: r1}, []string{a2.JTI, b1.JTI}},
		{"revoked after, account", storage.TokenFilter{RevokedAfter: r1.Add(-time.Nanosecond), AccountID: a.ID}, []string{a1.JTI, a2.JTI}},
		{"account revoked", storage.TokenFilter{AccountID: a.ID, RevokedOnly: true}, []string{a1.JTI, a2.JTI}},
		{"limit", storage.TokenFilter{Limit: 2}, []string{a1.JTI, a2.JTI}},
		{"limit account", storage.TokenFilter{AccountID: a.ID, Limit: 1}, []string{a1.JTI}},
	} {
		got, err := s.Tokens().ListTokens(t.Context(), tc.f)
		wantOK(t, "ListTokens("+tc.name+")", err)
		if !slices.Equal(jtis(got), tc.want) {
			t.Errorf("%s: jtis = %v, want %v", tc.name, jtis(got), tc.want)
		}
	}

	// Listed tokens carry every field.
	got, err := s.Tokens().ListTokens(t.Context(), storage.TokenFilter{AccountID: b.ID})
	wantOK(t, "ListTokens(bob)", err)
	if len(got) != 1 || !got[0].RevokedAt.Equal(r2) || got[0].RevokeReason != "admin" ||
		!got[0].IssuedAt.Equal(b1.IssuedAt) || !got[0].ExpiresAt.Equal(b1.ExpiresAt) || got[0].KID != b1.KID {
		t.Errorf("ListTokens(bob) = %+v", got)
	}
}

func testPruneTokens(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	t0 := f.tick()
	old1 := f.token(a.ID, t0.Add(-3*hour), t0.Add(-2*hour))
	old2 := f.token(a.ID, t0.Add(-2*hour), t0.Add(-hour))
	edge := f.token(a.ID, t0.Add(-hour), t0)
	live := f.token(a.ID, t0, t0.Add(hour))
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(t.Context(), old2.JTI, t0.Add(-90*time.Minute), "logout", f.event(audit.Logout, a.ID)))
	before := f.eventCount()

	n, err := s.Tokens().PruneTokens(t.Context(), t0)
	wantOK(t, "PruneTokens", err)
	if n != 2 {
		t.Errorf("PruneTokens = %d, want 2", n)
	}
	for _, jti := range []string{old1.JTI, old2.JTI} {
		_, err := s.Tokens().GetToken(t.Context(), jti)
		wantKind(t, "GetToken(pruned)", err, sdk.ErrNotFound)
	}
	f.getToken(edge.JTI) // expires exactly at the cut: kept
	f.getToken(live.JTI)
	if n := f.eventCount(); n != before {
		t.Errorf("PruneTokens stored events: %d -> %d", before, n)
	}
	n, err = s.Tokens().PruneTokens(t.Context(), t0)
	wantOK(t, "PruneTokens(again)", err)
	if n != 0 {
		t.Errorf("PruneTokens(again) = %d, want 0", n)
	}
}

// testListTokensKID: the KID filter selects the tokens one key signed,
// alone or with other filters.
func testListTokensKID(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	ctx := t.Context()
	alice, bob := f.account("alice"), f.account("bob")
	mk := func(accountID, kid string) storage.Token {
		tok := storage.Token{JTI: newID(), AccountID: accountID, Kind: storage.Session, KID: kid,
			IssuedAt: f.tick(), ExpiresAt: f.tick().Add(time.Hour)}
		wantOK(t, "CreateToken", s.Tokens().CreateToken(ctx, tok, "", f.event(audit.TokenIssue, accountID)))
		return tok
	}
	a1, _, b1, a3 := mk(alice.ID, "kid-1"), mk(alice.ID, "kid-2"), mk(bob.ID, "kid-1"), mk(alice.ID, "kid-1")
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(ctx, a3.JTI, f.tick(), "admin", f.event(audit.TokenRevoke, alice.ID)))

	for _, c := range []struct {
		what string
		f    storage.TokenFilter
		want []string
	}{
		{"kid-1", storage.TokenFilter{KID: "kid-1"}, []string{a1.JTI, b1.JTI, a3.JTI}},
		{"kid-1 of alice", storage.TokenFilter{KID: "kid-1", AccountID: alice.ID}, []string{a1.JTI, a3.JTI}},
		{"kid-1 revoked", storage.TokenFilter{KID: "kid-1", RevokedOnly: true}, []string{a3.JTI}},
		{"kid-1, limit 2", storage.TokenFilter{KID: "kid-1", Limit: 2}, []string{a1.JTI, b1.JTI}},
		{"unknown kid", storage.TokenFilter{KID: "kid-9"}, nil},
	} {
		got, err := s.Tokens().ListTokens(ctx, c.f)
		wantOK(t, "ListTokens("+c.what+")", err)
		if !slices.Equal(jtis(got), c.want) {
			t.Errorf("ListTokens(%s) = %v, want %v", c.what, jtis(got), c.want)
		}
		for _, tok := range got {
			if tok.KID != c.f.KID {
				t.Errorf("ListTokens(%s): token %s has kid %q", c.what, tok.JTI, tok.KID)
			}
		}
	}
}
