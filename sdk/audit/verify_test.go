package audit_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
)

// chainBuilder makes a chain the way storage does: each event's PrevHash
// is the previous Hash.
type chainBuilder struct {
	t      *testing.T
	events []audit.Event
	kid    string
	priv   ed25519.PrivateKey
	skip   int64 // added once to the next Seq: a hole in the numbering
}

func newChainBuilder(t *testing.T) *chainBuilder {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &chainBuilder{t: t, kid: "kid-1", priv: priv}
}

func (b *chainBuilder) keys() audit.KeyLookup {
	pub := b.priv.Public().(ed25519.PublicKey)
	return func(kid string) (ed25519.PublicKey, bool) {
		if kid == b.kid {
			return pub, true
		}
		return nil, false
	}
}

func (b *chainBuilder) head() (int64, []byte) {
	if len(b.events) == 0 {
		return 0, audit.GenesisHash()
	}
	last := b.events[len(b.events)-1]
	return last.Seq, last.Hash
}

func (b *chainBuilder) append(ev audit.Event) {
	seq, prev := b.head()
	ev.Seq = seq + 1 + b.skip
	b.skip = 0
	ev.PrevHash = prev
	ev.Hash = audit.ChainHash(prev, ev)
	b.events = append(b.events, ev)
}

func (b *chainBuilder) add(n int) {
	for range n {
		i := len(b.events)
		b.append(audit.Event{
			ID:   fmt.Sprintf("ev-%d", i+1),
			Time: time.Date(2026, 12, 4, 5, 0, i, 0, time.UTC),
			Type: audit.LoginFailure, AccountID: "acc", IP: "127.0.0.1",
			Outcome: audit.Failure, Details: map[string]string{"reason": "bad_password"},
		})
	}
}

// checkpointDetails signs (seq, head) with priv as the checkpointer does.
func checkpointDetails(priv ed25519.PrivateKey, kid string, seq int64, head []byte) map[string]string {
	sig := ed25519.Sign(priv, audit.CheckpointMessage(seq, head))
	return map[string]string{
		"seq": strconv.FormatInt(seq, 10), "hash": hex.EncodeToString(head),
		"kid": kid, "sig": base64.RawURLEncoding.EncodeToString(sig),
	}
}

// checkpoint appends a checkpoint of the current head.
func (b *chainBuilder) checkpoint() {
	seq, head := b.head()
	b.appendCheckpoint(checkpointDetails(b.priv, b.kid, seq, head))
}

func (b *chainBuilder) appendCheckpoint(d map[string]string) {
	b.append(audit.Event{
		ID: fmt.Sprintf("cp-%d", len(b.events)+1), Time: time.Date(2026, 12, 4, 6, 0, len(b.events), 0, time.UTC),
		Type: audit.Checkpoint, Outcome: audit.Success, Details: d,
	})
}

func verifyAll(keys audit.KeyLookup, evs []audit.Event) audit.Result {
	v := audit.NewVerifier(keys)
	for _, ev := range evs {
		if v.Add(ev) != nil {
			break
		}
	}
	return v.Result()
}

// sampleChain: 10 events, checkpoint (seq 11), 5 events, checkpoint
// (seq 17), 3 events: 20 in all.
func sampleChain(t *testing.T) *chainBuilder {
	b := newChainBuilder(t)
	b.add(10)
	b.checkpoint()
	b.add(5)
	b.checkpoint()
	b.add(3)
	return b
}

func TestVerifyIntact(t *testing.T) {
	b := sampleChain(t)
	r := verifyAll(b.keys(), b.events)
	if r.Break != nil {
		t.Fatalf("intact chain broken: %v", r.Break)
	}
	if r.Events != 20 || r.Checkpoints != 2 || r.LastCheckpointSeq != 17 || r.LastCheckpointHead != 16 ||
		r.AfterCheckpoint != 4 || r.Stale != 0 || r.HeadSeq != 20 || r.Gaps != 0 {
		t.Fatalf("result = %+v", r)
	}
	if !r.LastCheckpointTime.Equal(b.events[16].Time) || !r.HeadTime.Equal(b.events[19].Time) {
		t.Fatalf("last checkpoint time %v (want %v), head time %v (want %v)",
			r.LastCheckpointTime, b.events[16].Time, r.HeadTime, b.events[19].Time)
	}
	// Verifying in two runs, the second from where the first stopped,
	// gives the same head.
	v := audit.NewVerifier(b.keys())
	for _, ev := range b.events[:12] {
		if err := v.Add(ev); err != nil {
			t.Fatal(err)
		}
	}
	first := v.Result()
	v2 := audit.NewVerifierFrom(first.HeadSeq, first.HeadHash, b.keys())
	for _, ev := range b.events[12:] {
		if err := v2.Add(ev); err != nil {
			t.Fatal(err)
		}
	}
	if r2 := v2.Result(); r2.HeadSeq != 20 || string(r2.HeadHash) != string(r.HeadHash) || r2.Checkpoints != 1 {
		t.Fatalf("resumed result = %+v", r2)
	}
}

