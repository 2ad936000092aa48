package ctl

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metacircular/mcias/api/rest"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// appendCheckpoint stores a checkpoint of the current chain head, in the
// format of sdk/audit (CheckpointMessage), signed by sign as kid, and
// returns the checkpoint's Seq: what someone who can write the database
// but not sign with the server's key can store.
func appendCheckpoint(t *testing.T, rc realCore, kid string, sign func([]byte) []byte) int64 {
	t.Helper()
	ctx := t.Context()
	evs, err := rc.store.Audit().ListEvents(ctx, storage.EventFilter{Limit: 1})
	if err != nil || len(evs) == 0 {
		t.Fatalf("chain head: %v %v", evs, err)
	}
	head := evs[0]
	ev := audit.Event{
		ID: uuid.NewString(), Time: time.Now().UTC(), Type: audit.Checkpoint, Outcome: audit.Success,
		Details: map[string]string{
			"seq": strconv.FormatInt(head.Seq, 10), "hash": hex.EncodeToString(head.Hash), "kid": kid,
			"sig": base64.RawURLEncoding.EncodeToString(sign(audit.CheckpointMessage(head.Seq, head.Hash))),
		},
	}
	if err := rc.store.Audit().AppendEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	evs, err = rc.store.Audit().ListEvents(ctx, storage.EventFilter{Limit: 1})
	if err != nil || evs[0].ID != ev.ID {
		t.Fatalf("checkpoint not the head: %v %v", evs, err)
	}
	return evs[0].Seq
}

// checkpoint has the core sign the chain head through custody and
// store the checkpoint, and returns its Seq.
func checkpoint(t *testing.T, rc realCore) int64 {
	t.Helper()
	wrote, err := rc.svc.Checkpoint(t.Context())
	if err != nil || !wrote {
		t.Fatalf("checkpoint: wrote %v, %v", wrote, err)
	}
	evs, err := rc.store.Audit().ListEvents(t.Context(), storage.EventFilter{Limit: 1})
	if err != nil || evs[0].Type != audit.Checkpoint {
		t.Fatalf("head after a checkpoint: %v %v", evs, err)
	}
	return evs[0].Seq
}

