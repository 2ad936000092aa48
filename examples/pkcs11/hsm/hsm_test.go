package hsm_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/metacircular/mcias/examples/pkcs11/hsm"
	"github.com/metacircular/mcias/examples/pkcs11/internal/softhsmtest"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

var env *softhsmtest.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = softhsmtest.Setup(); err != nil {
		fmt.Fprintln(os.Stderr, "SoftHSM2 setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(env.Dir)
	os.Exit(code)
}

func open(t *testing.T, uri string) (*hsm.Custodian, *plugintest.Log) {
	t.Helper()
	log := &plugintest.Log{}
	c, err := hsm.Open(t.Context(), uri, slog.New(slog.NewJSONHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(t.Context()) })
	return c.(*hsm.Custodian), log
}

func openB(b *testing.B) (*hsm.Custodian, error) {
	c, err := hsm.Open(b.Context(), env.URI(softhsmtest.Object()), nil)
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { _ = c.Close(b.Context()) })
	return c.(*hsm.Custodian), nil
}

func activeKey(t *testing.T, c custody.Custodian) custody.PublicKey {
	t.Helper()
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.State == custody.StateActive {
			return k
		}
	}
	t.Fatal("no active key")
	return custody.PublicKey{}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		want    hsm.Config
		wantErr error
	}{
		{"pin file", "pkcs11:token=mcias?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mcias/pin",
			hsm.Config{ModulePath: "/usr/lib/softhsm/libsofthsm2.so", Token: "mcias", Object: "mcias", PINFile: "/etc/mcias/pin", Sessions: 4}, nil},
		{"pin env, object, serial, sessions, escapes", "pkcs11:token=my%20token;object=k1;serial=abc?module-path=/m.so&x-pin-env=PIN&x-sessions=8",
			hsm.Config{ModulePath: "/m.so", Token: "my token", Serial: "abc", Object: "k1", PINEnv: "PIN", Sessions: 8}, nil},
		{"bare pin path", "pkcs11:token=t?module-path=/m.so&pin-source=/p",
			hsm.Config{ModulePath: "/m.so", Token: "t", Object: "mcias", PINFile: "/p", Sessions: 4}, nil},
		{"pin-value refused", "pkcs11:token=t?module-path=/m.so&pin-value=1234", hsm.Config{}, sdk.ErrInvalidArgument},
		{"no pin", "pkcs11:token=t?module-path=/m.so", hsm.Config{}, sdk.ErrInvalidArgument},
		{"two pins", "pkcs11:token=t?module-path=/m.so&pin-source=/p&x-pin-env=P", hsm.Config{}, sdk.ErrInvalidArgument},
		{"no token", "pkcs11:object=o?module-path=/m.so&pin-source=/p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"no module", "pkcs11:token=t?pin-source=/p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"relative module", "pkcs11:token=t?module-path=m.so&pin-source=/p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"relative pin file", "pkcs11:token=t?module-path=/m.so&pin-source=file:p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"unknown path attribute", "pkcs11:token=t;tokne=x?module-path=/m.so&pin-source=/p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"unknown query attribute", "pkcs11:token=t?module-path=/m.so&pin-source=/p&x=1", hsm.Config{}, sdk.ErrInvalidArgument},
		{"duplicate", "pkcs11:token=t;token=u?module-path=/m.so&pin-source=/p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"bad escape", "pkcs11:token=%zz?module-path=/m.so&pin-source=/p", hsm.Config{}, sdk.ErrInvalidArgument},
		{"sessions out of range", "pkcs11:token=t?module-path=/m.so&pin-source=/p&x-sessions=0", hsm.Config{}, sdk.ErrInvalidArgument},
		{"other scheme", "local:/x", hsm.Config{}, sdk.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			got, err := hsm.ParseURI(tt.uri)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("ParseURI = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParseURI = %+v, want %+v", got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "1234") {
				t.Fatalf("error repeats the PIN: %v", err)
			}
		})
	}
}

// TestOpenSSLVerifies: a signature made inside the token verifies with
// OpenSSL against the listed public key, and fails for another message.
func TestOpenSSLVerifies(t *testing.T) {
	c, _ := open(t, env.URI(softhsmtest.Object()))
	k := activeKey(t, c)
	msg := []byte("eyJhbGciOiJFZERTQSIsImtpZCI6IngiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSJ9")
	sig, err := c.Sign(t.Context(), k.KID, msg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub := write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	sigFile := write("sig", sig)
	verify := func(msgFile string) (string, error) {
		out, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msgFile, "-sigfile", sigFile).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(write("msg", msg)); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("openssl pkeyutl -verify: %v\n%s", err, out)
	}
	if out, err := verify(write("other", append(bytes.Clone(msg), 'x'))); err == nil {
		t.Fatalf("openssl verified the signature for another message:\n%s", out)
	}
}

// token opens a session of the test's own on the module, logged in, for
// looking at (and damaging) the token the way another application would.
func token(t *testing.T) (*pkcs11.Ctx, pkcs11.SessionHandle, uint) {
	t.Helper()
	p := pkcs11.New(env.Module)
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Label != softhsmtest.Token {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Login(sh, pkcs11.CKU_USER, softhsmtest.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.CloseSession(sh) })
		return p, sh, s
	}
	t.Fatal("test token not found")
	return nil, 0, 0
}

