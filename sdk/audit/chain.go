package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
)

// HashSize is the length of a chain hash (SHA-256).
const HashSize = sha256.Size

// chainTag separates chain hashes from every other SHA-256 use.
const chainTag = "mcias.audit.chain.v1"

// GenesisHash is the PrevHash of the first event in a chain: HashSize
// zero bytes.
func GenesisHash() []byte { return make([]byte, HashSize) }

// ChainHash returns the hash that links ev after prev:
//
//	SHA-256(tag || prev || Seq || ID || Time || Type || ActorID ||
//	        AccountID || IP || RequestID || Outcome || Details)
//
// Every field is length-prefixed (uvarint) so no two different events
// encode alike; Seq and Time are 8-byte big-endian, Time in microseconds
// since the Unix epoch (the precision every storage backend keeps);
// Details are sorted by key. ev.PrevHash and ev.Hash are not covered.
// Storage backends, plugins and verifiers all call this one function.
func ChainHash(prev []byte, ev Event) []byte {
	h := sha256.New()
	var buf []byte
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	str(chainTag)
	buf = binary.AppendUvarint(buf, uint64(len(prev)))
	buf = append(buf, prev...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(ev.Seq))
	str(ev.ID)
	buf = binary.BigEndian.AppendUint64(buf, uint64(ev.Time.UnixMicro()))
	str(string(ev.Type))
	str(ev.ActorID)
	str(ev.AccountID)
	str(ev.IP)
	str(ev.RequestID)
	str(string(ev.Outcome))
	keys := make([]string, 0, len(ev.Details))
	for k := range ev.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	buf = binary.AppendUvarint(buf, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(ev.Details[k])
	}
	h.Write(buf)
	return h.Sum(nil)
}

// checkpointTag starts every checkpoint message. It contains a newline,
// which no JWT signing input (base64url and one dot) can, so a
// checkpoint signature made with a token signing key can never pass as
// a token signature, nor the reverse.
const checkpointTag = "mcias.audit.checkpoint.v1\n"

// CheckpointMessage is the byte string a checkpoint signs: the tag, the
// Seq of the chain head and its hash in hex, newline-separated.
//
// A checkpoint is stored as an event of type Checkpoint whose Details
// hold "seq", "hash" (hex), "kid" (the signing key) and "sig" (the
// Ed25519 signature, base64url without padding) of this message; being
// an event, it is itself chained and forwarded to every sink.
func CheckpointMessage(seq int64, head []byte) []byte {
	msg := []byte(checkpointTag)
	msg = strconv.AppendInt(msg, seq, 10)
	msg = append(msg, '\n')
	msg = hex.AppendEncode(msg, head)
	return msg
}
