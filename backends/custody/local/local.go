// Package local is the builtin key custodian: signing keys and the
// secrets-at-rest key live in a directory on this host, sealed under a
// master key that comes from a key file or a passphrase.
//
// URI forms (exactly one of key_file and passphrase_env):
//
//	local:///abs/dir?key_file=/abs/master.key
//	local:rel/dir?passphrase_env=MCIAS_PASSPHRASE
//
// With key_file the master key is 32 random bytes, standard base64, in a
// file of mode 0600 or stricter (GenerateKeyFile makes one). With
// passphrase_env the master key is Argon2id(passphrase, salt); salt and
// parameters are kept in <dir>/master.json from the first start.
//
// <dir>/keyring.json (mode 0600, replaced atomically) holds the Ed25519
// signing keys, their private halves sealed with AES-256-GCM under a
// subkey of the master key, plus a sealed check value so that a wrong
// master key is reported at start rather than as garbage later.
//
// Private keys are held unsealed in memory once loaded: that is what
// "local" custody means. Use an HSM-backed custodian when that is not
// acceptable.
package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/hkdf"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"slices"
)

// Name is the custodian's name, as reported by Info.
const Name = "local"

const (
	keyringFile = "keyring.json"
	masterFile  = "master.json"

	masterKeyLen = 32
	sealVersion  = 1
	nonceLen     = 12

	// HKDF info strings: one subkey per purpose, so a blob sealed for one
	// purpose can never be opened as another.
	infoKeyring = "mcias keyring v1"
	infoSecrets = "mcias secrets v1"

	checkPlaintext = "mcias keyring check v1"
	checkAAD       = "mcias:keyring:check"
	keyAADPrefix   = "mcias:keyring:key:"
)

// errWrongMaster is the message for a master key that does not open the
// keyring.
const errWrongMaster = "master key does not open this keyring (wrong passphrase or key file?)"

// kdfParams are the Argon2id parameters for passphrase mode: 64 MiB, 3
// passes, as for account passwords; it runs once per start.
var kdfParams = kdfConfig{Time: 3, MemoryKiB: 64 * 1024, Threads: 1}

type kdfConfig struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// masterJSON is <dir>/master.json (passphrase mode only).
type masterJSON struct {
	Version int    `json:"version"`
	KDF     string `json:"kdf"`
	Salt    string `json:"salt"` // std base64
	kdfConfig
}

// keyringJSON is <dir>/keyring.json.
type keyringJSON struct {
	Version int       `json:"version"`
	Check   string    `json:"check"` // std base64 sealed checkPlaintext
	Keys    []keyJSON `json:"keys"`
}

type keyJSON struct {
	KID           string           `json:"kid"`
	State         custody.KeyState `json:"state"`
	CreatedAt     time.Time        `json:"created_at"`
	Public        string           `json:"public"`         // base64url, unpadded
	SealedPrivate string           `json:"sealed_private"` // std base64 sealed seed
	StateSince    time.Time        `json:"state_since,omitzero"`
}

type key struct {
	pub     custody.PublicKey
	private ed25519.PrivateKey
	sealed  string // keyJSON.SealedPrivate, written back on every save
}

// Custodian is the local custodian. It is safe for concurrent use.
type Custodian struct {
	logger *slog.Logger

	mu      sync.RWMutex
	closed  bool
	keys    []*key // keyring order
	secrets cipher.AEAD

	// What rotation needs to write the keyring back.
	path  string
	krKey cipher.AEAD
	check string
}

var (
	_ custody.Custodian  = (*Custodian)(nil)
	_ custody.Rotator    = (*Custodian)(nil)
	_ custody.KeyHistory = (*Custodian)(nil)
)

// config is a parsed URI.
type config struct {
	dir           string
	keyFile       string
	passphraseEnv string
}