func TestVerifyEmpty(t *testing.T) {
	r := audit.NewVerifier(nil).Result()
	if r.Break != nil || r.Events != 0 || r.HeadSeq != 0 {
		t.Fatalf("empty = %+v", r)
	}
}

func TestVerifyFindsFirstBrokenLink(t *testing.T) {
	_, otherPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		tamper  func(b *chainBuilder) []audit.Event
		wantSeq int64
		reason  string
	}{
		{"case=modified field", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			evs[4].AccountID = "someone-else"
			return evs
		}, 5, "modified"},
		{"case=modified detail", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			evs[6].Details = map[string]string{"reason": "ok"}
			return evs
		}, 7, "modified"},
		{"case=modified and rehashed", func(b *chainBuilder) []audit.Event {
			// An attacker who recomputes the event's own hash breaks the
			// next link instead.
			evs := slices.Clone(b.events)
			evs[4].AccountID = "someone-else"
			evs[4].Hash = audit.ChainHash(evs[4].PrevHash, evs[4])
			return evs
		}, 6, "deleted or changed"},
		{"case=deleted event", func(b *chainBuilder) []audit.Event {
			return slices.Delete(slices.Clone(b.events), 3, 4)
		}, 5, "deleted or changed"},
		{"case=deleted first event", func(b *chainBuilder) []audit.Event {
			return slices.Clone(b.events[1:])
		}, 2, "genesis"},
		{"case=reordered events", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			evs[7], evs[8] = evs[8], evs[7]
			return evs
		}, 9, "deleted or changed"},
		{"case=renumbered", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			evs[7].Seq, evs[8].Seq = evs[8].Seq, evs[7].Seq
			evs[7], evs[8] = evs[8], evs[7]
			return evs
		}, 8, "deleted or changed"},
		{"case=repeated seq", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			return slices.Insert(evs, 3, evs[2])
		}, 3, "reordered or repeated"},
		{"case=rewritten chain after a deletion", func(b *chainBuilder) []audit.Event {
			// Delete event 3 and recompute every later hash: only the
			// checkpoints catch it.
			nb := &chainBuilder{t: b.t, kid: b.kid, priv: b.priv}
			for i, ev := range b.events {
				if i == 2 {
					continue
				}
				ev.Seq = 0
				nb.append(ev)
			}
			return nb.events
		}, 10, "checkpoint"},
		{"case=forged checkpoint", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			cp := evs[10]
			d := checkpointDetails(otherPriv, b.kid, cp.Seq-1, evs[9].Hash)
			cp.Details = d
			evs[10] = cp
			return rechain(evs, 10)
		}, 11, "does not verify"},
		{"case=unchained events", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			evs[0].PrevHash, evs[0].Hash = nil, nil
			return evs
		}, 1, "no chain hashes"},
		{"case=checkpoint from unknown key", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			cp := evs[10]
			cp.Details = checkpointDetails(otherPriv, "kid-unknown", 10, evs[9].Hash)
			evs[10] = cp
			return rechain(evs, 10)
		}, 11, "unknown key"},
		{"case=checkpoint naming a hash not in the chain", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			cp := evs[10]
			cp.Details = checkpointDetails(b.priv, b.kid, 10, audit.ChainHash(audit.GenesisHash(), evs[9]))
			evs[10] = cp
			return rechain(evs, 10)
		}, 11, "but the chain has"},
		{"case=checkpoint naming a later seq", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			cp := evs[10]
			cp.Details = checkpointDetails(b.priv, b.kid, 12, evs[9].Hash)
			evs[10] = cp
			return rechain(evs, 10)
		}, 11, "not before its own"},
		{"case=checkpoint with a bad signature encoding", func(b *chainBuilder) []audit.Event {
			evs := slices.Clone(b.events)
			cp := evs[10]
			cp.Details = checkpointDetails(b.priv, b.kid, 10, evs[9].Hash)
			cp.Details["sig"] = "not base64!"
			evs[10] = cp
			return rechain(evs, 10)
		}, 11, "sig is not"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := sampleChain(t)
			r := verifyAll(b.keys(), tc.tamper(b))
			if r.Break == nil {
				t.Fatalf("tampered chain verified: %+v", r)
			}
			if r.Break.Seq != tc.wantSeq || !strings.Contains(r.Break.Reason, tc.reason) {
				t.Fatalf("break = %v, want seq %d with %q", r.Break, tc.wantSeq, tc.reason)
			}
			if r.Break.ID == "" || !strings.Contains(r.Break.Error(), strconv.FormatInt(tc.wantSeq, 10)) {
				t.Fatalf("break does not name the event: %v", r.Break)
			}
		})
	}
}

