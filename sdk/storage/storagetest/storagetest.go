// Package storagetest is the conformance suite every storage.Store backend
// runs: the builtins directly, and plugins through the gRPC shims, so the
// contract of package storage is held the same everywhere.
//
// A backend test calls RunTests with a function that returns a fresh,
// empty, migrated store for each subtest (and registers its cleanup with
// t.Cleanup). The suite may Close the store itself; the cleanup's Close
// must tolerate that.
//
// Times used by the suite are truncated to the microsecond, the finest
// precision every supported database keeps.
package storagetest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// testCase is one conformance check, run against a fresh store.
type testCase struct {
	name string
	run  func(t *testing.T, s storage.Store)
}

// RunTests runs the storage conformance suite. newStore must return a
// fresh, empty store for each call.
func RunTests(t *testing.T, newStore func(t *testing.T) storage.Store) {
	var cases []testCase
	cases = append(cases, accountCases()...)
	cases = append(cases, tokenCases()...)
	cases = append(cases, credentialCases()...)
	cases = append(cases, auditCases()...)
	cases = append(cases, concurrencyCases()...)
	cases = append(cases, storeCases()...)
	cases = append(cases, limiterCases()...)
	cases = append(cases, chainCases()...)
	cases = append(cases, leaseCases()...)
	for _, tc := range cases {
		t.Run("case="+tc.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.run(t, s)
		})
	}
}

// newID returns a random UUID v4 (RFC 9562), formatted by hand so the sdk
// module needs no UUID dependency.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // never fails (crypto/rand contract)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// baseTime is a fixed instant truncated to what every backend keeps.
func baseTime() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}

// fixture bundles a store and helpers for one subtest.
type fixture struct {
	t   *testing.T
	s   storage.Store
	now time.Time
	n   int
}

func newFixture(t *testing.T, s storage.Store) *fixture {
	return &fixture{t: t, s: s, now: baseTime()}
}

// tick returns a later instant each call, so creation order is total.
func (f *fixture) tick() time.Time {
	f.n++
	return f.now.Add(time.Duration(f.n) * time.Millisecond)
}

// event returns a new event of type typ about account id.
func (f *fixture) event(typ audit.Type, accountID string) audit.Event {
	return audit.Event{
		ID:        newID(),
		Time:      f.tick(),
		Type:      typ,
		ActorID:   "actor-" + accountID,
		AccountID: accountID,
		IP:        "192.0.2.1",
		RequestID: "req-" + newID(),
		Outcome:   audit.Success,
		Details:   map[string]string{"k": "v"},
	}
}

// newAccount returns an unsaved account with the given username.
func (f *fixture) newAccount(username string, roles ...string) storage.Account {
	at := f.tick()
	return storage.Account{
		ID:           newID(),
		Username:     username,
		Skeleton:     "sk:" + username,
		Type:         storage.Human,
		Status:       storage.Active,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA",
		Roles:        roles,
		CreatedAt:    at,
		UpdatedAt:    at,
		Version:      1,
	}
}

// account creates and returns a stored account.
func (f *fixture) account(username string, roles ...string) storage.Account {
	f.t.Helper()
	a := f.newAccount(username, roles...)
	if err := f.s.Accounts().CreateAccount(f.t.Context(), a, f.event(audit.AccountCreate, a.ID)); err != nil {
		f.t.Fatalf("CreateAccount(%s): %v", username, err)
	}
	got, err := f.s.Accounts().GetAccount(f.t.Context(), a.ID)
	if err != nil {
		f.t.Fatalf("GetAccount(%s): %v", username, err)
	}
	return got
}

// update applies an update that must succeed.
func (f *fixture) update(a storage.Account, opts storage.UpdateOptions) storage.Account {
	f.t.Helper()
	a.UpdatedAt = f.tick()
	got, err := f.s.Accounts().UpdateAccount(f.t.Context(), a, opts, f.event(audit.AccountUpdate, a.ID))
	if err != nil {
		f.t.Fatalf("UpdateAccount(%s): %v", a.Username, err)
	}
	return got
}

// get reads an account that must exist.
func (f *fixture) get(id string) storage.Account {
	f.t.Helper()
	a, err := f.s.Accounts().GetAccount(f.t.Context(), id)
	if err != nil {
		f.t.Fatalf("GetAccount(%s): %v", id, err)
	}
	return a
}

