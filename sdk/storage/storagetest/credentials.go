package storagetest

import (
	"bytes"
	"testing"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

func credentialCases() []testCase {
	return []testCase{
		{"pgcreds create get replace", testPGCreds},
		{"pgcreds conflicts", testPGCredsConflicts},
		{"pgcreds unknown account", testPGCredsUnknownAccount},
		{"pgcreds removed with a deleted account", testPGCredsGoneOnDelete},
	}
}

// A deleted account keeps its row for the audit history, not its secrets.
func testPGCredsGoneOnDelete(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("svc")
	keep := f.account("other")
	for _, id := range []string{a.ID, keep.ID} {
		c := storage.PGCreds{AccountID: id, Host: "db", Port: 5432, Database: "d", Username: "u",
			Password: []byte("sealed"), UpdatedAt: f.tick()}
		_, err := s.Credentials().PutPGCreds(t.Context(), c, f.event(audit.PGCredsWrite, id))
		wantOK(t, "PutPGCreds", err)
	}
	a.Status = storage.Inactive
	a = f.update(a, storage.UpdateOptions{})
	_, err := s.Credentials().GetPGCreds(t.Context(), a.ID)
	wantOK(t, "GetPGCreds(inactive account)", err)

	a.Status = storage.Deleted
	f.update(a, storage.UpdateOptions{})
	_, err = s.Credentials().GetPGCreds(t.Context(), a.ID)
	wantKind(t, "GetPGCreds(deleted account)", err, sdk.ErrNotFound)
	_, err = s.Credentials().GetPGCreds(t.Context(), keep.ID)
	wantOK(t, "GetPGCreds(other account)", err)
}

func samePGCreds(t *testing.T, what string, got, want storage.PGCreds) {
	t.Helper()
	if got.AccountID != want.AccountID || got.Host != want.Host || got.Port != want.Port ||
		got.Database != want.Database || got.Username != want.Username ||
		!bytes.Equal(got.Password, want.Password) || !got.UpdatedAt.Equal(want.UpdatedAt) ||
		got.Version != want.Version {
		t.Errorf("%s: pgcreds = %+v, want %+v", what, got, want)
	}
	wantUTC(t, what, got.UpdatedAt)
}

func testPGCreds(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("svc")
	_, err := s.Credentials().GetPGCreds(t.Context(), a.ID)
	wantKind(t, "GetPGCreds(none)", err, sdk.ErrNotFound)

	c := storage.PGCreds{
		AccountID: a.ID,
		Host:      "db.example",
		Port:      5432,
		Database:  "app",
		Username:  "app_user",
		Password:  []byte{1, 0, 2, 0xff, 'x'},
		UpdatedAt: f.tick(),
	}
	ev := f.event(audit.PGCredsWrite, a.ID)
	got, err := s.Credentials().PutPGCreds(t.Context(), c, ev)
	wantOK(t, "PutPGCreds(create)", err)
	want := c
	want.Version = 1
	samePGCreds(t, "returned", got, want)
	stored, err := s.Credentials().GetPGCreds(t.Context(), a.ID)
	wantOK(t, "GetPGCreds", err)
	samePGCreds(t, "stored", stored, want)
	evs := f.events()
	sameEvent(t, "write event", evs[len(evs)-1], ev)

	stored.Host = "db2.example"
	stored.Port = 6432
	stored.Password = []byte("sealed-2")
	stored.UpdatedAt = f.tick()
	got, err = s.Credentials().PutPGCreds(t.Context(), stored, f.event(audit.PGCredsWrite, a.ID))
	wantOK(t, "PutPGCreds(replace)", err)
	want = stored
	want.Version = 2
	samePGCreds(t, "replaced", got, want)
	stored, err = s.Credentials().GetPGCreds(t.Context(), a.ID)
	wantOK(t, "GetPGCreds", err)
	samePGCreds(t, "stored after replace", stored, want)
}

func testPGCredsConflicts(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("svc")
	b := f.account("svc2")
	c := storage.PGCreds{AccountID: a.ID, Host: "h", Port: 5432, Database: "d", Username: "u", Password: []byte("p"), UpdatedAt: f.tick()}
	v1, err := s.Credentials().PutPGCreds(t.Context(), c, f.event(audit.PGCredsWrite, a.ID))
	wantOK(t, "PutPGCreds", err)
	before := f.eventCount()

	for _, tc := range []struct {
		name string
		c    storage.PGCreds
	}{
		{"create over existing", c},
		{"stale version", func() storage.PGCreds { x := v1; x.Version = 2; x.Host = "x"; return x }()},
		{"replace missing", storage.PGCreds{AccountID: b.ID, Host: "h", Port: 1, Password: []byte("p"), Version: 1}},
	} {
		_, err := s.Credentials().PutPGCreds(t.Context(), tc.c, f.event(audit.PGCredsWrite, tc.c.AccountID))
		wantKind(t, "PutPGCreds("+tc.name+")", err, sdk.ErrConflict)
	}
	got, err := s.Credentials().GetPGCreds(t.Context(), a.ID)
	wantOK(t, "GetPGCreds", err)
	samePGCreds(t, "unchanged", got, v1)
	_, err = s.Credentials().GetPGCreds(t.Context(), b.ID)
	wantKind(t, "GetPGCreds(svc2)", err, sdk.ErrNotFound)
	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after failed puts", before, n)
	}
}

func testPGCredsUnknownAccount(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	f.account("svc")
	before := f.eventCount()
	for _, v := range []int64{0, 1} {
		c := storage.PGCreds{AccountID: newID(), Host: "h", Port: 5432, Database: "d", Username: "u", Password: []byte("p"), UpdatedAt: f.tick(), Version: v}
		_, err := s.Credentials().PutPGCreds(t.Context(), c, f.event(audit.PGCredsWrite, c.AccountID))
		wantKind(t, "PutPGCreds(unknown account)", err, sdk.ErrNotFound)
	}
	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after failed puts", before, n)
	}
}
