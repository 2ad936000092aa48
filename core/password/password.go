// Package password hashes and verifies account passwords with Argon2id
// (RFC 9106) and stores them as PHC strings:
//
//	$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. The parameters travel
// inside each hash, so they can be raised later without breaking old
// hashes: NeedsRehash tells the caller when to re-hash after a successful
// login.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/metacircular/mcias/sdk"
)

const (
	// KeyLen is the length of the derived hash in bytes.
	KeyLen = 32
	// SaltLen is the length of the random salt in bytes.
	SaltLen = 16
	// MaxMemoryKiB caps the memory parameter (4 GiB) so that a typo in a
	// config file, or a forged stored hash, cannot make one verification
	// exhaust the host.
	MaxMemoryKiB = 4 * 1024 * 1024
	// maxTime caps the iteration count for the same reason.
	maxTime = 1 << 10
	// minStoredKeyLen and maxStoredKeyLen bound hashes accepted by Verify.
	minStoredKeyLen = 16
	maxStoredKeyLen = 128
)

// Params are the Argon2id cost parameters.
type Params struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // lanes
}

// DefaultParams returns t=3, m=65536 KiB (64 MiB), p=1: above every OWASP
// minimum with margin, and about 50-100 ms on a current server core.
func DefaultParams() Params {
	return Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 1}
}

// owaspMinimums is the OWASP Password Storage Cheat Sheet table for
// Argon2id: each row is an equally strong (memory, time) pair, and
// parameters are acceptable when they reach at least one row.
var owaspMinimums = []struct{ MemoryKiB, Time uint32 }{
	{47104, 1},
	{19456, 2},
	{12288, 3},
	{9216, 4},
	{7168, 5},
}

func minimumsTable() string {
	rows := make([]string, len(owaspMinimums))
	for i, m := range owaspMinimums {
		rows[i] = fmt.Sprintf("m>=%d KiB with t>=%d", m.MemoryKiB, m.Time)
	}
	return strings.Join(rows, ", ")
}

// Validate checks p against the OWASP minimums (at least one of m>=47104
// KiB t>=1, m>=19456 t>=2, m>=12288 t>=3, m>=9216 t>=4, m>=7168 t>=5),
// p>=1, and the sanity caps (m <= 4 GiB). Errors wrap
// sdk.ErrInvalidArgument.
func (p Params) Validate() error {
	if p.Threads < 1 {
		return fmt.Errorf("password: argon2id threads must be at least 1: %w", sdk.ErrInvalidArgument)
	}
	if p.MemoryKiB > MaxMemoryKiB {
		return fmt.Errorf("password: argon2id memory %d KiB exceeds the cap of %d KiB (4 GiB): %w",
			p.MemoryKiB, MaxMemoryKiB, sdk.ErrInvalidArgument)
	}
	if p.Time > maxTime {
		return fmt.Errorf("password: argon2id time %d exceeds the cap of %d: %w", p.Time, maxTime, sdk.ErrInvalidArgument)
	}
	if p.MemoryKiB < 8*uint32(p.Threads) {
		return fmt.Errorf("password: argon2id memory must be at least 8 KiB per thread: %w", sdk.ErrInvalidArgument)
	}
	for _, m := range owaspMinimums {
		if p.MemoryKiB >= m.MemoryKiB && p.Time >= m.Time {
			return nil
		}
	}
	return fmt.Errorf("password: argon2id parameters m=%d KiB t=%d are below the OWASP minimums; use one of: %s: %w",
		p.MemoryKiB, p.Time, minimumsTable(), sdk.ErrInvalidArgument)
}

// Hash derives a new PHC string for password with a fresh random salt.
// It refuses parameters that fail Validate, so a misconfiguration cannot
// silently weaken new hashes.
func Hash(password string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: read salt: %w", sdk.ErrInternal)
	}
	return encode(p, salt, argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, KeyLen)), nil
}

