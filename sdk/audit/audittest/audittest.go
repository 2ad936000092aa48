// Package audittest is the conformance suite for audit.Sink. Every sink
// backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) { ... })
//	}
//
// newSink returns a fresh sink and a function that reads back, in order,
// every event the sink has durably accepted so far (from the file, the
// remote store, ...). The suite closes the sink when the subtest ends.
package audittest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
)

// NewSinkFunc opens a fresh sink for one subtest and returns it with a
// function that reads back what it has accepted.
type NewSinkFunc func(t *testing.T) (audit.Sink, func() []audit.Event)

// Run runs the suite.
func Run(t *testing.T, newSink NewSinkFunc) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s audit.Sink, read func() []audit.Event)
	}{
		{"info", testInfo},
		{"deliver and read back", testDeliver},
		{"empty batch", testEmpty},
		{"successive batches keep order", testOrder},
		{"redelivery is tolerated", testRedeliver},
		{"concurrent deliver", testConcurrent},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			s, read := newSink(t)
			t.Cleanup(func() {
				// t.Context() is already cancelled when cleanups run; a
				// backend behind the plugin wire honours that, so close
				// with a context that is not.
				if err := s.Close(context.WithoutCancel(t.Context())); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s, read)
		})
	}
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

// Event returns a fully populated test event with sequence seq.
func Event(seq int64) audit.Event {
	return audit.Event{
		ID:        fmt.Sprintf("00000000-0000-4000-8000-%012d", seq),
		Seq:       seq,
		Time:      base.Add(time.Duration(seq) * time.Second),
		Type:      audit.LoginFailure,
		ActorID:   fmt.Sprintf("actor-%d", seq),
		AccountID: fmt.Sprintf("account-%d", seq),
		IP:        "192.0.2.7",
		RequestID: fmt.Sprintf("req-%d", seq),
		Outcome:   audit.Failure,
		Details:   map[string]string{"reason": "bad_password", "n": fmt.Sprint(seq)},
	}
}

func events(from, n int64) []audit.Event {
	out := make([]audit.Event, 0, n)
	for i := range n {
		out = append(out, Event(from+i))
	}
	return out
}

// Equal reports why a and b differ, or "" when they are the same event.
// Times are compared with Equal; a nil and an empty Details are the same.
func Equal(a, b audit.Event) string {
	switch {
	case a.ID != b.ID:
		return fmt.Sprintf("ID %q != %q", a.ID, b.ID)
	case a.Seq != b.Seq:
		return fmt.Sprintf("Seq %d != %d", a.Seq, b.Seq)
	case !a.Time.Equal(b.Time):
		return fmt.Sprintf("Time %v != %v", a.Time, b.Time)
	case a.Type != b.Type, a.ActorID != b.ActorID, a.AccountID != b.AccountID,
		a.IP != b.IP, a.RequestID != b.RequestID, a.Outcome != b.Outcome:
		return fmt.Sprintf("fields differ: %+v != %+v", a, b)
	case len(a.Details) != len(b.Details) || (len(a.Details) > 0 && !maps.Equal(a.Details, b.Details)):
		return fmt.Sprintf("Details %v != %v", a.Details, b.Details)
	}
	return ""
}

// dedupe drops repeated IDs, keeping first occurrences in order.
func dedupe(evs []audit.Event) []audit.Event {
	seen := map[string]bool{}
	var out []audit.Event
	for _, e := range evs {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

func wantEvents(t *testing.T, got, want []audit.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read back %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if d := Equal(got[i], want[i]); d != "" {
			t.Fatalf("event %d: %s", i, d)
		}
	}
}

func testInfo(t *testing.T, s audit.Sink, _ func() []audit.Event) {
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name == "" {
		t.Fatal("Info().Name is empty")
	}
}

func testDeliver(t *testing.T, s audit.Sink, read func() []audit.Event) {
	evs := events(1, 3)
	// Optional fields empty and no details: must survive as such.
	evs = append(evs, audit.Event{
		ID: "00000000-0000-4000-8000-999999999999", Seq: 4, Time: base,
		Type: audit.KeyRotation, Outcome: audit.Success,
	})
	// Awkward but legal values.
	odd := Event(5)
	odd.Details = map[string]string{"quote\"": "line\nbreak", "unicode": "☃ é", "empty": ""}
	odd.IP = "2001:db8::1"
	evs = append(evs, odd)
	if err := s.Deliver(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, read(), evs)
}

func testEmpty(t *testing.T, s audit.Sink, read func() []audit.Event) {
	if err := s.Deliver(t.Context(), nil); err != nil {
		t.Fatalf("Deliver(nil) = %v", err)
	}
	if err := s.Deliver(t.Context(), []audit.Event{}); err != nil {
		t.Fatalf("Deliver(empty) = %v", err)
	}
	if got := read(); len(got) != 0 {
		t.Fatalf("read back %d events after empty deliveries", len(got))
	}
}

func testOrder(t *testing.T, s audit.Sink, read func() []audit.Event) {
	var all []audit.Event
	for b := range int64(5) {
		batch := events(1+b*4, 4)
		if err := s.Deliver(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
	}
	wantEvents(t, read(), all)
}

func testRedeliver(t *testing.T, s audit.Sink, read func() []audit.Event) {
	a, b := events(1, 3), events(4, 3)
	if err := s.Deliver(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	// The dispatcher resends a whole batch after an error it could not
	// tell apart from failure; the sink must accept it.
	if err := s.Deliver(t.Context(), a); err != nil {
		t.Fatalf("redelivery = %v", err)
	}
	// Overlapping batch.
	if err := s.Deliver(t.Context(), append(a[1:], b...)); err != nil {
		t.Fatalf("overlapping delivery = %v", err)
	}
	// Duplicates may appear in what is read back (consumers drop them by
	// ID), but every event must be there, in order.
	wantEvents(t, dedupe(read()), append(a, b...))
}

func testConcurrent(t *testing.T, s audit.Sink, read func() []audit.Event) {
	const workers, perWorker = 8, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for w := range int64(workers) {
		wg.Go(func() {
			for i := range int64(perWorker) {
				e := Event(1 + w*perWorker + i)
				if err := s.Deliver(t.Context(), []audit.Event{e}); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got := dedupe(read())
	if len(got) != workers*perWorker {
		t.Fatalf("read back %d distinct events, want %d", len(got), workers*perWorker)
	}
	byID := map[string]audit.Event{}
	for _, e := range got {
		byID[e.ID] = e
	}
	for n := int64(1); n <= workers*perWorker; n++ {
		want := Event(n)
		g, ok := byID[want.ID]
		if !ok {
			t.Fatalf("event %s missing", want.ID)
		}
		if d := Equal(g, want); d != "" {
			t.Fatalf("event %s: %s", want.ID, d)
		}
	}
}
