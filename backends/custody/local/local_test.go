package local

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/custody/custodytest"
)

// newKeyFile creates a fresh master key file in a temp dir.
func newKeyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "master.key")
	if err := GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func openURI(t *testing.T, uri string) custody.Custodian {
	t.Helper()
	c, err := Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", uri, err)
	}
	return c
}

func closeC(t *testing.T, c custody.Custodian) {
	t.Helper()
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	t.Run("mode=key_file", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			return openURI(t, "local://"+t.TempDir()+"?key_file="+newKeyFile(t))
		})
	})
	t.Run("mode=passphrase", func(t *testing.T) {
		t.Setenv("MCIAS_TEST_PASSPHRASE", "correct horse battery staple")
		// The suite opens a custodian per subtest; the real 64 MiB KDF
		// is exercised by the passphrase tests below.
		old := kdfParams
		kdfParams = kdfConfig{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}
		t.Cleanup(func() { kdfParams = old })
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			return openURI(t, "local://"+t.TempDir()+"?passphrase_env=MCIAS_TEST_PASSPHRASE")
		})
	})
	t.Run("mode=reopened", func(t *testing.T) {
		// The suite must pass against a keyring loaded from disk, not
		// only one just created.
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			uri := "local://" + t.TempDir() + "?key_file=" + newKeyFile(t)
			closeC(t, openURI(t, uri))
			return openURI(t, uri)
		})
	})
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		name, uri string
		want      config
		ok        bool
	}{
		{"abs key file", "local:///var/lib/mcias/keys?key_file=/etc/mcias/master.key", config{dir: "/var/lib/mcias/keys", keyFile: "/etc/mcias/master.key"}, true},
		{"rel passphrase", "local:keys/dir?passphrase_env=PASS", config{dir: "keys/dir", passphraseEnv: "PASS"}, true},
		{"rel key file", "local:keys?key_file=master.key", config{dir: "keys", keyFile: "master.key"}, true},
		{"wrong scheme", "file:///x?key_file=/k", config{}, false},
		{"host", "local://host/x?key_file=/k", config{}, false},
		{"no dir", "local:?key_file=/k", config{}, false},
		{"neither", "local:///x", config{}, false},
		{"both", "local:///x?key_file=/k&passphrase_env=P", config{}, false},
		{"unknown param", "local:///x?key_file=/k&keyfile=/j", config{}, false},
		{"repeated param", "local:///x?key_file=/k&key_file=/j", config{}, false},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			got, err := parseURI(tt.uri)
			if !tt.ok {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("parseURI = %+v, %v; want ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseURI = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestRelativeURI(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := GenerateKeyFile("master.key"); err != nil {
		t.Fatal(err)
	}
	c := openURI(t, "local:keys?key_file=master.key")
	defer closeC(t, c)
	if _, err := os.Stat(filepath.Join("keys", keyringFile)); err != nil {
		t.Fatalf("keyring not created under the relative dir: %v", err)
	}
}

func TestReopenLoadsSameKey(t *testing.T) {
	ctx := t.Context()
	for _, mode := range []string{"key_file", "passphrase"} {
		t.Run("mode="+mode, func(t *testing.T) {
			uri := "local://" + t.TempDir()
			if mode == "key_file" {
				uri += "?key_file=" + newKeyFile(t)
			} else {
				t.Setenv("MCIAS_TEST_PASSPHRASE", "hunter2 hunter2")
				uri += "?passphrase_env=MCIAS_TEST_PASSPHRASE"
			}
			c1 := openURI(t, uri)
			k1, err := c1.PublicKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := c1.Encrypt(ctx, []byte("secret"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			closeC(t, c1)

			c2 := openURI(t, uri)
			defer closeC(t, c2)
			k2, err := c2.PublicKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(k1) != 1 || len(k2) != 1 || k1[0].KID != k2[0].KID || !bytes.Equal(k1[0].Key, k2[0].Key) ||
				!k1[0].CreatedAt.Equal(k2[0].CreatedAt) || k2[0].State != custody.StateActive {
				t.Fatalf("reopened keys differ:\n %+v\n %+v", k1, k2)
			}
			pt, err := c2.Decrypt(ctx, sealed, []byte("aad"))
			if err != nil || string(pt) != "secret" {
				t.Fatalf("reopened custodian cannot open an old secret: %q, %v", pt, err)
			}
		})
	}
}

func TestWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	c := openURI(t, "local://"+dir+"?key_file="+newKeyFile(t))
	closeC(t, c)
	_, err := Open(t.Context(), "local://"+dir+"?key_file="+newKeyFile(t), nil)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "master key does not open this keyring (wrong passphrase or key file?)") {
		t.Fatalf("Open with another key file = %v", err)
	}

	pdir := t.TempDir()
	t.Setenv("MCIAS_TEST_PASSPHRASE", "right passphrase")
	closeC(t, openURI(t, "local://"+pdir+"?passphrase_env=MCIAS_TEST_PASSPHRASE"))
	t.Setenv("MCIAS_TEST_PASSPHRASE", "wrong passphrase")
	_, err = Open(t.Context(), "local://"+pdir+"?passphrase_env=MCIAS_TEST_PASSPHRASE", nil)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "wrong passphrase or key file?") {
		t.Fatalf("Open with wrong passphrase = %v", err)
	}
	if strings.Contains(err.Error(), "wrong passphrase\"") || strings.Contains(err.Error(), "right passphrase") {
		t.Fatal("error leaks the passphrase")
	}
}