// token creates and returns a stored token record.
func (f *fixture) token(accountID string, issued, expires time.Time) storage.Token {
	f.t.Helper()
	tok := storage.Token{
		JTI:       newID(),
		AccountID: accountID,
		Kind:      storage.Session,
		KID:       "kid-1",
		IssuedAt:  issued,
		ExpiresAt: expires,
	}
	if err := f.s.Tokens().CreateToken(f.t.Context(), tok, "", f.event(audit.LoginSuccess, accountID)); err != nil {
		f.t.Fatalf("CreateToken: %v", err)
	}
	return tok
}

// getToken reads a token record that must exist.
func (f *fixture) getToken(jti string) storage.Token {
	f.t.Helper()
	tok, err := f.s.Tokens().GetToken(f.t.Context(), jti)
	if err != nil {
		f.t.Fatalf("GetToken(%s): %v", jti, err)
	}
	return tok
}

// events returns every stored event, oldest first.
func (f *fixture) events() []audit.Event {
	f.t.Helper()
	var all []audit.Event
	var after int64
	for {
		page, err := f.s.Audit().ReadEvents(f.t.Context(), after, 100)
		if err != nil {
			f.t.Fatalf("ReadEvents(%d): %v", after, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// eventCount returns how many events are stored.
func (f *fixture) eventCount() int {
	f.t.Helper()
	return len(f.events())
}

// wantKind fails unless err wraps want.
func wantKind(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// wantOK fails on a non-nil err.
func wantOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantUTC fails unless every time is in UTC (or zero).
func wantUTC(t *testing.T, what string, ts ...time.Time) {
	t.Helper()
	for _, ts := range ts {
		if !ts.IsZero() && ts.Location() != time.UTC {
			t.Errorf("%s: time %v is not UTC", what, ts)
		}
	}
}

// sameAccount compares the stored fields of two accounts, treating nil
// and empty slices alike and times by instant.
func sameAccount(t *testing.T, what string, got, want storage.Account) {
	t.Helper()
	var diffs []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("Username", got.Username == want.Username, got.Username, want.Username)
	check("Skeleton", got.Skeleton == want.Skeleton, got.Skeleton, want.Skeleton)
	check("Type", got.Type == want.Type, got.Type, want.Type)
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("PasswordHash", got.PasswordHash == want.PasswordHash, got.PasswordHash, want.PasswordHash)
	check("Roles", slices.Equal(got.Roles, want.Roles), got.Roles, want.Roles)
	check("TOTPSecret", string(got.TOTPSecret) == string(want.TOTPSecret), got.TOTPSecret, want.TOTPSecret)
	check("TOTPEnabled", got.TOTPEnabled == want.TOTPEnabled, got.TOTPEnabled, want.TOTPEnabled)
	check("TOTPLastStep", got.TOTPLastStep == want.TOTPLastStep, got.TOTPLastStep, want.TOTPLastStep)
	check("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("UpdatedAt", got.UpdatedAt.Equal(want.UpdatedAt), got.UpdatedAt, want.UpdatedAt)
	check("Version", got.Version == want.Version, got.Version, want.Version)
	if len(diffs) > 0 {
		t.Errorf("%s: account differs:\n  %s", what, strings.Join(diffs, "\n  "))
	}
	wantUTC(t, what, got.CreatedAt, got.UpdatedAt)
}

// sameEvent compares the producer-set fields of two events (not Seq).
func sameEvent(t *testing.T, what string, got, want audit.Event) {
	t.Helper()
	if got.ID != want.ID || !got.Time.Equal(want.Time) || got.Type != want.Type ||
		got.ActorID != want.ActorID || got.AccountID != want.AccountID || got.IP != want.IP ||
		got.RequestID != want.RequestID || got.Outcome != want.Outcome ||
		!maps.Equal(got.Details, want.Details) {
		t.Errorf("%s: event = %+v, want %+v", what, got, want)
	}
	wantUTC(t, what, got.Time)
}

// ids returns the IDs of accounts.
func ids(as []storage.Account) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

// jtis returns the JTIs of tokens.
func jtis(ts []storage.Token) []string {
	out := make([]string, len(ts))
	for i, tok := range ts {
		out[i] = tok.JTI
	}
	return out
}

// eventIDs returns the IDs of events.
func eventIDs(evs []audit.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}
