package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// writers is how many goroutines the concurrency cases run.
const writers = 8

func concurrencyCases() []testCase {
	return []testCase{
		{"concurrent CAS: one winner per version", testConcurrentCAS},
		{"concurrent CAS: no lost update", testNoLostUpdate},
		{"concurrent appends", testConcurrentAppends},
		{"concurrent mixed writers: the feed misses nothing", testFeedUnderMixedWriters},
		{"reads during writes", testReadsDuringWrites},
		{"canceled context", testCanceledContext},
	}
}

func testConcurrentCAS(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	before := f.eventCount()

	// Build every request first: the fixture is not safe for concurrent use.
	type req struct {
		a  storage.Account
		ev audit.Event
	}
	reqs := make([]req, writers)
	for i := range reqs {
		x := a
		x.Roles = []string{fmt.Sprintf("r%d", i)}
		x.UpdatedAt = f.tick()
		reqs[i] = req{x, f.event(audit.RoleChange, a.ID)}
	}
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Accounts().UpdateAccount(t.Context(), reqs[i].a, storage.UpdateOptions{}, reqs[i].ev)
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("writers %d and %d both won version 1", winner, i)
			}
			winner = i
		case !errors.Is(err, sdk.ErrConflict):
			t.Errorf("writer %d: err = %v, want conflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got := f.get(a.ID)
	if got.Version != 2 || !slices.Equal(got.Roles, reqs[winner].a.Roles) {
		t.Errorf("stored version %d roles %v; want 2 %v", got.Version, got.Roles, reqs[winner].a.Roles)
	}
	evs := f.events()
	if len(evs) != before+1 || evs[len(evs)-1].ID != reqs[winner].ev.ID {
		t.Errorf("events: %d new, want exactly the winner's", len(evs)-before)
	}
}