func findAll(t *testing.T, p *pkcs11.Ctx, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) []pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		t.Fatal(err)
	}
	hs, _, err := p.FindObjects(sh, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.FindObjectsFinal(sh); err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestKeysStayInToken: the private signing key and the sealing key are
// sensitive and not extractable; asking the token for their value fails.
func TestKeysStayInToken(t *testing.T) {
	obj := softhsmtest.Object()
	open(t, env.URI(obj))
	p, sh, _ := token(t)
	for _, tmpl := range [][]*pkcs11.Attribute{
		{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, obj+"-sign")},
		{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, obj+"-seal")},
	} {
		hs := findAll(t, p, sh, tmpl)
		if len(hs) != 1 {
			t.Fatalf("found %d keys, want 1", len(hs))
		}
		attrs, err := p.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(attrs[0].Value, []byte{1}) || !bytes.Equal(attrs[1].Value, []byte{0}) {
			t.Fatalf("CKA_SENSITIVE = %v, CKA_EXTRACTABLE = %v; want true, false", attrs[0].Value, attrs[1].Value)
		}
		if _, err := p.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Fatalf("reading CKA_VALUE = %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
	}
}

// TestReopen: a second open finds the same keys in the token and opens
// what the first sealed; it creates nothing new.
func TestReopen(t *testing.T) {
	uri := env.URI(softhsmtest.Object())
	a, _ := open(t, uri)
	ka := activeKey(t, a)
	sealed, err := a.Encrypt(t.Context(), []byte("totp secret"), []byte("mcias:totp:1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, _ := open(t, uri)
	kb := activeKey(t, b)
	if ka.KID != kb.KID || !ka.CreatedAt.Equal(kb.CreatedAt) {
		t.Fatalf("reopen lists key %s (%v), first open %s (%v)", kb.KID, kb.CreatedAt, ka.KID, ka.CreatedAt)
	}
	if pt, err := b.Decrypt(t.Context(), sealed, []byte("mcias:totp:1")); err != nil || string(pt) != "totp secret" {
		t.Fatalf("Decrypt after reopen = %q, %v", pt, err)
	}
	if _, err := a.Sign(t.Context(), ka.KID, []byte("m")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Sign on a closed custodian = %v, want ErrUnavailable", err)
	}
}

// works checks that every operation succeeds.
func works(t *testing.T, c custody.Custodian) {
	t.Helper()
	k := activeKey(t, c)
	sig, err := c.Sign(t.Context(), k.KID, []byte("m"))
	if err != nil || !ed25519.Verify(k.Key, []byte("m"), sig) {
		t.Fatalf("Sign: %v", err)
	}
	s, err := c.Encrypt(t.Context(), []byte("p"), []byte("a"))
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if pt, err := c.Decrypt(t.Context(), s, []byte("a")); err != nil || string(pt) != "p" {
		t.Fatalf("Decrypt: %q, %v", pt, err)
	}
	if _, err := c.Info(t.Context()); err != nil {
		t.Fatalf("Info: %v", err)
	}
}

// TestRecoversLostSessions: the token's sessions are closed under the
// custodian (as when a token is re-inserted or an HSM restarts), or the
// whole library is finalised; the next calls reconnect and succeed, and
// the log says what happened.
func TestRecoversLostSessions(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, p *pkcs11.Ctx, slot uint)
	}{
		{"all sessions closed", func(t *testing.T, p *pkcs11.Ctx, slot uint) {
			if err := p.CloseAllSessions(slot); err != nil {
				t.Fatal(err)
			}
		}},
		{"library finalised", func(t *testing.T, p *pkcs11.Ctx, slot uint) {
			if err := p.Finalize(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			c, log := open(t, env.URI(softhsmtest.Object()))
			works(t, c)
			p, _, slot := token(t)
			tt.break_(t, p, slot)
			works(t, c)
			if len(log.Lines("pkcs11 session lost")) == 0 || len(log.Lines("pkcs11 reconnected")) == 0 {
				t.Fatalf("log does not tell of the reconnect:\n%s", log)
			}
		})
	}
}

// TestKeyGone: another application deletes the signing key from the
// token. The custodian says so plainly: Sign and Info fail with
// ErrUnavailable naming the key, and the log has an error line. It does
// not make a new key.
func TestKeyGone(t *testing.T) {
	obj := softhsmtest.Object()
	c, log := open(t, env.URI(obj))
	k := activeKey(t, c)
	p, sh, _ := token(t)
	hs := findAll(t, p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, obj+"-sign")})
	if len(hs) != 1 {
		t.Fatalf("found %d private keys", len(hs))
	}
	attrs, err := p.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
	if err != nil {
		t.Fatal(err)
	}
	// pkcs11-tool is another process: the custodian learns of the
	// deletion only from the token.
	if _, err := env.Tool("--delete-object", "--type", "privkey", "--id", hex.EncodeToString(attrs[0].Value)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Sign(t.Context(), k.KID, []byte("m"))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), k.KID) {
		t.Fatalf("Sign with the key deleted = %v, want ErrUnavailable saying the key %s is gone", err, k.KID)
	}
	if _, err := c.Info(t.Context()); !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("Info with the key deleted = %v, want ErrUnavailable", err)
	}
	if len(log.Lines("pkcs11 key missing from token", `"level":"ERROR"`, k.KID)) == 0 {
		t.Fatalf("no error log line names the missing key:\n%s", log)
	}
	// Reopening refuses too, rather than generating a replacement.
	if _, err := hsm.Open(t.Context(), env.URI(obj), nil); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Open with the key deleted = %v, want ErrUnavailable", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	loose := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(loose, []byte(softhsmtest.PIN), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrong, []byte("not-the-pin"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "pkcs11:token=" + softhsmtest.Token + ";object=" + softhsmtest.Object() + "?module-path=" + env.Module
	tests := []struct {
		name    string
		uri     string
		wantErr error
	}{
		{"wrong PIN", base + "&pin-source=file:" + wrong, sdk.ErrInvalidArgument},
		{"PIN file others can read", base + "&pin-source=file:" + loose, sdk.ErrInvalidArgument},
		{"missing PIN file", base + "&pin-source=file:/nonexistent/pin", sdk.ErrInvalidArgument},
		{"unset PIN variable", base + "&x-pin-env=MCIAS_TEST_UNSET_PIN", sdk.ErrInvalidArgument},
		{"no such token", "pkcs11:token=nope?module-path=" + env.Module + "&pin-source=file:" + env.PINFile, sdk.ErrUnavailable},
		{"no such module", "pkcs11:token=t?module-path=/nonexistent/lib.so&pin-source=file:" + env.PINFile, sdk.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			_, err := hsm.Open(t.Context(), tt.uri, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
		})
	}
	t.Run("case=PIN from the environment", func(t *testing.T) {
		t.Setenv("MCIAS_TEST_PIN", softhsmtest.PIN)
		c, err := hsm.Open(t.Context(), base+"&x-pin-env=MCIAS_TEST_PIN", nil)
		if err != nil {
			t.Fatal(err)
		}
		works(t, c)
		_ = c.Close(t.Context())
	})
}

