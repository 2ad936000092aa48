package storagetest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

func chainCases() []testCase {
	return []testCase{
		{"chain: every write that stores an event links it", testChainEveryWrite},
		{"chain: concurrent writers keep one linear chain", testChainConcurrent},
		{"chain: a failed write leaves no event and no gap", testChainFailedWrites},
		{"chain: an event read back hashes to its hash", testChainReadBack},
		{"sink cursors: monotonic, per sink", testSinkCursors},
		{"sink cursors: concurrent setters keep the highest", testSinkCursorsConcurrent},
		{"sink cursors: bad arguments", testSinkCursorsInvalid},
	}
}

// VerifyChain fails t unless evs, every event of a store oldest first
// (ReadEvents from seq 0), form one valid chain: the first links to
// audit.GenesisHash, each PrevHash is the Hash before it, each Hash is
// audit.ChainHash over the event as read back, and Seq strictly
// increases. Backend tests use it on stores the suite does not build.
func VerifyChain(t testing.TB, evs []audit.Event) {
	t.Helper()
	prev := audit.GenesisHash()
	var last int64
	for i, ev := range evs {
		switch {
		case ev.Seq <= last:
			t.Fatalf("event %d (%s): seq %d after %d, not strictly increasing", i, ev.ID, ev.Seq, last)
		case !bytes.Equal(ev.PrevHash, prev):
			t.Fatalf("event %d (seq %d): PrevHash %x, want the hash before it %x", i, ev.Seq, ev.PrevHash, prev)
		case len(ev.Hash) != audit.HashSize:
			t.Fatalf("event %d (seq %d): hash has %d bytes, want %d", i, ev.Seq, len(ev.Hash), audit.HashSize)
		case !bytes.Equal(ev.Hash, audit.ChainHash(ev.PrevHash, ev)):
			t.Fatalf("event %d (seq %d): Hash %x is not ChainHash of the event as read back (%x)",
				i, ev.Seq, ev.Hash, audit.ChainHash(ev.PrevHash, ev))
		}
		prev, last = ev.Hash, ev.Seq
	}
}

// testChainEveryWrite: every kind of write that takes an event stores it
// chained, and ListEvents reports the same links as ReadEvents.
func testChainEveryWrite(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	ctx := t.Context()
	a := f.account("alice", "admin")
	a.Roles = []string{"admin", "user"}
	a = f.update(a, storage.UpdateOptions{})
	tok := f.token(a.ID, f.tick(), f.tick().Add(time.Hour))
	renewed := storage.Token{JTI: newID(), AccountID: a.ID, Kind: storage.Session, KID: "kid-1",
		IssuedAt: f.tick(), ExpiresAt: f.tick().Add(time.Hour)}
	wantOK(t, "CreateToken(replaces)", s.Tokens().CreateToken(ctx, renewed, tok.JTI, f.event(audit.TokenRenew, a.ID)))
	wantOK(t, "RevokeToken", s.Tokens().RevokeToken(ctx, renewed.JTI, f.tick(), "logout", f.event(audit.Logout, a.ID)))
	_, err := s.Credentials().PutPGCreds(ctx, storage.PGCreds{AccountID: a.ID, Host: "h", Port: 5432,
		Database: "d", Username: "u", Password: []byte("sealed"), UpdatedAt: f.tick()}, f.event(audit.PGCredsWrite, a.ID))
	wantOK(t, "PutPGCreds", err)
	wantOK(t, "AppendEvent", s.Audit().AppendEvent(ctx, f.event(audit.PGCredsRead, a.ID)))

	all := f.events()
	if len(all) != 7 {
		t.Fatalf("events = %d, want 7 (one per write)", len(all))
	}
	VerifyChain(t, all)

	listed, err := s.Audit().ListEvents(ctx, storage.EventFilter{Limit: 100})
	wantOK(t, "ListEvents", err)
	slices.Reverse(listed)
	if len(listed) != len(all) {
		t.Fatalf("ListEvents = %d events, ReadEvents %d", len(listed), len(all))
	}
	for i := range all {
		if !bytes.Equal(listed[i].PrevHash, all[i].PrevHash) || !bytes.Equal(listed[i].Hash, all[i].Hash) {
			t.Errorf("event seq %d: ListEvents links (%x, %x) differ from ReadEvents (%x, %x)",
				all[i].Seq, listed[i].PrevHash, listed[i].Hash, all[i].PrevHash, all[i].Hash)
		}
	}
}