// TestAuditVerify runs audit verify over both frontends against a real
// core on SQLite: an intact chain with checkpoints the core signed through
// custody
// verifies, with the server's keys and with pinned ones; a checkpoint of
// a key retired since still verifies (the key listing keeps it); a key
// the pinned file lacks, and a forged checkpoint, are exit 5 naming the
// checkpoint's seq.
func TestAuditVerify(t *testing.T) {
	for _, flavor := range []string{"rest", "grpc"} {
		t.Run("flavor="+flavor, func(t *testing.T) {
			rc := newRealCore(t)
			var ctl func(env map[string]string, args ...string) (int, string, string)
			switch flavor {
			case "rest":
				rs, err := rest.New(rc.svc, rest.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					t.Fatal(err)
				}
				hs := httptest.NewServer(rs.Handler())
				t.Cleanup(hs.Close)
				ctl = func(env map[string]string, args ...string) (int, string, string) {
					var out, errOut strings.Builder
					code := run(t.Context(), append([]string{"-server", hs.URL}, args...), System{
						Getenv: func(k string) string { return env[k] }, Stdin: strings.NewReader(""),
						Stdout: &out, Stderr: &errOut, TermFD: -1,
					})
					return code, out.String(), errOut.String()
				}
			case "grpc":
				addr, ca := serveGRPC(t, rc.svc)
				ctl = func(env map[string]string, args ...string) (int, string, string) {
					return grpcctl(t, addr, ca, env, args...)
				}
			}
			login := func() map[string]string {
				code, out, stderr := ctl(map[string]string{"MCIAS_PASSWORD": grpcAdminPass}, "auth", "login", "-username", "admin")
				if code != exitOK {
					t.Fatalf("login: exit %d, %q", code, stderr)
				}
				return map[string]string{"MCIAS_TOKEN": strings.TrimSpace(out)}
			}
			admin := login()
			for range 3 {
				ctl(map[string]string{"MCIAS_PASSWORD": "wrong password"}, "auth", "login", "-username", "admin")
			}
			old, err := rc.svc.ActiveKey(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			cp1 := checkpoint(t, rc)
			ctl(map[string]string{"MCIAS_PASSWORD": "wrong password"}, "auth", "login", "-username", "admin")

			code, out, stderr := ctl(admin, "audit", "verify", "-page", "2")
			if code != exitOK || !strings.Contains(out, "audit chain intact") ||
				!strings.Contains(out, "checkpoints verified: 1 (keys: server), the furthest at seq "+strconv.FormatInt(cp1, 10)) ||
				!strings.Contains(out, "events after seq "+strconv.FormatInt(cp1-1, 10)+": 2 (") ||
				!regexp.MustCompile(`last checkpoint written \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, head event \d{4}-`).MatchString(out) {
				t.Fatalf("verify intact: exit %d\nstdout %s\nstderr %s", code, out, stderr)
			}
			head := regexp.MustCompile(`head: -from (\d+:[0-9a-f]{64})`).FindStringSubmatch(out)
			if head == nil {
				t.Fatalf("verify prints no head to resume from: %s", out)
			}
			code, out, _ = ctl(admin, "-json", "audit", "verify")
			var rep verifyReport
			if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || !rep.Intact || rep.Checkpoints != 1 ||
				rep.HeadSeq != cp1+1 || rep.Events != cp1+1 || rep.Break != nil {
				t.Fatalf("verify -json: exit %d, %s (%v)", code, out, err)
			}

			// Pin today's keys, then rotate in an emergency: the old key
			// retires, but its checkpoint still verifies with the server's
			// listing, which keeps retired keys.
			code, pinned, stderr := ctl(admin, "-json", "key", "list")
			if code != exitOK {
				t.Fatalf("key list: exit %d, %q", code, stderr)
			}
			keysFile := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(keysFile, []byte(pinned), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := ctl(admin, "key", "rotate", "-emergency"); code != exitOK {
				t.Fatalf("emergency rotation: exit %d, %q", code, stderr)
			}
			admin = login()
			cur, err := rc.svc.ActiveKey(t.Context())
			if err != nil || cur.KID == old.KID {
				t.Fatalf("the active key did not change: %v", err)
			}
			cp2 := checkpoint(t, rc)
			if code, out, stderr := ctl(admin, "audit", "verify"); code != exitOK || !strings.Contains(out, "checkpoints verified: 2") {
				t.Fatalf("verify after rotation: exit %d\nstdout %s\nstderr %s", code, out, stderr)
			}
			// Resuming from the head of the first run checks only what
			// came since; a wrong starting hash breaks the first link.
			if code, out, stderr := ctl(admin, "audit", "verify", "-from", head[1]); code != exitOK ||
				!strings.Contains(out, "checkpoints verified: 1") || !strings.Contains(out, "head: -from "+strconv.FormatInt(cp2, 10)+":") {
				t.Fatalf("verify -from %s: exit %d\nstdout %s\nstderr %s", head[1], code, out, stderr)
			}
			seq1, _, _ := strings.Cut(head[1], ":")
			if code, _, stderr := ctl(admin, "audit", "verify", "-from", seq1+":"+strings.Repeat("ab", 32)); code != exitBroken ||
				!strings.Contains(stderr, "prev_hash does not match the hash of seq "+seq1) {
				t.Fatalf("verify -from a wrong hash: exit %d, stderr %s", code, stderr)
			}
			// The pinned file predates the new key: its checkpoint is
			// signed by a key the operator never pinned.
			code, out, stderr = ctl(admin, "audit", "verify", "-keys", keysFile)
			if code != exitBroken || !strings.Contains(stderr, "audit chain broken at seq "+strconv.FormatInt(cp2, 10)) ||
				!strings.Contains(stderr, "unknown key") || !strings.Contains(out, "checkpoints verified: 1 (keys: "+keysFile) {
				t.Fatalf("verify with a stale pinned file: exit %d\nstdout %s\nstderr %s", code, out, stderr)
			}

			// A checkpoint naming the active kid but signed by another
			// key: what a database-level attacker can write.
			_, forger, err := ed25519.GenerateKey(nil)
			if err != nil {
				t.Fatal(err)
			}
			cp3 := appendCheckpoint(t, rc, cur.KID, func(msg []byte) []byte { return ed25519.Sign(forger, msg) })
			code, _, stderr = ctl(admin, "audit", "verify")
			if code != exitBroken || !strings.Contains(stderr, "audit chain broken at seq "+strconv.FormatInt(cp3, 10)) ||
				!strings.Contains(stderr, "does not verify") {
				t.Fatalf("verify with a forged checkpoint: exit %d, stderr %s", code, stderr)
			}
		})
	}
}

// TestKeyFile: a pinned key file is a JWKS or a key listing whose kids
// are the thumbprints of their keys.
func TestKeyFile(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	x := base64.RawURLEncoding.EncodeToString(pub)
	kid := custody.Thumbprint(pub)
	cases := []struct {
		name, body, wantErr string
	}{
		{"case=jwks", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"` + kid + `"}]}`, ""},
		{"case=key listing", `{"keys":[{"kid":"` + kid + `","state":"retired","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"` + kid + `"}}]}`, ""},
		{"case=kid not the thumbprint", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"other"}]}`, "not the thumbprint"},
		{"case=not ed25519", `{"keys":[{"kty":"RSA","kid":"` + kid + `"}]}`, "not an Ed25519 JWK"},
		{"case=bad x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"!!","kid":"` + kid + `"}]}`, "not a base64url Ed25519 public key"},
		{"case=no keys", `{"keys":[]}`, "lists no keys"},
		{"case=not json", `keys`, "is not a JWKS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, err := loadKeyFile(path)
			if tc.wantErr == "" {
				if err != nil || !pub.Equal(keys[kid]) {
					t.Fatalf("keys %v, err %v", keys, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := loadKeyFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
}
