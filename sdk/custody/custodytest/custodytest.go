// Package custodytest is the conformance suite for custody.Custodian.
// Every custody backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		custodytest.Run(t, func(t *testing.T) custody.Custodian { return open(t) })
//	}
//
// It checks only the contract in package custody, so it passes for any
// correct backend, in process or behind the plugin shims. The rotation
// cases hold a custodian that reports Info.Rotation to custody.Rotator's
// contract, and one that does not to answering sdk.ErrNotImplemented
// when it is reached through something that offers the methods anyway
// (the plugin shims).
package custodytest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
)

// Run runs the suite. newCustodian returns a fresh, open custodian for
// one subtest; the suite closes it when the subtest ends, so newCustodian
// must not register its own Close.
func Run(t *testing.T, newCustodian func(t *testing.T) custody.Custodian) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, c custody.Custodian)
	}{
		{"info", testInfo},
		{"public keys", testPublicKeys},
		{"sign", testSign},
		{"sign unknown kid", testSignUnknown},
		{"encrypt round trip", testRoundTrip},
		{"encrypt is randomised", testRandomised},
		{"decrypt wrong aad", testWrongAAD},
		{"decrypt tampered", testTampered},
		{"decrypt truncated", testTruncated},
		{"concurrent use", testConcurrent},
		{"rotation", testRotation},
		{"rotation refusals", testRotationRefusals},
		{"key history", testKeyHistory},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			c := newCustodian(t)
			t.Cleanup(func() {
				// t.Context() is already cancelled when cleanups run; a
				// backend behind the plugin wire honours that, so close
				// with a context that is not.
				if err := c.Close(context.WithoutCancel(t.Context())); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, c)
		})
	}
}

func testInfo(t *testing.T, c custody.Custodian) {
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name == "" {
		t.Fatal("Info().Name is empty")
	}
}

// active returns the single active key, failing the test otherwise.
func active(t *testing.T, c custody.Custodian) custody.PublicKey {
	t.Helper()
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatalf("PublicKeys: %v", err)
	}
	var act []custody.PublicKey
	for _, k := range keys {
		if k.State == custody.StateActive {
			act = append(act, k)
		}
	}
	if len(act) != 1 {
		t.Fatalf("PublicKeys lists %d active keys, want exactly 1", len(act))
	}
	return act[0]
}

func testPublicKeys(t *testing.T, c custody.Custodian) {
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("PublicKeys is empty")
	}
	active(t, c)
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.KID] {
			t.Errorf("kid %s listed twice", k.KID)
		}
		seen[k.KID] = true
		if k.Alg != "EdDSA" {
			t.Errorf("key %s: Alg = %q, want EdDSA", k.KID, k.Alg)
		}
		if len(k.Key) != ed25519.PublicKeySize {
			t.Errorf("key %s: %d-byte public key", k.KID, len(k.Key))
			continue
		}
		if want := custody.Thumbprint(k.Key); k.KID != want {
			t.Errorf("kid %s is not the RFC 7638 thumbprint %s", k.KID, want)
		}
		switch k.State {
		case custody.StateNext, custody.StateActive, custody.StateRetiring:
		default:
			t.Errorf("key %s: state %q must not be listed", k.KID, k.State)
		}
		if k.CreatedAt.IsZero() {
			t.Errorf("key %s: CreatedAt is zero", k.KID)
		}
	}
	// Callers cache the list; a second call must agree.
	again, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(keys) {
		t.Fatalf("second PublicKeys lists %d keys, first %d", len(again), len(keys))
	}
	// Mutating the returned slice must not reach the custodian.
	keys[0].Key[0] ^= 0xff
	again2, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range again2 {
		if custody.Thumbprint(k.Key) != k.KID {
			t.Fatal("PublicKeys returns key bytes the caller can modify")
		}
	}
}

func testSign(t *testing.T, c custody.Custodian) {
	k := active(t, c)
	for _, msg := range [][]byte{
		[]byte("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0"),
		{},
		bytes.Repeat([]byte{0xAB}, 1<<16),
	} {
		sig, err := c.Sign(t.Context(), k.KID, msg)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ed25519.Verify(k.Key, msg, sig) {
			t.Fatalf("signature over %d bytes does not verify with the listed key", len(msg))
		}
		if ed25519.Verify(k.Key, append(bytes.Clone(msg), 'x'), sig) {
			t.Fatal("signature verifies for a different message")
		}
	}
}

