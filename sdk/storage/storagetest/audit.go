package storagetest

import (
	"slices"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

func auditCases() []testCase {
	return []testCase{
		{"append and read events", testAppendReadEvents},
		{"list events filters", testListEventsFilters},
		{"list events paging", testListEventsPaging},
		{"event seq strictly increasing", testEventSeq},
	}
}

func testAppendReadEvents(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	full := f.event(audit.LoginFailure, "")
	full.ActorID = ""
	full.Outcome = audit.Failure
	full.Details = map[string]string{"reason": "bad_password", "empty": "", "utf8": "héllo \"quoted\""}
	bare := audit.Event{ID: newID(), Time: f.tick(), Type: audit.PluginStart, Outcome: audit.Success}
	wantOK(t, "AppendEvent(full)", s.Audit().AppendEvent(t.Context(), full))
	wantOK(t, "AppendEvent(bare)", s.Audit().AppendEvent(t.Context(), bare))

	dup := f.event(audit.LoginFailure, "")
	dup.ID = full.ID
	wantKind(t, "AppendEvent(duplicate id)", s.Audit().AppendEvent(t.Context(), dup), sdk.ErrConflict)

	evs := f.events()
	if len(evs) != 2 {
		t.Fatalf("events = %d, want 2", len(evs))
	}
	sameEvent(t, "full", evs[0], full)
	sameEvent(t, "bare", evs[1], bare)
	if len(evs[1].Details) != 0 {
		t.Errorf("bare details = %v, want none", evs[1].Details)
	}

	got, err := s.Audit().ReadEvents(t.Context(), evs[0].Seq, 10)
	wantOK(t, "ReadEvents(after first)", err)
	if !slices.Equal(eventIDs(got), []string{bare.ID}) {
		t.Errorf("ReadEvents(after first) = %v", eventIDs(got))
	}
	got, err = s.Audit().ReadEvents(t.Context(), 0, 1)
	wantOK(t, "ReadEvents(limit 1)", err)
	if !slices.Equal(eventIDs(got), []string{full.ID}) {
		t.Errorf("ReadEvents(limit 1) = %v", eventIDs(got))
	}
	got, err = s.Audit().ReadEvents(t.Context(), evs[1].Seq, 10)
	wantOK(t, "ReadEvents(at end)", err)
	if len(got) != 0 {
		t.Errorf("ReadEvents(at end) = %v, want none", eventIDs(got))
	}
}

func testListEventsFilters(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	alice, bob := newID(), newID()
	mk := func(typ audit.Type, actor, account string, at time.Time) audit.Event {
		ev := f.event(typ, account)
		ev.ActorID, ev.Time = actor, at
		wantOK(t, "AppendEvent", s.Audit().AppendEvent(t.Context(), ev))
		return ev
	}
	t0 := f.tick()
	e1 := mk(audit.LoginSuccess, alice, alice, t0)
	e2 := mk(audit.LoginFailure, "", bob, t0.Add(time.Second))
	e3 := mk(audit.RoleChange, alice, bob, t0.Add(2*time.Second))
	e4 := mk(audit.LoginSuccess, bob, bob, t0.Add(3*time.Second))
	e5 := mk(audit.PGCredsRead, alice, "", t0.Add(4*time.Second))

	for _, tc := range []struct {
		name string
		f    storage.EventFilter
		want []audit.Event
	}{
		{"all, newest first", storage.EventFilter{}, []audit.Event{e5, e4, e3, e2, e1}},
		{"type", storage.EventFilter{Type: audit.LoginSuccess}, []audit.Event{e4, e1}},
		{"account as actor or subject", storage.EventFilter{AccountID: alice}, []audit.Event{e5, e3, e1}},
		{"account bob", storage.EventFilter{AccountID: bob}, []audit.Event{e4, e3, e2}},
		{"since (inclusive)", storage.EventFilter{Since: t0.Add(2 * time.Second)}, []audit.Event{e5, e4, e3}},
		{"type and account", storage.EventFilter{Type: audit.LoginSuccess, AccountID: bob}, []audit.Event{e4}},
		{"account and since", storage.EventFilter{AccountID: alice, Since: t0.Add(time.Second)}, []audit.Event{e5, e3}},
		{"unknown type", storage.EventFilter{Type: "nope"}, nil},
		// Outside the range of int64 nanoseconds since 1970 (1678-2262):
		// a bound stored as nanoseconds must not wrap around.
		{"since far future", storage.EventFilter{Since: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"since far past", storage.EventFilter{Since: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}, []audit.Event{e5, e4, e3, e2, e1}},
		{"limit", storage.EventFilter{Limit: 2}, []audit.Event{e5, e4}},
	} {
		got, err := s.Audit().ListEvents(t.Context(), tc.f)
		wantOK(t, "ListEvents("+tc.name+")", err)
		if !slices.Equal(eventIDs(got), eventIDs(tc.want)) {
			t.Errorf("%s: ids = %v, want %v", tc.name, eventIDs(got), eventIDs(tc.want))
			continue
		}
		for i := range got {
			sameEvent(t, tc.name, got[i], tc.want[i])
		}
	}
}

func testListEventsPaging(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	acct := newID()
	var want []string // newest first
	for i := range 105 {
		ev := f.event(audit.LoginSuccess, "")
		if i%2 == 0 {
			ev.AccountID = acct
		}
		wantOK(t, "AppendEvent", s.Audit().AppendEvent(t.Context(), ev))
		if i%2 == 0 {
			want = append([]string{ev.ID}, want...)
		}
	}

	all, err := s.Audit().ListEvents(t.Context(), storage.EventFilter{})
	wantOK(t, "ListEvents(default limit)", err)
	if len(all) != 100 {
		t.Errorf("default limit: %d events, want 100", len(all))
	}

	// Page through one account's events with BeforeSeq.
	var got []string
	var before int64
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		page, err := s.Audit().ListEvents(t.Context(), storage.EventFilter{AccountID: acct, Limit: 10, BeforeSeq: before})
		wantOK(t, "ListEvents(page)", err)
		got = append(got, eventIDs(page)...)
		if len(page) < 10 {
			break
		}
		before = page[len(page)-1].Seq
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged ids (%d) differ from the %d expected", len(got), len(want))
	}
}

func testEventSeq(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	// Events from every kind of write share one sequence.
	a := f.account("alice", "admin")
	t0 := f.tick()
	tok := f.token(a.ID, t0, t0.Add(hour))
	wantOK(t, "AppendEvent", s.Audit().AppendEvent(t.Context(), f.event(audit.LoginFailure, a.ID)))
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(t.Context(), tok.JTI, f.tick(), "logout", f.event(audit.Logout, a.ID)))
	a = f.update(a, storage.UpdateOptions{})
	_, err := s.Credentials().PutPGCreds(t.Context(), storage.PGCreds{AccountID: a.ID, Host: "h", Port: 1, Password: []byte("p"), UpdatedAt: f.tick()}, f.event(audit.PGCredsWrite, a.ID))
	wantOK(t, "PutPGCreds", err)
	next := storage.Token{JTI: newID(), AccountID: a.ID, Kind: storage.Session, IssuedAt: f.tick(), ExpiresAt: t0.Add(hour)}
	wantOK(t, "CreateToken", s.Tokens().CreateToken(t.Context(), next, "", f.event(audit.LoginSuccess, a.ID)))

	evs := f.events()
	wantTypes := []audit.Type{audit.AccountCreate, audit.LoginSuccess, audit.LoginFailure, audit.Logout,
		audit.AccountUpdate, audit.PGCredsWrite, audit.LoginSuccess}
	var gotTypes []audit.Type
	for i, ev := range evs {
		gotTypes = append(gotTypes, ev.Type)
		if i > 0 && ev.Seq <= evs[i-1].Seq {
			t.Errorf("seq %d after %d: not strictly increasing", ev.Seq, evs[i-1].Seq)
		}
	}
	if !slices.Equal(gotTypes, wantTypes) {
		t.Errorf("event order = %v, want %v", gotTypes, wantTypes)
	}
	// ListEvents is the same sequence reversed.
	list, err := s.Audit().ListEvents(t.Context(), storage.EventFilter{})
	wantOK(t, "ListEvents", err)
	slices.Reverse(list)
	if !slices.Equal(eventIDs(list), eventIDs(evs)) {
		t.Errorf("ListEvents reversed = %v, want %v", eventIDs(list), eventIDs(evs))
	}
}