func parseURI(uri string) (config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return config{}, fmt.Errorf("local custody: parse uri: %w", sdk.ErrInvalidArgument)
	}
	if u.Scheme != "local" {
		return config{}, fmt.Errorf("local custody: uri scheme %q is not \"local\": %w", u.Scheme, sdk.ErrInvalidArgument)
	}
	var c config
	switch {
	case u.Opaque != "":
		c.dir = u.Opaque // local:rel/dir
	case u.Host != "":
		return config{}, fmt.Errorf("local custody: uri has a host %q; use local:///abs/dir or local:rel/dir: %w", u.Host, sdk.ErrInvalidArgument)
	default:
		c.dir = u.Path // local:///abs/dir
	}
	if c.dir == "" {
		return config{}, fmt.Errorf("local custody: uri names no directory: %w", sdk.ErrInvalidArgument)
	}
	q := u.Query()
	for k := range q {
		if k != "key_file" && k != "passphrase_env" {
			return config{}, fmt.Errorf("local custody: unknown uri parameter %q (known: key_file, passphrase_env): %w", k, sdk.ErrInvalidArgument)
		}
		if len(q[k]) != 1 {
			return config{}, fmt.Errorf("local custody: uri parameter %q given more than once: %w", k, sdk.ErrInvalidArgument)
		}
	}
	c.keyFile, c.passphraseEnv = q.Get("key_file"), q.Get("passphrase_env")
	if (c.keyFile == "") == (c.passphraseEnv == "") {
		return config{}, fmt.Errorf("local custody: uri needs exactly one of key_file and passphrase_env: %w", sdk.ErrInvalidArgument)
	}
	return c, nil
}

// Open opens (and on first start creates) the custodian described by
// uri. It matches custody.Factory.
func Open(ctx context.Context, uri string, logger *slog.Logger) (custody.Custodian, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		return nil, fmt.Errorf("local custody: create directory %s: %w: %w", cfg.dir, sdk.ErrUnavailable, err)
	}
	unlock, err := lockDir(cfg.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	krPath := filepath.Join(cfg.dir, keyringFile)
	_, err = os.Stat(krPath)
	keyringExists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local custody: stat keyring: %w: %w", sdk.ErrUnavailable, err)
	}

	var master []byte
	if cfg.keyFile != "" {
		if _, err := os.Stat(filepath.Join(cfg.dir, masterFile)); err == nil {
			return nil, fmt.Errorf("local custody: %s holds a passphrase-protected keyring (master.json present); use passphrase_env, not key_file: %w", cfg.dir, sdk.ErrInvalidArgument)
		}
		master, err = readKeyFile(cfg.keyFile)
	} else {
		master, err = passphraseMaster(ctx, cfg, keyringExists)
	}
	if err != nil {
		return nil, err
	}
	defer clear(master)

	c := &Custodian{logger: logger}
	krKey, err := subkey(master, infoKeyring)
	if err != nil {
		return nil, err
	}
	if c.secrets, err = subkey(master, infoSecrets); err != nil {
		return nil, err
	}
	if keyringExists {
		if err := c.load(krPath, krKey); err != nil {
			return nil, err
		}
		logger.Info("local custody: keyring loaded", "dir", cfg.dir, "keys", len(c.keys))
		return c, nil
	}
	if err := c.create(krPath, krKey); err != nil {
		return nil, err
	}
	logger.Info("local custody: new keyring created", "dir", cfg.dir, "kid", c.keys[0].pub.KID)
	return c, nil
}

// GenerateKeyFile writes a new random master key to path (mode 0600). It
// refuses to overwrite an existing file: losing the old key would lose
// every key and secret sealed under it.
func GenerateKeyFile(path string) error {
	k := make([]byte, masterKeyLen)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("local custody: generate key: %w: %w", sdk.ErrInternal, err)
	}
	defer clear(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("local custody: key file %s already exists; refusing to overwrite it: %w", path, sdk.ErrConflict)
		}
		return fmt.Errorf("local custody: create key file: %w: %w", sdk.ErrUnavailable, err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("local custody: write key file: %w: %w", sdk.ErrUnavailable, err)
	}
	return syncDir(filepath.Dir(path))
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("local custody: open key file %s: %w: %w", path, sdk.ErrInvalidArgument, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("local custody: stat key file: %w: %w", sdk.ErrUnavailable, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("local custody: key file %s is not a regular file: %w", path, sdk.ErrInvalidArgument)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("local custody: key file %s has mode %#o; it must be 0600 or stricter (chmod 600 %s): %w",
			path, perm, path, sdk.ErrInvalidArgument)
	}
	raw, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("local custody: read key file: %w: %w", sdk.ErrUnavailable, err)
	}
	defer clear(raw)
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(k) != masterKeyLen {
		return nil, fmt.Errorf("local custody: key file %s does not hold %d base64-encoded bytes: %w", path, masterKeyLen, sdk.ErrInvalidArgument)
	}
	return k, nil
}