// rechain recomputes the hashes from index i on, as an attacker with
// write access to the database can.
func rechain(evs []audit.Event, i int) []audit.Event {
	for ; i < len(evs); i++ {
		if i > 0 {
			evs[i].PrevHash = evs[i-1].Hash
		}
		evs[i].Hash = audit.ChainHash(evs[i].PrevHash, evs[i])
	}
	return evs
}

// Cutting events off the end after the last checkpoint leaves a valid
// chain; the verifier reports how many events no checkpoint covers so
// the operator can compare with the checkpoint interval.
func TestVerifyTailTruncation(t *testing.T) {
	b := sampleChain(t)
	full := verifyAll(b.keys(), b.events)
	cut := verifyAll(b.keys(), b.events[:18])
	if full.Break != nil || cut.Break != nil {
		t.Fatalf("breaks: %v %v", full.Break, cut.Break)
	}
	// The checkpoint event itself counts: it can be cut off as well.
	if full.AfterCheckpoint != 4 || cut.AfterCheckpoint != 2 || cut.LastCheckpointSeq != 17 {
		t.Fatalf("after checkpoint: full %+v, cut %+v", full, cut)
	}
	none := verifyAll(b.keys(), b.events[:10])
	if none.Checkpoints != 0 || none.AfterCheckpoint != 10 {
		t.Fatalf("no checkpoint: %+v", none)
	}
}

// A copy of an old checkpoint placed later in a rewritten log verifies
// (its signature and the head it names are genuine) but vouches for
// nothing after that head: the result must not count the rewritten events
// as covered. Before, AfterCheckpoint restarted at the copy, so a log with
// an event changed after the first checkpoint and every later hash
// recomputed reported 3 unvouched events instead of 10.
func TestVerifyReplayedCheckpointVouchesForNothingNew(t *testing.T) {
	b := sampleChain(t)
	evs := slices.Clone(b.events)
	evs[12].AccountID = "someone-else" // seq 13, after the first checkpoint (seq 11, head 10)
	cp := evs[16]                      // the second checkpoint, seq 17
	cp.Details = evs[10].Details       // replaced by a copy of the first
	evs[16] = cp
	r := verifyAll(b.keys(), rechain(evs, 12))
	if r.Break != nil {
		t.Fatalf("the copy should verify as a checkpoint of seq 10: %v", r.Break)
	}
	if r.Checkpoints != 2 || r.Stale != 1 || r.LastCheckpointSeq != 11 || r.LastCheckpointHead != 10 ||
		r.AfterCheckpoint != 10 {
		t.Fatalf("result = %+v, want the chain vouched for up to seq 10 only (10 events after it, 1 stale checkpoint)", r)
	}
	// A checkpoint named behind its own seq: the events between the head
	// it names and itself are not vouched for either.
	b2 := newChainBuilder(t)
	b2.add(5)
	seq, head := b2.head()
	b2.add(3)
	b2.appendCheckpoint(checkpointDetails(b2.priv, b2.kid, seq, head))
	if r := verifyAll(b2.keys(), b2.events); r.Break != nil || r.AfterCheckpoint != 4 {
		t.Fatalf("checkpoint behind its head: %+v, want 4 events (6, 7, 8 and the checkpoint) not vouched for", r)
	}
}

// A checkpoint whose signing began before the head a previous run
// stopped at, and which was appended after it, names a seq before the
// start of the resumed run: its signature is checked, but it vouches for
// nothing after the start. Before, it broke the resumed run ("not in the
// chain checked"), a false alarm on an intact log.
func TestVerifyResumedBeforeAnInFlightCheckpoint(t *testing.T) {
	b := newChainBuilder(t)
	b.add(5)
	seq, head := b.head() // the checkpointer reads head 5 and signs it
	b.add(1)              // meanwhile event 6 is stored; a run stops at it
	startSeq, startHash := b.head()
	b.appendCheckpoint(checkpointDetails(b.priv, b.kid, seq, head)) // seq 7, names 5
	b.add(2)
	v := audit.NewVerifierFrom(startSeq, startHash, b.keys())
	for _, ev := range b.events[startSeq:] {
		if err := v.Add(ev); err != nil {
			t.Fatalf("resumed run broke on an intact log: %v", err)
		}
	}
	if r := v.Result(); r.Checkpoints != 1 || r.Stale != 1 || r.LastCheckpointSeq != 0 || r.AfterCheckpoint != 3 {
		t.Fatalf("result = %+v, want one stale checkpoint and 3 events no checkpoint vouches for", r)
	}
	// A bad signature on such a checkpoint still breaks the chain.
	_, other, _ := ed25519.GenerateKey(nil)
	evs := slices.Clone(b.events)
	evs[6].Details = checkpointDetails(other, b.kid, seq, head)
	evs = rechain(evs, 6)
	v = audit.NewVerifierFrom(startSeq, startHash, b.keys())
	var err error
	for _, ev := range evs[startSeq:] {
		if err = v.Add(ev); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("forged checkpoint before the start: %v", err)
	}
}