// testChainConcurrent: many writers of several kinds at once still yield
// one chain with no fork, each event linked to the one committed before.
func testChainConcurrent(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	ctx := t.Context()
	const perWriter = 15
	accounts := make([]storage.Account, writers)
	for i := range accounts {
		accounts[i] = f.account(fmt.Sprintf("user%d", i))
	}
	// Events are built before the writers start: the fixture is not safe
	// for concurrent use.
	type op struct {
		ev  audit.Event
		tok storage.Token
	}
	ops := make([][]op, writers)
	for w := range ops {
		for j := range perWriter {
			o := op{ev: f.event(audit.LoginFailure, accounts[w].ID)}
			if j%3 == 1 {
				o.tok = storage.Token{JTI: newID(), AccountID: accounts[w].ID, Kind: storage.Session,
					KID: "kid-1", IssuedAt: f.tick(), ExpiresAt: f.tick().Add(time.Hour)}
			}
			ops[w] = append(ops[w], o)
		}
	}
	before := f.eventCount()
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for _, o := range ops[w] {
				var err error
				if o.tok.JTI != "" {
					err = s.Tokens().CreateToken(ctx, o.tok, "", o.ev)
				} else {
					err = s.Audit().AppendEvent(ctx, o.ev)
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		wantOK(t, fmt.Sprintf("writer %d", w), err)
	}
	all := f.events()
	if want := before + writers*perWriter; len(all) != want {
		t.Fatalf("events = %d, want %d", len(all), want)
	}
	VerifyChain(t, all)
}

// testChainFailedWrites: writes that fail (a duplicate event, a stale
// version, a failed guard, a bad renewal, an unknown account) store no
// event, and the next event links to the last one stored.
func testChainFailedWrites(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	ctx := t.Context()
	admin := f.account("root", "admin")
	first := f.event(audit.LoginFailure, "")
	wantOK(t, "AppendEvent", s.Audit().AppendEvent(ctx, first))
	before := f.events()

	dup := f.event(audit.LoginFailure, "")
	dup.ID = first.ID
	wantKind(t, "AppendEvent(duplicate id)", s.Audit().AppendEvent(ctx, dup), sdk.ErrConflict)

	stale := admin
	stale.Version = admin.Version + 5
	stale.UpdatedAt = f.tick()
	_, err := s.Accounts().UpdateAccount(ctx, stale, storage.UpdateOptions{}, f.event(audit.AccountUpdate, admin.ID))
	wantKind(t, "UpdateAccount(stale version)", err, sdk.ErrConflict)

	demoted := admin
	demoted.Roles = nil
	demoted.UpdatedAt = f.tick()
	_, err = s.Accounts().UpdateAccount(ctx, demoted, storage.UpdateOptions{KeepActiveAdmin: true}, f.event(audit.RoleChange, admin.ID))
	wantKind(t, "UpdateAccount(last admin demoted)", err, sdk.ErrPrecondition)

	bad := storage.Token{JTI: newID(), AccountID: admin.ID, Kind: storage.Session, IssuedAt: f.tick(), ExpiresAt: f.tick().Add(time.Hour)}
	err = s.Tokens().CreateToken(ctx, bad, newID(), f.event(audit.TokenRenew, admin.ID))
	if err == nil {
		t.Fatal("CreateToken(replaces an unknown token) succeeded")
	}
	orphan := storage.Token{JTI: newID(), AccountID: newID(), Kind: storage.Session, IssuedAt: f.tick(), ExpiresAt: f.tick().Add(time.Hour)}
	wantKind(t, "CreateToken(unknown account)", s.Tokens().CreateToken(ctx, orphan, "", f.event(audit.TokenIssue, orphan.AccountID)), sdk.ErrNotFound)

	if got := f.events(); len(got) != len(before) {
		t.Fatalf("failed writes stored events: %d -> %d", len(before), len(got))
	}
	next := f.event(audit.LoginFailure, "")
	wantOK(t, "AppendEvent(after failures)", s.Audit().AppendEvent(ctx, next))
	all := f.events()
	if len(all) != len(before)+1 || all[len(all)-1].ID != next.ID {
		t.Fatalf("events = %v, want the earlier ones and %s", eventIDs(all), next.ID)
	}
	VerifyChain(t, all)
	if !bytes.Equal(all[len(all)-1].PrevHash, before[len(before)-1].Hash) {
		t.Error("the event after the failed writes does not link to the last stored one")
	}
}

// testChainReadBack: the hash covers the event as the producer gave it,
// to the microsecond (a time finer than that is kept to the microsecond),
// and what is read back hashes to the stored Hash.
func testChainReadBack(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	ev := f.event(audit.LoginSuccess, newID())
	ev.Time = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	ev.Details = map[string]string{"b": "2", "a": "1", "empty": "", "utf8": "héllo \"q\"\n"}
	wantOK(t, "AppendEvent", s.Audit().AppendEvent(t.Context(), ev))
	all := f.events()
	if len(all) != 1 {
		t.Fatalf("events = %d, want 1", len(all))
	}
	got := all[0]
	if got.Time.UnixMicro() != ev.Time.UnixMicro() {
		t.Errorf("time read back %v, want %v to the microsecond", got.Time, ev.Time)
	}
	if !bytes.Equal(got.PrevHash, audit.GenesisHash()) {
		t.Errorf("first event PrevHash = %x, want the genesis hash", got.PrevHash)
	}
	if !bytes.Equal(got.Hash, audit.ChainHash(got.PrevHash, got)) {
		t.Error("the event read back does not hash to its Hash")
	}
	ev.Seq = got.Seq
	if !bytes.Equal(got.Hash, audit.ChainHash(audit.GenesisHash(), ev)) {
		t.Error("Hash does not cover the event as the producer gave it")
	}
	bySeq, err := s.Audit().ListEvents(t.Context(), storage.EventFilter{Type: audit.LoginSuccess})
	wantOK(t, "ListEvents", err)
	if len(bySeq) != 1 || !bytes.Equal(bySeq[0].Hash, got.Hash) || !bytes.Equal(bySeq[0].PrevHash, got.PrevHash) {
		t.Errorf("ListEvents = %+v, want the event with its links", bySeq)
	}
}

func testSinkCursors(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := s.Audit()
	cursor := func(sink string) int64 {
		t.Helper()
		seq, err := a.SinkCursor(ctx, sink)
		wantOK(t, "SinkCursor("+sink+")", err)
		return seq
	}
	if got := cursor("file"); got != 0 {
		t.Fatalf("SinkCursor(new) = %d, want 0", got)
	}
	wantOK(t, "SetSinkCursor(file, 5)", a.SetSinkCursor(ctx, "file", 5))
	if got := cursor("file"); got != 5 {
		t.Fatalf("SinkCursor = %d, want 5", got)
	}
	wantOK(t, "SetSinkCursor(file, 3)", a.SetSinkCursor(ctx, "file", 3))
	if got := cursor("file"); got != 5 {
		t.Fatalf("SinkCursor after a lower set = %d, want 5 (never backwards)", got)
	}
	wantOK(t, "SetSinkCursor(file, 5) again", a.SetSinkCursor(ctx, "file", 5))
	wantOK(t, "SetSinkCursor(file, 9)", a.SetSinkCursor(ctx, "file", 9))
	if got := cursor("file"); got != 9 {
		t.Fatalf("SinkCursor = %d, want 9", got)
	}
	if got := cursor("webhook"); got != 0 {
		t.Fatalf("SinkCursor(other sink) = %d, want 0: cursors are per sink", got)
	}
	long := strings.Repeat("s", storage.MaxNameLen)
	wantOK(t, "SetSinkCursor(longest name)", a.SetSinkCursor(ctx, long, 1))
	if got := cursor(long); got != 1 {
		t.Fatalf("SinkCursor(longest name) = %d, want 1", got)
	}
	if got := cursor("file"); got != 9 {
		t.Fatalf("SinkCursor(file) = %d after other sinks moved, want 9", got)
	}
	wantOK(t, "SetSinkCursor(other, 0)", a.SetSinkCursor(ctx, "zero", 0))
	if got := cursor("zero"); got != 0 {
		t.Fatalf("SinkCursor(zero) = %d, want 0", got)
	}
}

func testSinkCursorsConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for j := range 10 {
				// Writers interleave high and low values.
				if err := s.Audit().SetSinkCursor(ctx, "shared", int64((w*7+j*13)%100)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	want := int64(0)
	for w := range writers {
		for j := range 10 {
			want = max(want, int64((w*7+j*13)%100))
		}
	}
	for w, err := range errs {
		wantOK(t, fmt.Sprintf("writer %d", w), err)
	}
	got, err := s.Audit().SinkCursor(ctx, "shared")
	wantOK(t, "SinkCursor", err)
	if got != want {
		t.Fatalf("SinkCursor = %d, want the highest set, %d", got, want)
	}
}

func testSinkCursorsInvalid(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := s.Audit()
	tooLong := strings.Repeat("s", storage.MaxNameLen+1)
	for _, name := range []string{"", tooLong} {
		_, err := a.SinkCursor(ctx, name)
		wantKind(t, fmt.Sprintf("SinkCursor(%d-byte name)", len(name)), err, sdk.ErrInvalidArgument)
		wantKind(t, fmt.Sprintf("SetSinkCursor(%d-byte name)", len(name)), a.SetSinkCursor(ctx, name, 1), sdk.ErrInvalidArgument)
	}
	wantKind(t, "SetSinkCursor(negative seq)", a.SetSinkCursor(ctx, "file", -1), sdk.ErrInvalidArgument)
	got, err := a.SinkCursor(ctx, "file")
	wantOK(t, "SinkCursor", err)
	if got != 0 {
		t.Fatalf("SinkCursor after refused sets = %d, want 0", got)
	}
}