// passphraseMaster derives the master key from the passphrase in the
// configured environment variable, creating master.json on first start.
func passphraseMaster(ctx context.Context, cfg config, keyringExists bool) ([]byte, error) {
	pass := os.Getenv(cfg.passphraseEnv)
	if pass == "" {
		return nil, fmt.Errorf("local custody: environment variable %s is empty or unset; it must hold the passphrase: %w", cfg.passphraseEnv, sdk.ErrInvalidArgument)
	}
	mPath := filepath.Join(cfg.dir, masterFile)
	raw, err := os.ReadFile(mPath)
	var m masterJSON
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("local custody: %s is corrupt: %w", mPath, sdk.ErrInternal)
		}
	case errors.Is(err, fs.ErrNotExist):
		if keyringExists {
			return nil, fmt.Errorf("local custody: %s holds a key-file-protected keyring (no master.json); use key_file, not passphrase_env: %w", cfg.dir, sdk.ErrInvalidArgument)
		}
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("local custody: generate salt: %w: %w", sdk.ErrInternal, err)
		}
		m = masterJSON{Version: 1, KDF: "argon2id", Salt: base64.StdEncoding.EncodeToString(salt), kdfConfig: kdfParams}
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("local custody: encode master.json: %w", sdk.ErrInternal)
		}
		if err := writeAtomic(mPath, append(out, '\n')); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("local custody: read master.json: %w: %w", sdk.ErrUnavailable, err)
	}
	salt, err := base64.StdEncoding.DecodeString(m.Salt)
	if m.Version != 1 || m.KDF != "argon2id" || err != nil || len(salt) < 16 ||
		m.Time < 1 || m.Time > 64 || m.Threads < 1 || m.MemoryKiB < 8*1024 || m.MemoryKiB > 4*1024*1024 {
		return nil, fmt.Errorf("local custody: %s has unsupported or corrupt parameters: %w", mPath, sdk.ErrInternal)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local custody: open: %w: %w", sdk.ErrUnavailable, err)
	}
	return argon2.IDKey([]byte(pass), salt, m.Time, m.MemoryKiB, m.Threads, masterKeyLen), nil
}

// subkey derives the AES-256-GCM AEAD for one purpose from the master key.
func subkey(master []byte, info string) (cipher.AEAD, error) {
	k := make([]byte, 32)
	defer clear(k)
	if _, err := io.ReadFull(hkdf.New(sha256.New, master, nil, []byte(info)), k); err != nil {
		return nil, fmt.Errorf("local custody: derive subkey: %w", sdk.ErrInternal)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("local custody: aes: %w", sdk.ErrInternal)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("local custody: gcm: %w", sdk.ErrInternal)
	}
	return aead, nil
}

// seal returns version | nonce | ciphertext+tag.
func seal(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+nonceLen, 1+nonceLen+len(plaintext)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("local custody: nonce: %w: %w", sdk.ErrInternal, err)
	}
	return aead.Seal(out, out[1:], plaintext, aad), nil
}

var errBadBlob = fmt.Errorf("local custody: decrypt: sealed value is malformed or does not authenticate: %w", sdk.ErrInvalidArgument)