func testSignUnknown(t *testing.T, c custody.Custodian) {
	for _, kid := range []string{"", "no-such-kid", custody.Thumbprint(make(ed25519.PublicKey, ed25519.PublicKeySize))} {
		if _, err := c.Sign(t.Context(), kid, []byte("m")); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Sign(kid %q) = %v, want ErrNotFound", kid, err)
		}
	}
}

func testRoundTrip(t *testing.T, c custody.Custodian) {
	tests := []struct {
		name           string
		plaintext, aad []byte
	}{
		{"typical", []byte("JBSWY3DPEHPK3PXP"), []byte("mcias:totp:1234")},
		{"empty plaintext", []byte{}, []byte("mcias:pgcreds:1")},
		{"nil aad", []byte("secret"), nil},
		{"large", bytes.Repeat([]byte("0123456789"), 10000), []byte("a")},
		{"binary", []byte{0, 1, 2, 255, 254}, []byte{0, 0}},
	}
	for _, tt := range tests {
		sealed, err := c.Encrypt(t.Context(), tt.plaintext, tt.aad)
		if err != nil {
			t.Fatalf("%s: Encrypt: %v", tt.name, err)
		}
		if len(tt.plaintext) >= 8 && bytes.Contains(sealed, tt.plaintext) {
			t.Fatalf("%s: sealed blob contains the plaintext", tt.name)
		}
		got, err := c.Decrypt(t.Context(), sealed, tt.aad)
		if err != nil {
			t.Fatalf("%s: Decrypt: %v", tt.name, err)
		}
		if !bytes.Equal(got, tt.plaintext) {
			t.Fatalf("%s: round trip changed the plaintext", tt.name)
		}
	}
}

func testRandomised(t *testing.T, c custody.Custodian) {
	pt, aad := []byte("same input"), []byte("same aad")
	seen := map[string]bool{}
	for range 20 {
		s, err := c.Encrypt(t.Context(), pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(s)] {
			t.Fatal("Encrypt returned the same blob twice for the same input")
		}
		seen[string(s)] = true
	}
}

func seal(t *testing.T, c custody.Custodian, pt, aad string) []byte {
	t.Helper()
	s, err := c.Encrypt(t.Context(), []byte(pt), []byte(aad))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantInvalid(t *testing.T, c custody.Custodian, what string, sealed, aad []byte) {
	t.Helper()
	pt, err := c.Decrypt(t.Context(), sealed, aad)
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("%s: Decrypt = %v, want ErrInvalidArgument", what, err)
	}
	if pt != nil {
		t.Errorf("%s: Decrypt returned plaintext with an error", what)
	}
}

func testWrongAAD(t *testing.T, c custody.Custodian) {
	s := seal(t, c, "secret", "mcias:totp:alice")
	wantInvalid(t, c, "other owner", s, []byte("mcias:totp:bob"))
	wantInvalid(t, c, "other purpose", s, []byte("mcias:pgcreds:alice"))
	wantInvalid(t, c, "nil aad", s, nil)
	wantInvalid(t, c, "aad prefix", s, []byte("mcias:totp:alic"))
	s2 := seal(t, c, "secret", "")
	wantInvalid(t, c, "aad added", s2, []byte("x"))
}

func testTampered(t *testing.T, c custody.Custodian) {
	s := seal(t, c, "a secret worth protecting", "aad")
	for i := range s {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(s)
			b[i] ^= bit
			wantInvalid(t, c, fmt.Sprintf("byte %d ^ %#x", i, bit), b, []byte("aad"))
		}
	}
	wantInvalid(t, c, "appended byte", append(bytes.Clone(s), 0), []byte("aad"))
}

func testTruncated(t *testing.T, c custody.Custodian) {
	s := seal(t, c, "a secret worth protecting", "aad")
	for _, n := range []int{0, 1, 2, 12, 13, 28, len(s) - 16, len(s) - 1} {
		if n < 0 || n >= len(s) {
			continue
		}
		wantInvalid(t, c, fmt.Sprintf("first %d of %d bytes", n, len(s)), s[:n:n], []byte("aad"))
	}
	wantInvalid(t, c, "nil", nil, []byte("aad"))
}