func TestModeMismatch(t *testing.T) {
	t.Setenv("MCIAS_TEST_PASSPHRASE", "a passphrase")
	pdir := t.TempDir()
	closeC(t, openURI(t, "local://"+pdir+"?passphrase_env=MCIAS_TEST_PASSPHRASE"))
	if _, err := Open(t.Context(), "local://"+pdir+"?key_file="+newKeyFile(t), nil); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "use passphrase_env") {
		t.Fatalf("key_file on a passphrase keyring = %v", err)
	}
	kdir := t.TempDir()
	closeC(t, openURI(t, "local://"+kdir+"?key_file="+newKeyFile(t)))
	if _, err := Open(t.Context(), "local://"+kdir+"?passphrase_env=MCIAS_TEST_PASSPHRASE", nil); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "use key_file") {
		t.Fatalf("passphrase on a key-file keyring = %v", err)
	}
}

func TestKeyFileChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	tests := []struct {
		name    string
		path    string
		wantMsg string
	}{
		{"group readable", write("g.key", good, 0o640), "must be 0600 or stricter"},
		{"world readable", write("w.key", good, 0o644), "must be 0600 or stricter"},
		{"short key", write("s.key", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600), "32 base64-encoded bytes"},
		{"not base64", write("n.key", "not base64 at all!", 0o600), "32 base64-encoded bytes"},
		{"missing", filepath.Join(dir, "nope.key"), "open key file"},
		{"directory", dir, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			_, err := Open(t.Context(), "local://"+t.TempDir()+"?key_file="+tt.path, nil)
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Open = %v; want ErrInvalidArgument mentioning %q", err, tt.wantMsg)
			}
		})
	}
	// 0400 is stricter than 0600 and fine.
	c := openURI(t, "local://"+t.TempDir()+"?key_file="+write("ro.key", good, 0o400))
	closeC(t, c)
}

func TestGenerateKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", st.Mode().Perm())
	}
	k, err := readKeyFile(p)
	if err != nil || len(k) != 32 {
		t.Fatalf("readKeyFile = %d bytes, %v", len(k), err)
	}
	if err := GenerateKeyFile(p); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("second GenerateKeyFile = %v, want ErrConflict", err)
	}
	k2, _ := readKeyFile(p)
	if !bytes.Equal(k, k2) {
		t.Fatal("GenerateKeyFile overwrote an existing key")
	}
}

func TestPassphraseStoresSalt(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MCIAS_TEST_PASSPHRASE", "a passphrase")
	closeC(t, openURI(t, "local://"+dir+"?passphrase_env=MCIAS_TEST_PASSPHRASE"))
	raw, err := os.ReadFile(filepath.Join(dir, masterFile))
	if err != nil {
		t.Fatal(err)
	}
	var m masterJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	salt, err := base64.StdEncoding.DecodeString(m.Salt)
	if err != nil || len(salt) != 16 || m.KDF != "argon2id" || m.kdfConfig != kdfParams {
		t.Fatalf("master.json = %s", raw)
	}
	if bytes.Contains(raw, []byte("a passphrase")) {
		t.Fatal("master.json contains the passphrase")
	}
	// A second open reuses the salt rather than making a new one.
	closeC(t, openURI(t, "local://"+dir+"?passphrase_env=MCIAS_TEST_PASSPHRASE"))
	raw2, _ := os.ReadFile(filepath.Join(dir, masterFile))
	if !bytes.Equal(raw, raw2) {
		t.Fatal("master.json changed on reopen")
	}
	// An empty or unset variable is refused with a clear message.
	t.Setenv("MCIAS_TEST_PASSPHRASE", "")
	if _, err := Open(t.Context(), "local://"+dir+"?passphrase_env=MCIAS_TEST_PASSPHRASE", nil); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "MCIAS_TEST_PASSPHRASE is empty") {
		t.Fatalf("empty passphrase = %v", err)
	}
}