// Seq gaps whose links hold are not breaks (a storage sequence may skip
// numbers); they are counted.
func TestVerifyGapWithIntactLinks(t *testing.T) {
	b := newChainBuilder(t)
	b.add(5)
	b.skip = 100
	b.add(3)
	b.checkpoint()
	b.add(2)
	r := verifyAll(b.keys(), b.events)
	if r.Break != nil || r.Gaps != 1 || r.Checkpoints != 1 || r.HeadSeq != 111 {
		t.Fatalf("result = %+v", r)
	}
}

// A checkpoint may name a head a few events behind itself (events stored
// between reading the head and appending the checkpoint), within the
// window.
func TestVerifyCheckpointBehindHead(t *testing.T) {
	b := newChainBuilder(t)
	b.add(5)
	seq, head := b.head()
	b.add(3)
	b.appendCheckpoint(checkpointDetails(b.priv, b.kid, seq, head))
	if r := verifyAll(b.keys(), b.events); r.Break != nil || r.Checkpoints != 1 || r.LastCheckpointHead != 5 {
		t.Fatalf("result = %+v", r)
	}
	v := audit.NewVerifier(b.keys())
	v.SetWindow(2)
	for _, ev := range b.events {
		if v.Add(ev) != nil {
			break
		}
	}
	if r := v.Result(); r.Break == nil || r.Break.Seq != 9 || !strings.Contains(r.Break.Reason, "not in the chain") {
		t.Fatalf("outside window: %+v", r)
	}
}

// A checkpoint of the empty log names seq 0 and the genesis hash.
func TestVerifyCheckpointOfStart(t *testing.T) {
	b := newChainBuilder(t)
	b.checkpoint()
	b.add(2)
	if r := verifyAll(b.keys(), b.events); r.Break != nil || r.Checkpoints != 1 || r.LastCheckpointHead != 0 {
		t.Fatalf("result = %+v", r)
	}
}

// The event ID in a break's message is text whoever tampered with the
// log chose: it is quoted unless plain, so it cannot start a new line or
// carry terminal escapes into the verifier's report.
func TestVerifyBreakQuotesAForgedID(t *testing.T) {
	b := sampleChain(t)
	evs := slices.Clone(b.events)
	evs[2].ID = "x)\n\x1b[2K\raudit chain intact\n"
	r := verifyAll(b.keys(), evs)
	if r.Break == nil {
		t.Fatal("the changed event verified")
	}
	if msg := r.Break.Error(); strings.ContainsAny(msg, "\n\r\x1b") || !strings.Contains(msg, `(event "x)\n\x1b[2K\raudit chain intact\n")`) {
		t.Fatalf("break message %q", msg)
	}
	evs = slices.Clone(b.events)
	evs[2].IP = "127.0.0.9"
	if msg := verifyAll(b.keys(), evs).Break.Error(); !strings.Contains(msg, "(event ev-3)") {
		t.Fatalf("a plain id is quoted: %q", msg)
	}
}

// After the first break every later Add returns it unchanged.
func TestVerifyBreakSticks(t *testing.T) {
	b := sampleChain(t)
	evs := slices.Clone(b.events)
	evs[2].IP = "127.0.0.9"
	v := audit.NewVerifier(b.keys())
	var first error
	for _, ev := range evs {
		if err := v.Add(ev); err != nil && first == nil {
			first = err
		}
	}
	r := v.Result()
	if first == nil || r.Break.Seq != 3 || r.Events != 3 || r.HeadSeq != 2 {
		t.Fatalf("result = %+v, first = %v", r, first)
	}
}

func BenchmarkVerify(b *testing.B) {
	cb := newChainBuilder(nil)
	cb.add(1000)
	cb.checkpoint()
	b.ReportAllocs()
	for b.Loop() {
		v := audit.NewVerifier(cb.keys())
		for _, ev := range cb.events {
			if err := v.Add(ev); err != nil {
				b.Fatal(err)
			}
		}
	}
}
