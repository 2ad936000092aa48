// Package seedkeys is an example MCIAS key custodian written outside the
// MCIAS tree: one 32-byte seed in a file, from which HKDF-SHA256 derives
// the Ed25519 signing key and the AES-256-GCM key that seals secrets at
// rest. It has one key and no rotation; it shows what the custody
// contract asks of a backend and passes the same conformance suite as the
// builtin local custodian.
//
// URI: seedkeys:///abs/path/seed (or seedkeys:relative/seed). The file
// holds the seed in standard base64 and must be mode 0600; it is created
// with a fresh random seed when missing. Back it up: without it, sealed
// secrets cannot be opened and every token ever issued stops verifying.
package seedkeys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
)

// Name is the custodian's name in Info.
const Name = "seedkeys"

// sealVersion is the first byte of every sealed blob, so the format can
// change later without guessing.
const sealVersion = 1

// Custodian holds the keys derived from one seed.
type Custodian struct {
	priv    ed25519.PrivateKey
	pub     custody.PublicKey
	aead    cipher.AEAD
	mu      sync.RWMutex
	closed  bool
	created time.Time
}

var _ custody.Custodian = (*Custodian)(nil)

// Open is the custody.Factory of the backend.
func Open(ctx context.Context, uri string, logger *slog.Logger) (custody.Custodian, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("seedkeys: open: %w: %w", sdk.ErrUnavailable, err)
	}
	seed, created, err := loadSeed(path, logger)
	if err != nil {
		return nil, err
	}
	signSeed, err := hkdf.Key(sha256.New, seed, nil, "mcias seedkeys ed25519 v1", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("seedkeys: derive signing key: %w: %v", sdk.ErrInternal, err)
	}
	sealKey, err := hkdf.Key(sha256.New, seed, nil, "mcias seedkeys aes-256-gcm v1", 32)
	if err != nil {
		return nil, fmt.Errorf("seedkeys: derive sealing key: %w: %v", sdk.ErrInternal, err)
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("seedkeys: %w: %v", sdk.ErrInternal, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seedkeys: %w: %v", sdk.ErrInternal, err)
	}
	priv := ed25519.NewKeyFromSeed(signSeed)
	pub := priv.Public().(ed25519.PublicKey)
	c := &Custodian{priv: priv, aead: aead, created: created}
	c.pub = custody.PublicKey{KID: custody.Thumbprint(pub), Alg: "EdDSA", Key: pub, State: custody.StateActive, CreatedAt: created}
	logger.Info("seedkeys: keys ready", "kid", c.pub.KID)
	return c, nil
}

func parseURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != Name {
		return "", fmt.Errorf("seedkeys: uri %q: %w: want seedkeys:///path/seed", uri, sdk.ErrInvalidArgument)
	}
	path := u.Path
	if u.Opaque != "" {
		path = u.Opaque
	}
	if path == "" || (u.Host != "" && u.Host != "localhost") || u.RawQuery != "" {
		return "", fmt.Errorf("seedkeys: uri %q: %w: want seedkeys:///path/seed", uri, sdk.ErrInvalidArgument)
	}
	return filepath.Clean(path), nil
}

// loadSeed reads the seed, creating it when the file is missing. The
// key's creation time is the file's modification time.
func loadSeed(path string, logger *slog.Logger) ([]byte, time.Time, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		seed := make([]byte, 32)
		_, _ = rand.Read(seed) // never fails (crypto/rand contract)
		enc := base64.StdEncoding.EncodeToString(seed) + "\n"
		if err := os.WriteFile(path, []byte(enc), 0o600); err != nil {
			return nil, time.Time{}, fmt.Errorf("seedkeys: create seed %s: %w: %w", path, sdk.ErrUnavailable, err)
		}
		logger.Warn("seedkeys: created a new seed; back it up", "path", path)
		raw = []byte(enc)
	} else if err != nil {
		return nil, time.Time{}, fmt.Errorf("seedkeys: read seed %s: %w: %w", path, sdk.ErrUnavailable, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("seedkeys: stat seed %s: %w: %w", path, sdk.ErrUnavailable, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, time.Time{}, fmt.Errorf("seedkeys: seed %s is readable by others (mode %#o, want 0600): %w", path, st.Mode().Perm(), sdk.ErrInvalidArgument)
	}
	seed, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil || len(seed) != 32 {
		return nil, time.Time{}, fmt.Errorf("seedkeys: seed %s is not 32 bytes of base64: %w", path, sdk.ErrInvalidArgument)
	}
	return seed, st.ModTime().UTC(), nil
}

func (c *Custodian) check(op string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return fmt.Errorf("seedkeys: %s: %w: custodian is closed", op, sdk.ErrUnavailable)
	}
	return nil
}

// Info implements custody.Custodian.
func (c *Custodian) Info(context.Context) (custody.Info, error) {
	return custody.Info{Name: Name}, c.check("info")
}

// PublicKeys implements custody.Custodian: the one key, active.
func (c *Custodian) PublicKeys(context.Context) ([]custody.PublicKey, error) {
	if err := c.check("public keys"); err != nil {
		return nil, err
	}
	k := c.pub
	k.Key = bytes.Clone(c.pub.Key) // the caller may not change ours
	return []custody.PublicKey{k}, nil
}

// Sign implements custody.Custodian.
func (c *Custodian) Sign(_ context.Context, kid string, msg []byte) ([]byte, error) {
	if err := c.check("sign"); err != nil {
		return nil, err
	}
	if kid != c.pub.KID {
		return nil, fmt.Errorf("seedkeys: sign: key %q: %w", kid, sdk.ErrNotFound)
	}
	return ed25519.Sign(c.priv, msg), nil
}

// Encrypt implements custody.Custodian: version byte, nonce, AES-GCM
// ciphertext and tag, with aad authenticated.
func (c *Custodian) Encrypt(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := c.check("encrypt"); err != nil {
		return nil, err
	}
	out := make([]byte, 1+c.aead.NonceSize(), 1+c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1:]) // never fails (crypto/rand contract)
	return c.aead.Seal(out, out[1:], plaintext, aad), nil
}

// Decrypt implements custody.Custodian.
func (c *Custodian) Decrypt(_ context.Context, sealed, aad []byte) ([]byte, error) {
	if err := c.check("decrypt"); err != nil {
		return nil, err
	}
	n := c.aead.NonceSize()
	if len(sealed) < 1+n+c.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("seedkeys: decrypt: %w: malformed sealed value", sdk.ErrInvalidArgument)
	}
	pt, err := c.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, fmt.Errorf("seedkeys: decrypt: %w: sealed value does not open with this key and aad", sdk.ErrInvalidArgument)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// Close implements custody.Custodian; it is idempotent.
func (c *Custodian) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}
