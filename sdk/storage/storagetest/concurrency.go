package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

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
