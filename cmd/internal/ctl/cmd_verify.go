package ctl

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
)

// exitBroken is the exit status of audit verify when the chain is broken.
const exitBroken = 5

// chainEvent is an event of GET /v1/audit/chain (and ReadChain).
type chainEvent struct {
	Seq int64 `json:"seq"`
	auditEvent
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

type chainPage struct {
	Events []chainEvent `json:"events"`
}

// event turns the wire form back into the event the chain hash covers.
func (e chainEvent) event() (audit.Event, error) {
	t, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		return audit.Event{}, fmt.Errorf("time %q is not RFC 3339", e.Time)
	}
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil {
		return audit.Event{}, errors.New("prev_hash is not hex")
	}
	hash, err := hex.DecodeString(e.Hash)
	if err != nil {
		return audit.Event{}, errors.New("hash is not hex")
	}
	return audit.Event{
		ID: e.ID, Seq: e.Seq, Time: t, Type: audit.Type(e.Type), ActorID: e.ActorID, AccountID: e.AccountID,
		IP: e.IP, RequestID: e.RequestID, Outcome: audit.Outcome(e.Outcome), Details: e.Details,
		PrevHash: prev, Hash: hash,
	}, nil
}

// signingKey is a key of GET /v1/keys (and ListKeys).
type signingKey struct {
	Kid        string `json:"kid"`
	State      string `json:"state"`
	CreatedAt  string `json:"created_at"`
	StateSince string `json:"state_since"`
	JWK        jwk    `json:"jwk"`
}

type signingKeys struct {
	Keys []signingKey `json:"keys"`
}

// keyFile is a pinned key file: a JWKS ({"keys": [JWK, ...]}) or the
// output of GET /v1/keys ({"keys": [{"kid", "state", "jwk"}, ...]}).
type keyFile struct {
	Keys []struct {
		jwk
		Nested *jwk `json:"jwk"`
	} `json:"keys"`
}

// keyTable checks each JWK (an Ed25519 key whose kid is its RFC 7638
// thumbprint, so a key file cannot give one kid another key) and indexes
// them by kid.
func keyTable(keys []jwk) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey, len(keys))
	for i, k := range keys {
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		switch {
		case k.Kty != "OKP" || k.Crv != "Ed25519":
			return nil, fmt.Errorf("key %d (%s) is not an Ed25519 JWK", i, k.Kid)
		case err != nil || len(x) != ed25519.PublicKeySize:
			return nil, fmt.Errorf("key %d (%s): x is not a base64url Ed25519 public key", i, k.Kid)
		case custody.Thumbprint(x) != k.Kid:
			return nil, fmt.Errorf("key %d: kid %q is not the thumbprint of its key", i, k.Kid)
		}
		out[k.Kid] = x
	}
	return out, nil
}