func testNoLostUpdate(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	before := f.eventCount()

	// Each writer adds its own role with a read-modify-write retry loop,
	// as the core does; every addition must survive.
	evs := make([][]audit.Event, writers)
	for i := range evs {
		for range 100 {
			evs[i] = append(evs[i], f.event(audit.RoleChange, a.ID))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			role := fmt.Sprintf("r%d", i)
			for attempt := range len(evs[i]) {
				cur, err := s.Accounts().GetAccount(t.Context(), a.ID)
				if err != nil {
					errs[i] = err
					return
				}
				cur.Roles = append(slices.Clone(cur.Roles), role)
				slices.Sort(cur.Roles)
				_, err = s.Accounts().UpdateAccount(t.Context(), cur, storage.UpdateOptions{}, evs[i][attempt])
				if err == nil {
					return
				}
				if !errors.Is(err, sdk.ErrConflict) {
					errs[i] = err
					return
				}
			}
			errs[i] = fmt.Errorf("writer %d: still conflicting after %d attempts", i, len(evs[i]))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := f.get(a.ID)
	var want []string
	for i := range writers {
		want = append(want, fmt.Sprintf("r%d", i))
	}
	if got.Version != 1+writers || !slices.Equal(got.Roles, want) {
		t.Errorf("stored version %d roles %v; want %d %v", got.Version, got.Roles, 1+writers, want)
	}
	if n := f.eventCount(); n != before+writers {
		t.Errorf("events %d -> %d, want +%d (one per successful update)", before, n, writers)
	}
}

func testConcurrentAppends(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	const perWriter = 20
	evs := make([][]audit.Event, writers)
	for i := range evs {
		for range perWriter {
			evs[i] = append(evs[i], f.event(audit.LoginFailure, ""))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			for _, ev := range evs[i] {
				if err := s.Audit().AppendEvent(t.Context(), ev); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		wantOK(t, fmt.Sprintf("writer %d", i), err)
	}
	all := f.events()
	if len(all) != writers*perWriter {
		t.Fatalf("events = %d, want %d", len(all), writers*perWriter)
	}
	// Each writer's events keep their order in the shared sequence.
	pos := map[string]int{}
	for i, ev := range all {
		pos[ev.ID] = i
		if i > 0 && ev.Seq <= all[i-1].Seq {
			t.Errorf("seq %d after %d: not strictly increasing", ev.Seq, all[i-1].Seq)
		}
	}
	for w := range evs {
		for j := 1; j < len(evs[w]); j++ {
			if pos[evs[w][j].ID] < pos[evs[w][j-1].ID] {
				t.Errorf("writer %d: event %d stored before event %d", w, j, j-1)
			}
		}
	}
}

func testReadsDuringWrites(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	const updates = 30
	reqs := make([]audit.Event, updates)
	for i := range reqs {
		reqs[i] = f.event(audit.AccountUpdate, a.ID)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var readErr error
	wg.Go(func() {
		var last int64
		for ctx.Err() == nil {
			got, err := s.Accounts().GetAccount(ctx, a.ID)
			if err != nil {
				if ctx.Err() == nil {
					readErr = err
				}
				return
			}
			if got.Version < last {
				readErr = fmt.Errorf("version went back from %d to %d", last, got.Version)
				return
			}
			last = got.Version
		}
	})
	cur := a
	for i := range updates {
		cur.TOTPLastStep = int64(i + 1)
		next, err := s.Accounts().UpdateAccount(t.Context(), cur, storage.UpdateOptions{}, reqs[i])
		if err != nil {
			cancel()
			wg.Wait()
			t.Fatalf("update %d: %v", i, err)
		}
		cur = next
	}
	cancel()
	wg.Wait()
	if readErr != nil {
		t.Fatalf("reader: %v", readErr)
	}
	if cur.Version != 1+updates {
		t.Errorf("version = %d, want %d", cur.Version, 1+updates)
	}
}

func testCanceledContext(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.account("alice")
	before := f.eventCount()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Accounts().GetAccount(ctx, a.ID); err == nil {
		t.Error("GetAccount with a canceled context succeeded")
	}
	x := a
	x.Status = storage.Inactive
	if _, err := s.Accounts().UpdateAccount(ctx, x, storage.UpdateOptions{}, f.event(audit.AccountUpdate, a.ID)); err == nil {
		t.Error("UpdateAccount with a canceled context succeeded")
	}
	if err := s.Audit().AppendEvent(ctx, f.event(audit.LoginFailure, "")); err == nil {
		t.Error("AppendEvent with a canceled context succeeded")
	}
	sameAccount(t, "unchanged", f.get(a.ID), a)
	if n := f.eventCount(); n != before {
		t.Errorf("events %d -> %d after canceled calls", before, n)
	}
}

func storeCases() []testCase {
	return []testCase{
		{"info ping close", testInfoPingClose},
	}
}

func testInfoPingClose(t *testing.T, s storage.Store) {
	info, err := s.Info(t.Context())
	wantOK(t, "Info", err)
	if info.Name == "" || info.SchemaVersion < 1 {
		t.Errorf("Info = %+v, want a name and schema version >= 1", info)
	}
	wantOK(t, "Ping", s.Ping(t.Context()))
	wantOK(t, "Close", s.Close(t.Context()))
	wantKind(t, "Ping after Close", s.Ping(t.Context()), sdk.ErrUnavailable)
}

// testFeedUnderMixedWriters runs writers of every state-changing method at
// once while a follower reads the feed the way audit delivery does
// (ReadEvents after the last Seq seen, never re-reading). Seq must follow
// commit order, so the follower sees every event exactly once, and each
// writer's events appear in the order it made them.
func testFeedUnderMixedWriters(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	const rounds = 5
	// Build every request first: the fixture is not safe for concurrent use.
	type round struct {
		tok                            storage.Token
		created, revoked, updated, put audit.Event
		read                           audit.Event
		updatedAt, revokedAt           time.Time
	}
	accts := make([]storage.Account, writers)
	plan := make([][]round, writers)
	for w := range writers {
		accts[w] = f.account(fmt.Sprintf("writer%d", w))
		for range rounds {
			t0 := f.tick()
			plan[w] = append(plan[w], round{
				tok:       storage.Token{JTI: newID(), AccountID: accts[w].ID, Kind: storage.Session, KID: "kid-1", IssuedAt: t0, ExpiresAt: t0.Add(hour)},
				created:   f.event(audit.LoginSuccess, accts[w].ID),
				revoked:   f.event(audit.Logout, accts[w].ID),
				updated:   f.event(audit.AccountUpdate, accts[w].ID),
				put:       f.event(audit.PGCredsWrite, accts[w].ID),
				read:      f.event(audit.PGCredsRead, accts[w].ID),
				updatedAt: f.tick(),
				revokedAt: f.tick(),
			})
		}
	}
	before := f.events()
	var after int64
	if len(before) > 0 {
		after = before[len(before)-1].Seq
	}

	// The follower polls until the writers are done, then drains once.
	var seen []audit.Event
	follow := func() error {
		for {
			page, err := s.Audit().ReadEvents(t.Context(), after, 7)
			if err != nil || len(page) == 0 {
				return err
			}
			seen = append(seen, page...)
			after = page[len(page)-1].Seq
		}
	}
	done := make(chan struct{})
	followed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-done:
				followed <- follow()
				return
			default:
			}
			if err := follow(); err != nil {
				followed <- err
				return
			}
		}
	}()

	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			a := accts[w]
			var creds storage.PGCreds
			for _, r := range plan[w] {
				ctx := t.Context()
				if err := s.Tokens().CreateToken(ctx, r.tok, "", r.created); err != nil {
					errs[w] = fmt.Errorf("CreateToken: %w", err)
					return
				}
				if err := s.Tokens().RevokeToken(ctx, r.tok.JTI, r.revokedAt, "logout", r.revoked); err != nil {
					errs[w] = fmt.Errorf("RevokeToken: %w", err)
					return
				}
				a.UpdatedAt = r.updatedAt
				a.Roles = []string{fmt.Sprintf("r%d", a.Version)}
				next, err := s.Accounts().UpdateAccount(ctx, a, storage.UpdateOptions{}, r.updated)
				if err != nil {
					errs[w] = fmt.Errorf("UpdateAccount: %w", err)
					return
				}
				a = next
				creds.AccountID, creds.Host, creds.Port = a.ID, "db.example", 5432+int(a.Version)
				creds.Password, creds.UpdatedAt = []byte("sealed"), r.updatedAt
				if creds, err = s.Credentials().PutPGCreds(ctx, creds, r.put); err != nil {
					errs[w] = fmt.Errorf("PutPGCreds: %w", err)
					return
				}
				if err := s.Audit().AppendEvent(ctx, r.read); err != nil {
					errs[w] = fmt.Errorf("AppendEvent: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	wantOK(t, "follower ReadEvents", <-followed)
	for w, err := range errs {
		wantOK(t, fmt.Sprintf("writer %d", w), err)
	}

	all := f.events()
	if want := len(before) + writers*rounds*5; len(all) != want {
		t.Fatalf("stored %d events, want %d", len(all), want)
	}
	// The follower saw exactly the stored sequence after its start.
	if !slices.Equal(eventIDs(seen), eventIDs(all[len(before):])) {
		t.Fatalf("the follower saw %d events, storage holds %d after its start: a commit landed behind a Seq already read", len(seen), len(all)-len(before))
	}
	pos := map[string]int{}
	for i, ev := range all {
		pos[ev.ID] = i
		if i > 0 && ev.Seq <= all[i-1].Seq {
			t.Errorf("seq %d after %d: not strictly increasing", ev.Seq, all[i-1].Seq)
		}
	}
	for w := range writers {
		var order []audit.Event
		for _, r := range plan[w] {
			order = append(order, r.created, r.revoked, r.updated, r.put, r.read)
		}
		for j := 1; j < len(order); j++ {
			if pos[order[j].ID] < pos[order[j-1].ID] {
				t.Errorf("writer %d: %s stored before %s", w, order[j].Type, order[j-1].Type)
			}
		}
		if got := f.get(accts[w].ID); got.Version != int64(1+rounds) {
			t.Errorf("writer %d: account version %d, want %d", w, got.Version, 1+rounds)
		}
	}
}