func TestKeyringFile(t *testing.T) {
	dir := t.TempDir()
	kf := newKeyFile(t)
	c := openURI(t, "local://"+dir+"?key_file="+kf)
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	closeC(t, c)
	path := filepath.Join(dir, keyringFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %#o, want 0600", st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kr keyringJSON
	if err := json.Unmarshal(raw, &kr); err != nil {
		t.Fatal(err)
	}
	if len(kr.Keys) != 1 || kr.Keys[0].KID != keys[0].KID || kr.Keys[0].State != custody.StateActive || kr.Check == "" {
		t.Fatalf("keyring = %s", raw)
	}
	if kr.Keys[0].Public != base64.RawURLEncoding.EncodeToString(keys[0].Key) {
		t.Fatal("public key in keyring differs")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}

	// Tampering with the stored private key is caught at open.
	sp, _ := base64.StdEncoding.DecodeString(kr.Keys[0].SealedPrivate)
	sp[len(sp)-1] ^= 1
	kr.Keys[0].SealedPrivate = base64.StdEncoding.EncodeToString(sp)
	bad, _ := json.Marshal(kr)
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), "local://"+dir+"?key_file="+kf, nil); !errors.Is(err, sdk.ErrInternal) {
		t.Fatalf("Open with tampered private key = %v, want ErrInternal", err)
	}

	// A loosened keyring file is refused.
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), "local://"+dir+"?key_file="+kf, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Open with 0644 keyring = %v, want ErrInvalidArgument", err)
	}
}

func TestClosed(t *testing.T) {
	c := openURI(t, "local://"+t.TempDir()+"?key_file="+newKeyFile(t))
	keys, err := c.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	closeC(t, c)
	closeC(t, c) // idempotent
	if _, err := c.Sign(t.Context(), keys[0].KID, []byte("m")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Sign after Close = %v", err)
	}
	if _, err := c.Encrypt(t.Context(), []byte("m"), nil); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Encrypt after Close = %v", err)
	}
}

// Sealed blobs use separate subkeys per purpose: a secret sealed by
// Encrypt cannot be opened with the keyring subkey and vice versa.
func TestSubkeysDiffer(t *testing.T) {
	master := bytes.Repeat([]byte{1}, 32)
	a, err := subkey(master, infoKeyring)
	if err != nil {
		t.Fatal(err)
	}
	b, err := subkey(master, infoSecrets)
	if err != nil {
		t.Fatal(err)
	}
	s, err := seal(a, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(b, s, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatal("a blob sealed with one subkey opened with another")
	}
	if s[0] != sealVersion || len(s) != 1+nonceLen+1+16 {
		t.Fatalf("sealed layout: len %d, version %d", len(s), s[0])
	}
}

// TestRotationPersists: key states survive a reopen, and a retired key's
// private half is no longer in the keyring.
func TestRotationPersists(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	uri := "local://" + dir + "?key_file=" + newKeyFile(t)
	c1 := openURI(t, uri)
	r := c1.(custody.Rotator)
	k1, err := c1.PublicKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := k1[0]
	next, err := r.CreateNextKey(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ActivateKey(ctx, next.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	n2, err := r.CreateNextKey(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want, err := c1.PublicKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closeC(t, c1)

	c2 := openURI(t, uri)
	got, err := c2.PublicKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("reopened keys = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].KID != want[i].KID || got[i].State != want[i].State || !got[i].StateSince.Equal(want[i].StateSince) {
			t.Fatalf("reopened key %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := c2.(custody.Rotator).RetireKey(ctx, old.KID, time.Now()); err != nil {
		t.Fatal(err)
	}
	closeC(t, c2)
	raw, err := os.ReadFile(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	var kr struct {
		Keys []struct {
			KID           string `json:"kid"`
			State         string `json:"state"`
			SealedPrivate string `json:"sealed_private"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &kr); err != nil {
		t.Fatal(err)
	}
	for _, k := range kr.Keys {
		if k.KID == old.KID && (k.State != "retired" || k.SealedPrivate != "") {
			t.Fatalf("retired key in keyring: %+v", k)
		}
	}
	c3 := openURI(t, uri)
	defer closeC(t, c3)
	keys, _ := c3.PublicKeys(ctx)
	if len(keys) != 2 || keys[0].KID != next.KID || keys[1].KID != n2.KID {
		t.Fatalf("after retiring and reopening: %+v", keys)
	}
	// The retired key's public half stays listed for verifiers of what
	// it signed (audit checkpoints).
	all, err := c3.(custody.KeyHistory).AllPublicKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range all {
		if k.KID == old.KID {
			found = k.State == custody.StateRetired && custody.Thumbprint(k.Key) == old.KID
		}
	}
	if len(all) != 3 || !found {
		t.Fatalf("all keys = %+v, want 3 with %s retired", all, old.KID)
	}
}