func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+nonceLen+aead.Overhead() || sealed[0] != sealVersion {
		return nil, errBadBlob
	}
	pt, err := aead.Open(nil, sealed[1:1+nonceLen], sealed[1+nonceLen:], aad)
	if err != nil {
		return nil, errBadBlob
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

func (c *Custodian) create(path string, krKey cipher.AEAD) error {
	check, err := seal(krKey, []byte(checkPlaintext), []byte(checkAAD))
	if err != nil {
		return err
	}
	c.path, c.krKey, c.check = path, krKey, base64.StdEncoding.EncodeToString(check)
	k, err := c.newKey(custody.StateActive, stamp(time.Time{}))
	if err != nil {
		return err
	}
	if err := c.saveLocked([]*key{k}); err != nil {
		return err
	}
	c.keys = []*key{k}
	return nil
}

// newKey generates a key in state st, its seed sealed under the keyring key.
func (c *Custodian) newKey(st custody.KeyState, now time.Time) (*key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local custody: generate key: %w: %w", sdk.ErrInternal, err)
	}
	k := &key{
		pub: custody.PublicKey{
			KID: custody.Thumbprint(pub), Alg: "EdDSA", Key: pub,
			State: st, CreatedAt: now, StateSince: now,
		},
		private: priv,
	}
	sp, err := seal(c.krKey, priv.Seed(), []byte(keyAADPrefix+k.pub.KID))
	if err != nil {
		return nil, err
	}
	k.sealed = base64.StdEncoding.EncodeToString(sp)
	return k, nil
}

// saveLocked writes keys as the keyring, atomically. The caller installs
// keys in c.keys only after it succeeded.
func (c *Custodian) saveLocked(keys []*key) error {
	kr := keyringJSON{Version: 1, Check: c.check}
	for _, k := range keys {
		kr.Keys = append(kr.Keys, keyJSON{
			KID: k.pub.KID, State: k.pub.State, CreatedAt: k.pub.CreatedAt, StateSince: k.pub.StateSince,
			Public:        base64.RawURLEncoding.EncodeToString(k.pub.Key),
			SealedPrivate: k.sealed,
		})
	}
	out, err := json.MarshalIndent(kr, "", "  ")
	if err != nil {
		return fmt.Errorf("local custody: encode keyring: %w", sdk.ErrInternal)
	}
	return writeAtomic(c.path, append(out, '\n'))
}

func (c *Custodian) load(path string, krKey cipher.AEAD) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("local custody: stat keyring: %w: %w", sdk.ErrUnavailable, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("local custody: keyring %s has mode %#o; it must be 0600 or stricter (chmod 600 %s): %w", path, perm, path, sdk.ErrInvalidArgument)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("local custody: read keyring: %w: %w", sdk.ErrUnavailable, err)
	}
	corrupt := func(why string) error {
		return fmt.Errorf("local custody: keyring %s is corrupt (%s): %w", path, why, sdk.ErrInternal)
	}
	var kr keyringJSON
	if err := json.Unmarshal(raw, &kr); err != nil {
		return corrupt("not valid json")
	}
	if kr.Version != 1 {
		return corrupt(fmt.Sprintf("unsupported version %d", kr.Version))
	}
	check, err := base64.StdEncoding.DecodeString(kr.Check)
	if err != nil {
		return corrupt("check value is not base64")
	}
	pt, err := open(krKey, check, []byte(checkAAD))
	if err != nil || subtle.ConstantTimeCompare(pt, []byte(checkPlaintext)) != 1 {
		return fmt.Errorf("local custody: %s: %w", errWrongMaster, sdk.ErrInvalidArgument)
	}
	active := 0
	for i, kj := range kr.Keys {
		pub, err := base64.RawURLEncoding.DecodeString(kj.Public)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return corrupt(fmt.Sprintf("key %d: bad public key", i))
		}
		if custody.Thumbprint(pub) != kj.KID {
			return corrupt(fmt.Sprintf("key %d: kid is not the thumbprint of its public key", i))
		}
		switch kj.State {
		case custody.StateNext, custody.StateRetiring, custody.StateRetired:
		case custody.StateActive:
			active++
		default:
			return corrupt(fmt.Sprintf("key %s: unknown state %q", kj.KID, kj.State))
		}
		if kj.State == custody.StateRetired {
			// Its private half was dropped when it retired.
			c.keys = append(c.keys, &key{pub: custody.PublicKey{KID: kj.KID, Alg: "EdDSA", Key: pub, State: kj.State, CreatedAt: kj.CreatedAt, StateSince: kj.StateSince}})
			continue
		}
		sp, err := base64.StdEncoding.DecodeString(kj.SealedPrivate)
		if err != nil {
			return corrupt(fmt.Sprintf("key %s: sealed private key is not base64", kj.KID))
		}
		seed, err := open(krKey, sp, []byte(keyAADPrefix+kj.KID))
		if err != nil || len(seed) != ed25519.SeedSize {
			return corrupt(fmt.Sprintf("key %s: private key does not open", kj.KID))
		}
		priv := ed25519.NewKeyFromSeed(seed)
		clear(seed)
		if subtle.ConstantTimeCompare(priv.Public().(ed25519.PublicKey), pub) != 1 {
			return corrupt(fmt.Sprintf("key %s: private key does not match its public key", kj.KID))
		}
		since := kj.StateSince
		if since.IsZero() {
			since = kj.CreatedAt // a keyring written before rotation existed
		}
		c.keys = append(c.keys, &key{
			pub:     custody.PublicKey{KID: kj.KID, Alg: "EdDSA", Key: pub, State: kj.State, CreatedAt: kj.CreatedAt, StateSince: since},
			private: priv,
			sealed:  kj.SealedPrivate,
		})
	}
	if active != 1 {
		return corrupt(fmt.Sprintf("%d active keys, want exactly 1", active))
	}
	c.path, c.krKey, c.check = path, krKey, kr.Check
	return nil
}