func testConcurrent(t *testing.T, c custody.Custodian) {
	k := active(t, c)
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				msg := fmt.Appendf(nil, "worker %d round %d", w, r)
				sig, err := c.Sign(t.Context(), k.KID, msg)
				if err != nil || !ed25519.Verify(k.Key, msg, sig) {
					t.Errorf("concurrent Sign: %v", err)
					return
				}
				aad := fmt.Appendf(nil, "aad %d", w)
				s, err := c.Encrypt(t.Context(), msg, aad)
				if err != nil {
					t.Errorf("concurrent Encrypt: %v", err)
					return
				}
				pt, err := c.Decrypt(t.Context(), s, aad)
				if err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("concurrent Decrypt: %v", err)
					return
				}
				if _, err := c.PublicKeys(t.Context()); err != nil {
					t.Errorf("concurrent PublicKeys: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// rotator returns c as a custody.Rotator when it says it rotates. When it
// does not but offers the methods (the plugin shims), they must answer
// ErrNotImplemented.
func rotator(t *testing.T, c custody.Custodian) (custody.Rotator, bool) {
	t.Helper()
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, ok := c.(custody.Rotator)
	if info.Rotation && !ok {
		t.Fatal("Info reports Rotation but the custodian is not a custody.Rotator")
	}
	if !info.Rotation {
		if ok {
			if _, err := r.CreateNextKey(t.Context(), time.Now()); !errors.Is(err, sdk.ErrNotImplemented) {
				t.Fatalf("CreateNextKey on a custodian without rotation = %v, want ErrNotImplemented", err)
			}
		}
		return nil, false
	}
	return r, true
}

func keyByKID(t *testing.T, c custody.Custodian, kid string) (custody.PublicKey, bool) {
	t.Helper()
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.KID == kid {
			return k, true
		}
	}
	return custody.PublicKey{}, false
}

func testRotation(t *testing.T, c custody.Custodian) {
	r, ok := rotator(t, c)
	if !ok {
		return
	}
	old := active(t, c)
	sealed := seal(t, c, "sealed before rotation", "aad")

	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	next, err := r.CreateNextKey(t.Context(), at)
	if err != nil {
		t.Fatalf("CreateNextKey: %v", err)
	}
	if !next.StateSince.Equal(at) {
		t.Fatalf("next key StateSince = %v, want the time given, %v", next.StateSince, at)
	}
	if next.State != custody.StateNext || next.KID != custody.Thumbprint(next.Key) || next.StateSince.IsZero() {
		t.Fatalf("CreateNextKey = %+v, want a next key with its thumbprint as kid and StateSince", next)
	}
	if k, ok := keyByKID(t, c, next.KID); !ok || k.State != custody.StateNext {
		t.Fatalf("next key listed as %+v (listed: %v), want state next", k, ok)
	}
	if a := active(t, c); a.KID != old.KID {
		t.Fatal("creating a next key changed the active key")
	}

	if err := r.ActivateKey(t.Context(), next.KID, time.Now()); err != nil {
		t.Fatalf("ActivateKey: %v", err)
	}
	if a := active(t, c); a.KID != next.KID {
		t.Fatalf("active key is %s after ActivateKey(%s)", a.KID, next.KID)
	}
	ret, ok := keyByKID(t, c, old.KID)
	if !ok || ret.State != custody.StateRetiring || ret.StateSince.Before(old.StateSince) {
		t.Fatalf("old key listed as %+v (listed: %v), want retiring since the activation", ret, ok)
	}
	sig, err := c.Sign(t.Context(), next.KID, []byte("m"))
	if err != nil || !ed25519.Verify(next.Key, []byte("m"), sig) {
		t.Fatalf("Sign with the new active key: %v", err)
	}

	if err := r.RetireKey(t.Context(), old.KID, time.Now()); err != nil {
		t.Fatalf("RetireKey: %v", err)
	}
	if _, ok := keyByKID(t, c, old.KID); ok {
		t.Fatal("a retired key is still listed")
	}
	if _, err := c.Sign(t.Context(), old.KID, []byte("m")); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Sign with a retired key = %v, want ErrNotFound", err)
	}
	if err := r.RetireKey(t.Context(), old.KID, time.Now()); err != nil {
		t.Fatalf("RetireKey twice = %v, want nil (no-op)", err)
	}
	// Secrets sealed before a rotation still open: sealing does not rotate
	// with the signing keys.
	if pt, err := c.Decrypt(t.Context(), sealed, []byte("aad")); err != nil || string(pt) != "sealed before rotation" {
		t.Fatalf("Decrypt after rotation = %q, %v", pt, err)
	}
	// A second cycle works too.
	n2, err := r.CreateNextKey(t.Context(), time.Now())
	if err != nil {
		t.Fatalf("second CreateNextKey: %v", err)
	}
	if err := r.ActivateKey(t.Context(), n2.KID, time.Now()); err != nil {
		t.Fatalf("second ActivateKey: %v", err)
	}
	if a := active(t, c); a.KID != n2.KID {
		t.Fatal("second rotation did not activate the new key")
	}
}

