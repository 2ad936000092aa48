package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// KeyLookup returns the Ed25519 public key a checkpoint names by kid, and
// false when the verifier does not know it.
type KeyLookup func(kid string) (ed25519.PublicKey, bool)

// Break describes the first broken link a Verifier found.
type Break struct {
	// Seq and ID name the event at which the chain stops verifying. For
	// a deleted event it is the event after the hole; for a modified one
	// the event itself.
	Seq    int64
	ID     string
	Reason string
}

func (b *Break) Error() string {
	id := b.ID
	if !plainID(id) {
		// Whoever tampered with the log wrote this text: quoted, it
		// cannot end the line or move a terminal's cursor to forge the
		// verifier's report.
		id = strconv.Quote(id)
	}
	return fmt.Sprintf("audit chain broken at seq %d (event %s): %s", b.Seq, id, b.Reason)
}

// plainID reports whether id is non-empty and only letters, digits, '.',
// '_' and '-' (as every ID the server makes is).
func plainID(id string) bool {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return id != ""
}

// Result is what a Verifier has established so far.
type Result struct {
	// Events counts the events checked (before the break, if any, plus
	// the breaking one).
	Events int64
	// Checkpoints counts the checkpoint events whose signature verified
	// and whose (seq, hash) matched the chain (or, in a resumed
	// verification, named a seq before its start, which only the earlier
	// run could check: those count in Stale too).
	Checkpoints int64
	// LastCheckpointSeq is the Seq of the verified checkpoint event that
	// vouches for the longest chain (0 when none); LastCheckpointHead the
	// chain seq it vouches for. A later checkpoint that names an earlier
	// head (a replayed copy, say) vouches for nothing new and moves
	// neither; it is counted in Stale.
	LastCheckpointSeq  int64
	LastCheckpointHead int64
	// LastCheckpointTime is when that checkpoint was written (zero when
	// none). On a server that checkpoints every minute, a last
	// checkpoint far older than the head or than now is the trace a
	// truncated or rolled-back log leaves.
	LastCheckpointTime time.Time
	// AfterCheckpoint counts the events after LastCheckpointHead, the
	// checkpoint events among them included (all events when no
	// checkpoint verified). No signature vouches for them: they can be
	// changed with fresh hashes or deleted from the end of the log and
	// the chain still verifies. An operator compares this with the
	// checkpoint interval.
	AfterCheckpoint int64
	// Stale counts verified checkpoints that named a head no later than
	// one an earlier checkpoint vouched for, or before the start of a
	// resumed verification. A server writes one only in
	// a rare race between two nodes; a copy of an old checkpoint placed
	// later in a rewritten log is one too.
	Stale int64
	// Gaps counts places where Seq jumps by more than one while the hash
	// links hold (a storage sequence that skipped numbers). They are not
	// breaks: every event's PrevHash names the event stored before it, so
	// a deleted event breaks the next link whatever the numbering.
	Gaps int64
	// HeadSeq and HeadHash are the last event checked: the point to
	// resume from (NewVerifierFrom) with the next batch.
	HeadSeq  int64
	HeadHash []byte
	// HeadTime is the time of the last event checked.
	HeadTime time.Time
	// Break is the first broken link; nil when everything checked holds.
	Break *Break
}

// DefaultWindow is how many recent (seq, hash) pairs a Verifier keeps to
// check the head a checkpoint names: a checkpointer signs the head it
// read and appends the checkpoint after it, so events stored in between
// put the named seq a little behind the checkpoint's own.
const DefaultWindow = 4096

// Verifier checks an audit chain fed to it event by event in ascending
// Seq order. Memory stays constant (Window hashes) however long the log.
// It is not safe for concurrent use.
//
// It checks that every event's Hash is ChainHash(PrevHash, event), that
// its PrevHash is the previous event's Hash (GenesisHash for the first
// event of the log, or the starting hash given to NewVerifierFrom), that
// Seq strictly increases, and that every checkpoint event carries a valid
// Ed25519 signature, by a key the KeyLookup knows, over the (seq, hash)
// it names, and that this pair is in the chain.
type Verifier struct {
	keys   KeyLookup
	window int
	ring   []link // recent links, ring[i%window]
	n      int64  // links added so far; a link's ordinal is n when added (1-based)
	start  link   // the point verification started from
	res    Result
}

type link struct {
	seq  int64
	hash []byte
	ord  int64 // 1 for the first event checked; 0 for the starting point
}

// NewVerifier verifies a log from its first event.
func NewVerifier(keys KeyLookup) *Verifier {
	return NewVerifierFrom(0, GenesisHash(), keys)
}

// NewVerifierFrom verifies the events after seq, whose Hash is hash (for
// example a HeadHash a previous run returned, or the head a trusted
// checkpoint named). Pass 0 and GenesisHash() for the whole log.
func NewVerifierFrom(seq int64, hash []byte, keys KeyLookup) *Verifier {
	if keys == nil {
		keys = func(string) (ed25519.PublicKey, bool) { return nil, false }
	}
	v := &Verifier{keys: keys, window: DefaultWindow, start: link{seq, bytes.Clone(hash), 0}}
	v.res.HeadSeq, v.res.HeadHash = seq, bytes.Clone(hash)
	return v
}