// writeAtomic replaces path with data (mode 0600): temp file in the same
// directory, fsync, rename, fsync the directory, so a crash leaves either
// the old or the new file, never a torn one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("local custody: write %s: %w: %w", filepath.Base(path), sdk.ErrUnavailable, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("local custody: write %s: %w: %w", filepath.Base(path), sdk.ErrUnavailable, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("local custody: sync directory: %w: %w", sdk.ErrUnavailable, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("local custody: sync directory: %w: %w", sdk.ErrUnavailable, err)
	}
	return nil
}

var errClosed = fmt.Errorf("local custody: closed: %w", sdk.ErrUnavailable)

// Info implements custody.Custodian.
func (c *Custodian) Info(ctx context.Context) (custody.Info, error) {
	return custody.Info{Name: Name, Rotation: true}, nil
}

// CreateNextKey implements custody.Rotator.
func (c *Custodian) CreateNextKey(ctx context.Context, at time.Time) (custody.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return custody.PublicKey{}, errClosed
	}
	for _, k := range c.keys {
		if k.pub.State == custody.StateNext {
			return custody.PublicKey{}, fmt.Errorf("local custody: create next key: %s is the next key already: %w", k.pub.KID, sdk.ErrPrecondition)
		}
	}
	k, err := c.newKey(custody.StateNext, stamp(at))
	if err != nil {
		return custody.PublicKey{}, err
	}
	keys := append(slices.Clone(c.keys), k)
	if err := c.saveLocked(keys); err != nil {
		return custody.PublicKey{}, err
	}
	c.keys = keys
	c.logger.Info("local custody: next signing key created", "kid", k.pub.KID)
	return copyPub(k.pub), nil
}

// ActivateKey implements custody.Rotator.
func (c *Custodian) ActivateKey(ctx context.Context, kid string, at time.Time) error {
	return c.transition(kid, at, "activate", func(keys []*key, i int, now time.Time) error {
		if keys[i].pub.State != custody.StateNext {
			return fmt.Errorf("local custody: activate key %s: it is %s, not next: %w", kid, keys[i].pub.State, sdk.ErrPrecondition)
		}
		for _, k := range keys {
			if k.pub.State == custody.StateActive {
				k.pub.State, k.pub.StateSince = custody.StateRetiring, now
			}
		}
		keys[i].pub.State, keys[i].pub.StateSince = custody.StateActive, now
		return nil
	})
}