func encode(p Params, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// phc is a parsed PHC string.
type phc struct {
	params Params
	salt   []byte
	key    []byte
}

var errMalformed = fmt.Errorf("password: malformed argon2id hash: %w", sdk.ErrInvalidArgument)

// parse reads a PHC string. Its errors never include the input: a stored
// hash is a secret.
func parse(s string) (phc, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return phc{}, errMalformed
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return phc{}, fmt.Errorf("password: unsupported argon2 version: %w", sdk.ErrInvalidArgument)
	}
	var out phc
	var seen [3]bool
	kvs := strings.Split(parts[3], ",")
	if len(kvs) != 3 {
		return phc{}, errMalformed
	}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return phc{}, errMalformed
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return phc{}, errMalformed
		}
		switch k {
		case "m":
			out.params.MemoryKiB, seen[0] = uint32(n), true
		case "t":
			out.params.Time, seen[1] = uint32(n), true
		case "p":
			if n > 255 {
				return phc{}, errMalformed
			}
			out.params.Threads, seen[2] = uint8(n), true
		default:
			return phc{}, errMalformed
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return phc{}, errMalformed
	}
	p := out.params
	if p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.MemoryKiB > MaxMemoryKiB || p.MemoryKiB < 8*uint32(p.Threads) {
		return phc{}, errMalformed
	}
	var err error
	if out.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil || len(out.salt) < 8 {
		return phc{}, errMalformed
	}
	if out.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil ||
		len(out.key) < minStoredKeyLen || len(out.key) > maxStoredKeyLen {
		return phc{}, errMalformed
	}
	return out, nil
}

// Verify reports whether password matches the PHC string. The comparison
// is constant-time. err is non-nil only when phc is malformed (wrapping
// sdk.ErrInvalidArgument); a wrong password is (false, nil). Hashes made
// with weaker parameters than today's still verify; see NeedsRehash.
func Verify(password, phcString string) (ok bool, err error) {
	h, err := parse(phcString)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), h.salt, h.params.Time, h.params.MemoryKiB, h.params.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1, nil
}

// NeedsRehash reports whether phc was made with parameters, salt or key
// length other than what Hash(_, p) produces today (or is malformed), so
// the caller should store a fresh hash after the next successful Verify.
func NeedsRehash(phcString string, p Params) bool {
	h, err := parse(phcString)
	if err != nil {
		return true
	}
	return h.params != p || len(h.salt) != SaltLen || len(h.key) != KeyLen
}

// Hasher runs Argon2id with bounded concurrency: each call holds one of
// maxConcurrent slots while it hashes, so a flood of logins costs at most
// maxConcurrent times the memory parameter instead of exhausting the host.
type Hasher struct {
	params Params
	slots  chan struct{}
}

// NewHasher returns a Hasher for p allowing maxConcurrent simultaneous
// hashes (values below 1 mean 1). p is checked by Hash, not here, so that
// callers validate configuration once with p.Validate.
func NewHasher(p Params, maxConcurrent int) *Hasher {
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	return &Hasher{params: p, slots: make(chan struct{}, maxConcurrent)}
}

// Params returns the parameters new hashes are made with.
func (h *Hasher) Params() Params { return h.params }

// acquire waits for a slot; it fails with sdk.ErrUnavailable (and the
// context's error) when ctx ends first.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password: wait for a hashing slot: %w: %w", sdk.ErrUnavailable, err)
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("password: wait for a hashing slot: %w: %w", sdk.ErrUnavailable, ctx.Err())
	}
}

func (h *Hasher) release() { <-h.slots }

// Hash is Hash(password, h.Params()) run in a slot.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return Hash(password, h.params)
}

// Verify is Verify(password, phc) run in a slot.
func (h *Hasher) Verify(ctx context.Context, password, phcString string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	return Verify(password, phcString)
}

// VerifyDummy burns the time and memory of a real Verify at the current
// parameters without any hash to compare to. Login calls it for unknown
// users so that response time does not reveal whether a username exists.
// It waits for a slot like Verify and gives up quietly when ctx ends.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) {
	if err := h.acquire(ctx); err != nil {
		return
	}
	defer h.release()
	var salt [SaltLen]byte
	p := h.params
	if p.Threads < 1 {
		p.Threads = 1
	}
	key := argon2.IDKey([]byte(password), salt[:], p.Time, p.MemoryKiB, p.Threads, KeyLen)
	// Compare like Verify does, against a value that can never match, so
	// the dummy path does the same work.
	var never [KeyLen]byte
	_ = subtle.ConstantTimeCompare(key, never[:])
}