func testRotationRefusals(t *testing.T, c custody.Custodian) {
	r, ok := rotator(t, c)
	if !ok {
		return
	}
	act := active(t, c)
	unknown := custody.Thumbprint(make(ed25519.PublicKey, ed25519.PublicKeySize))
	tests := []struct {
		name    string
		op      func() error
		wantErr error
	}{
		{"activate unknown", func() error { return r.ActivateKey(t.Context(), unknown, time.Now()) }, sdk.ErrNotFound},
		{"retire unknown", func() error { return r.RetireKey(t.Context(), unknown, time.Now()) }, sdk.ErrNotFound},
		{"activate the active key", func() error { return r.ActivateKey(t.Context(), act.KID, time.Now()) }, sdk.ErrPrecondition},
		{"retire the active key", func() error { return r.RetireKey(t.Context(), act.KID, time.Now()) }, sdk.ErrPrecondition},
		{"first next key", func() error { _, err := r.CreateNextKey(t.Context(), time.Now()); return err }, nil},
		{"second next key", func() error { _, err := r.CreateNextKey(t.Context(), time.Now()); return err }, sdk.ErrPrecondition},
	}
	for _, tt := range tests {
		if err := tt.op(); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.State == custody.StateNext {
			if err := r.RetireKey(t.Context(), k.KID, time.Now()); !errors.Is(err, sdk.ErrPrecondition) {
				t.Errorf("retire the next key = %v, want ErrPrecondition", err)
			}
		}
	}
	if a := active(t, c); a.KID != act.KID {
		t.Fatal("refused rotation calls changed the active key")
	}
}

// testKeyHistory: a custodian with custody.KeyHistory lists a retired
// key's public half with state retired, beside the keys PublicKeys
// lists. One without it, reached through something that offers the
// method anyway (the plugin shims), answers ErrNotImplemented.
func testKeyHistory(t *testing.T, c custody.Custodian) {
	h, ok := c.(custody.KeyHistory)
	if !ok {
		return
	}
	_, err := h.AllPublicKeys(t.Context())
	if errors.Is(err, sdk.ErrNotImplemented) {
		return
	}
	if err != nil {
		t.Fatalf("AllPublicKeys: %v", err)
	}
	r, ok := rotator(t, c)
	if !ok {
		return
	}
	old := active(t, c)
	next, err := r.CreateNextKey(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ActivateKey(t.Context(), next.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.RetireKey(t.Context(), old.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	all, err := h.AllPublicKeys(t.Context())
	if err != nil {
		t.Fatalf("AllPublicKeys after a retirement: %v", err)
	}
	states := map[string]custody.KeyState{}
	for _, k := range all {
		if k.KID != custody.Thumbprint(k.Key) {
			t.Fatalf("AllPublicKeys lists %s with a key whose thumbprint differs", k.KID)
		}
		states[k.KID] = k.State
	}
	if states[old.KID] != custody.StateRetired || states[next.KID] != custody.StateActive {
		t.Fatalf("AllPublicKeys states = %v, want %s retired and %s active", states, old.KID, next.KID)
	}
	listed, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range listed {
		if _, ok := states[k.KID]; !ok {
			t.Fatalf("PublicKeys lists %s, which AllPublicKeys does not", k.KID)
		}
	}
}