// RetireKey implements custody.Rotator. The retired key's private half is
// dropped from the keyring: it never signs again.
func (c *Custodian) RetireKey(ctx context.Context, kid string, at time.Time) error {
	return c.transition(kid, at, "retire", func(keys []*key, i int, now time.Time) error {
		switch keys[i].pub.State {
		case custody.StateRetired:
			return errNoChange
		case custody.StateRetiring:
		default:
			return fmt.Errorf("local custody: retire key %s: it is %s, not retiring: %w", kid, keys[i].pub.State, sdk.ErrPrecondition)
		}
		keys[i].pub.State, keys[i].pub.StateSince = custody.StateRetired, now
		keys[i].private, keys[i].sealed = nil, ""
		return nil
	})
}

var errNoChange = errors.New("no change")

// stamp is the time a state change is recorded at: the caller's, or now
// when it gave none; whole seconds, UTC.
func stamp(at time.Time) time.Time {
	if at.IsZero() {
		at = time.Now()
	}
	return at.UTC().Truncate(time.Second)
}

// transition applies change to a copy of the keyring and saves it; the
// in-memory keys change only when the keyring on disk did.
func (c *Custodian) transition(kid string, at time.Time, op string, change func(keys []*key, i int, now time.Time) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	keys := make([]*key, len(c.keys))
	idx := -1
	for i, k := range c.keys {
		cp := *k
		keys[i] = &cp
		if k.pub.KID == kid {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("local custody: %s key %q: %w", op, kid, sdk.ErrNotFound)
	}
	if err := change(keys, idx, stamp(at)); err != nil {
		if errors.Is(err, errNoChange) {
			return nil
		}
		return err
	}
	if err := c.saveLocked(keys); err != nil {
		return err
	}
	c.keys = keys
	c.logger.Info("local custody: key state changed", "op", op, "kid", kid)
	return nil
}

// PublicKeys implements custody.Custodian: every key not retired, the
// active one first. The slices returned are copies.
func (c *Custodian) PublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errClosed
	}
	out := make([]custody.PublicKey, 0, len(c.keys))
	for _, k := range c.keys {
		if k.pub.State == custody.StateActive {
			out = append(out, copyPub(k.pub))
		}
	}
	for _, k := range c.keys {
		if k.pub.State != custody.StateActive && k.pub.State != custody.StateRetired {
			out = append(out, copyPub(k.pub))
		}
	}
	return out, nil
}

// AllPublicKeys implements custody.KeyHistory: the keyring keeps the
// public half of a retired key (only its private half is dropped).
func (c *Custodian) AllPublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errClosed
	}
	out := make([]custody.PublicKey, 0, len(c.keys))
	for _, k := range c.keys {
		out = append(out, copyPub(k.pub))
	}
	return out, nil
}

func copyPub(p custody.PublicKey) custody.PublicKey {
	p.Key = append(ed25519.PublicKey(nil), p.Key...)
	return p
}

// Sign implements custody.Custodian.
func (c *Custodian) Sign(ctx context.Context, kid string, msg []byte) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errClosed
	}
	for _, k := range c.keys {
		if k.pub.KID == kid && k.pub.State != custody.StateRetired {
			return ed25519.Sign(k.private, msg), nil
		}
	}
	return nil, fmt.Errorf("local custody: sign: key %q: %w", kid, sdk.ErrNotFound)
}

// Encrypt implements custody.Custodian: AES-256-GCM under the secrets
// subkey, output version(1) | nonce(12) | ciphertext+tag.
func (c *Custodian) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errClosed
	}
	return seal(c.secrets, plaintext, aad)
}

// Decrypt implements custody.Custodian.
func (c *Custodian) Decrypt(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errClosed
	}
	return open(c.secrets, sealed, aad)
}

// Close implements custody.Custodian. It wipes the private keys held in
// memory; later calls fail with sdk.ErrUnavailable. Closing twice is a
// no-op.
func (c *Custodian) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for _, k := range c.keys {
		clear(k.private)
	}
	c.keys, c.secrets = nil, nil
	return nil
}