// TestRotationInToken: key states live in the token (a reopen sees them),
// and retiring a key destroys its private half in the token.
func TestRotationInToken(t *testing.T) {
	obj := softhsmtest.Object()
	uri := env.URI(obj)
	c, _ := open(t, uri)
	old := activeKey(t, c)
	next, err := c.CreateNextKey(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ActivateKey(t.Context(), next.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	reopened, _ := open(t, uri)
	keys, err := reopened.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]custody.KeyState{}
	for _, k := range keys {
		states[k.KID] = k.State
	}
	if states[next.KID] != custody.StateActive || states[old.KID] != custody.StateRetiring || len(states) != 2 {
		t.Fatalf("reopened states = %v, want %s active and %s retiring", states, next.KID, old.KID)
	}
	if err := c.RetireKey(t.Context(), old.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	p, sh, _ := token(t)
	privs := findAll(t, p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, obj+"-sign")})
	if len(privs) != 1 {
		t.Fatalf("%d private signing keys in the token after retiring one of two, want 1", len(privs))
	}
	if states := findAll(t, p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA), pkcs11.NewAttribute(pkcs11.CKA_LABEL, obj+"-state")}); len(states) != 1 {
		t.Fatalf("%d state objects in the token, want 1", len(states))
	}
	third, _ := open(t, uri)
	if k := activeKey(t, third); k.KID != next.KID {
		t.Fatalf("active after retire and reopen = %s, want %s", k.KID, next.KID)
	}
	works(t, third)
}

// TestImportRetiringKey: another custodian's public key is published as
// retiring and survives a reopen, never signs, and retires on schedule.
func TestImportRetiringKey(t *testing.T) {
	uri := env.URI(softhsmtest.Object())
	c, _ := open(t, uri)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	in := custody.PublicKey{KID: custody.Thumbprint(pub), Alg: "EdDSA", Key: pub, CreatedAt: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}
	if err := c.ImportRetiringKey(t.Context(), custody.PublicKey{KID: "wrong", Key: pub}, time.Now()); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("import with a wrong kid = %v", err)
	}
	for range 2 { // the second is a no-op
		if err := c.ImportRetiringKey(t.Context(), in, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	reopened, _ := open(t, uri)
	keys, err := reopened.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[1].KID != in.KID || keys[1].State != custody.StateRetiring || !bytes.Equal(keys[1].Key, pub) {
		t.Fatalf("keys after import and reopen = %+v", keys)
	}
	if _, err := reopened.Sign(t.Context(), in.KID, []byte("m")); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Sign with an imported key = %v, want ErrNotFound", err)
	}
	works(t, reopened)
	if err := reopened.RetireKey(t.Context(), in.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if keys, _ := reopened.PublicKeys(t.Context()); len(keys) != 1 {
		t.Fatalf("imported key still listed after retiring: %+v", keys)
	}
}