func loadKeyFile(path string) (map[string]ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read -keys file: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil {
		return nil, fmt.Errorf("-keys file %s is not a JWKS or a key listing: %v", path, err)
	}
	keys := make([]jwk, 0, len(kf.Keys))
	for _, k := range kf.Keys {
		if k.Nested != nil {
			keys = append(keys, *k.Nested)
		} else {
			keys = append(keys, k.jwk)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("-keys file %s lists no keys", path)
	}
	t, err := keyTable(keys)
	if err != nil {
		return nil, fmt.Errorf("-keys file %s: %w", path, err)
	}
	return t, nil
}

// verifyReport is the -json output of audit verify.
type verifyReport struct {
	Intact             bool   `json:"intact"`
	Events             int64  `json:"events"`
	Checkpoints        int64  `json:"checkpoints"`
	LastCheckpointSeq  int64  `json:"last_checkpoint_seq"`
	LastCheckpointHead int64  `json:"last_checkpoint_head"`
	AfterCheckpoint    int64  `json:"after_checkpoint"`
	StaleCheckpoints   int64  `json:"stale_checkpoints"`
	Gaps               int64  `json:"gaps"`
	HeadSeq            int64  `json:"head_seq"`
	HeadHash           string `json:"head_hash"`
	HeadTime           string `json:"head_time,omitempty"`            // RFC 3339, of the last event
	LastCheckpointTime string `json:"last_checkpoint_time,omitempty"` // RFC 3339, when it was written
	Keys               string `json:"keys"`                           // "server" or the -keys file
	Break              *struct {
		Seq    int64  `json:"seq"`
		ID     string `json:"id"`
		Reason string `json:"reason"`
	} `json:"break,omitempty"`
}

func auditVerify(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	keysFile := fs.String("keys", "", "verify checkpoints only with the keys in this JWKS or key listing (saved from 'key list -json' or /v1/keys), not with the keys the server lists now")
	page := fs.Int("page", 500, "events per request, 1..500")
	from := fs.String("from", "", "SEQ:HASH: verify only the events after seq SEQ, whose hash is HASH (hex), e.g. the head a previous run printed")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if *page < 1 || *page > 500 {
		return &usageError{msg: "-page must be from 1 to 500", cmd: c}
	}
	startSeq, startHash, err := parseFrom(*from)
	if err != nil {
		return &usageError{msg: err.Error(), cmd: c}
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	var keys map[string]ed25519.PublicKey
	source := "server"
	if *keysFile != "" {
		if keys, err = loadKeyFile(*keysFile); err != nil {
			return err
		}
		source = *keysFile
	} else {
		listed, _, err := api.ListKeys(ctx)
		if err != nil {
			return err
		}
		jwks := make([]jwk, 0, len(listed.Keys))
		for _, k := range listed.Keys {
			jwks = append(jwks, k.JWK)
		}
		if keys, err = keyTable(jwks); err != nil {
			return fmt.Errorf("the server's key listing: %w", err)
		}
	}
	v := audit.NewVerifierFrom(startSeq, startHash, func(kid string) (ed25519.PublicKey, bool) {
		k, ok := keys[kid]
		return k, ok
	})
	var malformed *audit.Break
	after := startSeq
read:
	for {
		p, _, err := api.ReadChain(ctx, after, *page)
		if err != nil {
			return err
		}
		for _, we := range p.Events {
			ev, err := we.event()
			if err != nil {
				malformed = &audit.Break{Seq: we.Seq, ID: we.ID, Reason: "the server sent a malformed event: " + err.Error()}
				break read
			}
			if v.Add(ev) != nil {
				break read
			}
			after = ev.Seq
		}
		if len(p.Events) < *page {
			break
		}
	}
	res := v.Result()
	if res.Break == nil {
		res.Break = malformed
	}
	return printVerify(a, res, source)
}

// parseFrom reads -from SEQ:HASH; empty is the start of the log.
func parseFrom(s string) (int64, []byte, error) {
	if s == "" {
		return 0, audit.GenesisHash(), nil
	}
	seqStr, hashHex, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqStr, 10, 64)
	if !ok || err != nil || seq < 0 {
		return 0, nil, fmt.Errorf("-from must be SEQ:HASH (a seq and its hash in hex), not %q", s)
	}
	hash, err := hex.DecodeString(hashHex)
	if err != nil || len(hash) != audit.HashSize {
		return 0, nil, fmt.Errorf("-from: %q is not a hex chain hash (%d bytes)", hashHex, audit.HashSize)
	}
	return seq, hash, nil
}

func printVerify(a *app, res audit.Result, source string) error {
	if a.json {
		rep := verifyReport{
			Intact: res.Break == nil, Events: res.Events, Checkpoints: res.Checkpoints,
			LastCheckpointSeq: res.LastCheckpointSeq, LastCheckpointHead: res.LastCheckpointHead,
			AfterCheckpoint: res.AfterCheckpoint, StaleCheckpoints: res.Stale, Gaps: res.Gaps, HeadSeq: res.HeadSeq,
			HeadHash: hex.EncodeToString(res.HeadHash), Keys: source,
			HeadTime: rfc3339(res.HeadTime), LastCheckpointTime: rfc3339(res.LastCheckpointTime),
		}
		if b := res.Break; b != nil {
			rep.Break = &struct {
				Seq    int64  `json:"seq"`
				ID     string `json:"id"`
				Reason string `json:"reason"`
			}{b.Seq, b.ID, b.Reason}
		}
		raw, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		printRaw(a.sys.Stdout, raw)
	} else {
		w := a.sys.Stdout
		fmt.Fprintf(w, "events checked: %d (head: -from %d:%x)\n", res.Events, res.HeadSeq, res.HeadHash)
		if res.Checkpoints == 0 {
			fmt.Fprintf(w, "checkpoints verified: 0 (keys: %s); no checkpoint vouches for any event\n", source)
		} else {
			fmt.Fprintf(w, "checkpoints verified: %d (keys: %s), the furthest at seq %d for the chain up to seq %d\n",
				res.Checkpoints, source, res.LastCheckpointSeq, res.LastCheckpointHead)
			fmt.Fprintf(w, "events after seq %d: %d (no checkpoint vouches for them yet)\n", res.LastCheckpointHead, res.AfterCheckpoint)
			// A server checkpoints every checkpoint_every while events
			// come in: a last checkpoint much older than the head (or
			// than now) is what cutting the end off the log leaves.
			fmt.Fprintf(w, "last checkpoint written %s, head event %s\n", rfc3339(res.LastCheckpointTime), rfc3339(res.HeadTime))
			if res.Stale > 0 {
				fmt.Fprintf(w, "stale checkpoints (naming a head an earlier checkpoint covered): %d\n", res.Stale)
			}
		}
		if res.Gaps > 0 {
			fmt.Fprintf(w, "seq gaps with intact links: %d\n", res.Gaps)
		}
	}
	if b := res.Break; b != nil {
		fmt.Fprintf(a.sys.Stderr, "%s: %s\n", a.prog(), b.Error())
		return &exitError{code: exitBroken}
	}
	if !a.json {
		fmt.Fprintln(a.sys.Stdout, "audit chain intact")
	}
	return nil
}

// rfc3339 formats t in UTC to the second, or "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
