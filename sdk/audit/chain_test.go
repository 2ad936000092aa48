package audit_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
)

func sample() audit.Event {
	return audit.Event{
		ID: "0b1e7c1e-4d8a-4f57-9a3e-2f1d3c5b7a90", Seq: 42,
		Time: time.Date(2026, 12, 4, 5, 6, 7, 123456789, time.UTC),
		Type: audit.LoginFailure, ActorID: "", AccountID: "acc",
		IP: "127.0.0.1", RequestID: "req", Outcome: audit.Failure,
		Details: map[string]string{"reason": "bad_password", "username": "alice"},
	}
}

// The hash of a fixed event is pinned so every implementation (storage
// plugins in other languages, offline verifiers) can check against it.
func TestChainHashGolden(t *testing.T) {
	got := hex.EncodeToString(audit.ChainHash(audit.GenesisHash(), sample()))
	const want = "1fc39473a2e05a079bb346ae80db7c593d4d48bb96a208b1fc5c79fae30fab9c"
	if got != want {
		t.Fatalf("ChainHash = %s, want %s", got, want)
	}
}

func TestChainHashCoversEveryField(t *testing.T) {
	base := audit.ChainHash(audit.GenesisHash(), sample())
	edits := map[string]func(*audit.Event){
		"seq":        func(e *audit.Event) { e.Seq++ },
		"id":         func(e *audit.Event) { e.ID += "x" },
		"time":       func(e *audit.Event) { e.Time = e.Time.Add(time.Microsecond) },
		"type":       func(e *audit.Event) { e.Type = audit.LoginSuccess },
		"actor":      func(e *audit.Event) { e.ActorID = "x" },
		"account":    func(e *audit.Event) { e.AccountID = "" },
		"ip":         func(e *audit.Event) { e.IP = "127.0.0.2" },
		"request":    func(e *audit.Event) { e.RequestID = "other" },
		"outcome":    func(e *audit.Event) { e.Outcome = audit.Success },
		"detail val": func(e *audit.Event) { e.Details = map[string]string{"reason": "bad_password", "username": "alicf"} },
		"detail key": func(e *audit.Event) { e.Details = map[string]string{"reason": "bad_password", "usernam": "alice"} },
		"detail add": func(e *audit.Event) {
			e.Details = map[string]string{"reason": "bad_password", "username": "alice", "x": ""}
		},
		// Moving bytes between adjacent fields must change the hash.
		"boundary": func(e *audit.Event) { e.IP, e.RequestID = "127.0.0.1r", "eq" },
	}
	for name, edit := range edits {
		ev := sample()
		edit(&ev)
		if bytes.Equal(audit.ChainHash(audit.GenesisHash(), ev), base) {
			t.Errorf("%s: hash unchanged", name)
		}
	}
	other := audit.GenesisHash()
	other[0] = 1
	if bytes.Equal(audit.ChainHash(other, sample()), base) {
		t.Error("prev: hash unchanged")
	}
}

func TestChainHashIgnoresSubMicrosecondsAndLinks(t *testing.T) {
	a, b := sample(), sample()
	b.Time = b.Time.Truncate(time.Microsecond)
	b.PrevHash, b.Hash = []byte("x"), []byte("y")
	if !bytes.Equal(audit.ChainHash(nil, a), audit.ChainHash(nil, b)) {
		t.Fatal("hash depends on nanoseconds or on the link fields")
	}
}

func TestCheckpointMessage(t *testing.T) {
	head := bytes.Repeat([]byte{0xab}, audit.HashSize)
	msg := string(audit.CheckpointMessage(7, head))
	want := "mcias.audit.checkpoint.v1\n7\n" + strings.Repeat("ab", audit.HashSize)
	if msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
}