// SetWindow changes how far back (in events) a checkpoint may name its
// head; call it before the first Add.
func (v *Verifier) SetWindow(n int) {
	if n > 0 && v.n == 0 {
		v.window = n
	}
}

// Add checks the next event. It returns the Break once the chain is
// broken, and the same Break for every later call: only the first broken
// link is meaningful, everything after it is unverified.
func (v *Verifier) Add(ev Event) error {
	if v.res.Break != nil {
		return v.res.Break
	}
	v.res.Events++
	fail := func(format string, args ...any) error {
		v.res.Break = &Break{Seq: ev.Seq, ID: ev.ID, Reason: fmt.Sprintf(format, args...)}
		return v.res.Break
	}
	switch {
	case len(ev.PrevHash) == 0 && len(ev.Hash) == 0:
		return fail("the event carries no chain hashes: the storage backend does not chain events")
	case ev.Seq <= v.res.HeadSeq:
		return fail("seq %d does not follow seq %d (events reordered or repeated)", ev.Seq, v.res.HeadSeq)
	case !bytes.Equal(ev.PrevHash, v.res.HeadHash):
		if v.res.HeadSeq == 0 {
			return fail("prev_hash is not the genesis hash: events before it are missing")
		}
		return fail("prev_hash does not match the hash of seq %d: an event between them was deleted or changed", v.res.HeadSeq)
	case !bytes.Equal(ev.Hash, ChainHash(ev.PrevHash, ev)):
		return fail("hash does not match the event's contents: the event was modified")
	}
	if ev.Seq != v.res.HeadSeq+1 {
		v.res.Gaps++
	}
	v.res.AfterCheckpoint++
	if ev.Type == Checkpoint {
		named, err := v.checkpoint(ev)
		if err != nil {
			return fail("checkpoint: %v", err)
		}
		v.res.Checkpoints++
		if named.ord >= 0 && (named.seq > v.res.LastCheckpointHead || v.res.LastCheckpointSeq == 0) {
			v.res.LastCheckpointSeq, v.res.LastCheckpointHead = ev.Seq, named.seq
			v.res.LastCheckpointTime = ev.Time
			// This event is ordinal n+1; the events after the named
			// head, this one included, are not vouched for.
			v.res.AfterCheckpoint = v.n + 1 - named.ord
		} else {
			v.res.Stale++
		}
	}
	v.res.HeadSeq, v.res.HeadHash, v.res.HeadTime = ev.Seq, bytes.Clone(ev.Hash), ev.Time
	if len(v.ring) < v.window {
		v.ring = append(v.ring, link{})
	}
	v.n++
	v.ring[(v.n-1)%int64(v.window)] = link{ev.Seq, v.res.HeadHash, v.n}
	return nil
}

// checkpoint checks a checkpoint event's signature and the head it names,
// and returns that head's link (ord -1 for a head before the start).
func (v *Verifier) checkpoint(ev Event) (link, error) {
	d := ev.Details
	seq, err := strconv.ParseInt(d["seq"], 10, 64)
	if err != nil || seq < 0 {
		return link{}, fmt.Errorf("seq %q is not a sequence number", d["seq"])
	}
	head, err := hex.DecodeString(d["hash"])
	if err != nil || len(head) != HashSize {
		return link{}, fmt.Errorf("hash %q is not a hex chain hash", d["hash"])
	}
	sig, err := base64.RawURLEncoding.DecodeString(d["sig"])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return link{}, fmt.Errorf("sig is not a base64url Ed25519 signature")
	}
	kid := d["kid"]
	pub, ok := v.keys(kid)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return link{}, fmt.Errorf("signed by unknown key %q", kid)
	}
	if !ed25519.Verify(pub, CheckpointMessage(seq, head), sig) {
		return link{}, fmt.Errorf("signature by key %q does not verify", kid)
	}
	if seq >= ev.Seq {
		return link{}, fmt.Errorf("names seq %d, not before its own seq %d", seq, ev.Seq)
	}
	if seq < v.start.seq {
		// A resumed verification cannot check a head before its start;
		// the run that verified up to the start could. Such a checkpoint
		// (its signing began before the start was stored and it was
		// appended after) vouches for nothing after the start.
		return link{seq: seq, ord: -1}, nil
	}
	want, ok := v.linkAt(seq)
	if !ok {
		return link{}, fmt.Errorf("names seq %d, which is not in the chain checked (or more than %d events back)", seq, v.window)
	}
	if !bytes.Equal(want.hash, head) {
		return link{}, fmt.Errorf("names hash %s for seq %d, but the chain has %x there", d["hash"], seq, want.hash)
	}
	return want, nil
}

// linkAt returns the link of seq from the starting point or the window.
func (v *Verifier) linkAt(seq int64) (link, bool) {
	if seq == v.start.seq {
		return v.start, true
	}
	for _, l := range v.ring {
		if l.seq == seq {
			return l, true
		}
	}
	return link{}, false
}

// Result reports what has been checked so far.
func (v *Verifier) Result() Result {
	r := v.res
	r.HeadHash = bytes.Clone(r.HeadHash)
	if r.Break != nil {
		b := *r.Break
		r.Break = &b
	}
	return r
}
