// Package custody defines the key-custody contract: who holds the token
// signing keys and the key that seals secrets at rest. The core never sees
// a private key; it asks the custodian to sign and to seal or open.
package custody

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"time"
)

// KeyState is where a signing key is in its life.
type KeyState string

const (
	// StateNext: published for verifiers, not yet signing.
	StateNext KeyState = "next"
	// StateActive: the key that signs new tokens. Exactly one.
	StateActive KeyState = "active"
	// StateRetiring: no longer signs; still published until every token
	// it signed has expired.
	StateRetiring KeyState = "retiring"
	// StateRetired: unpublished.
	StateRetired KeyState = "retired"
)

// PublicKey is a signing key's public half and metadata.
type PublicKey struct {
	// KID is the RFC 7638 JWK thumbprint of the key.
	KID       string
	Alg       string // always "EdDSA"
	Key       ed25519.PublicKey
	State     KeyState
	CreatedAt time.Time
	// StateSince is when the key entered State (for a next key, when it
	// was first published; for a retiring one, when it stopped signing).
	// Rotation schedules count from it. Zero when the custodian does not
	// rotate; callers then use CreatedAt.
	StateSince time.Time
}

// Info describes a custodian and its optional capabilities.
type Info struct {
	Name string
	// Rotation reports that the custodian implements Rotator.
	Rotation bool
}

// Custodian holds keys. Implementations must be safe for concurrent use.
type Custodian interface {
	// Info reports the custodian's name.
	Info(ctx context.Context) (Info, error)
	// PublicKeys lists every key that is not retired. Exactly one is
	// StateActive. Callers cache the result; it changes only on rotation.
	PublicKeys(ctx context.Context) ([]PublicKey, error)
	// Sign signs msg (the JWS signing input, not a digest) with the
	// Ed25519 key kid. ErrNotFound when kid is unknown or retired,
	// ErrUnavailable when the key store cannot be reached.
	Sign(ctx context.Context, kid string, msg []byte) ([]byte, error)
	// Encrypt seals plaintext for storage at rest, authenticated
	// together with aad (callers bind the owner, e.g. "totp:<id>"). The
	// result is self-describing: Decrypt needs only it and aad.
	Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Decrypt opens what Encrypt sealed. ErrInvalidArgument when the
	// blob is malformed or fails authentication (wrong aad, tampering).
	Decrypt(ctx context.Context, sealed, aad []byte) ([]byte, error)
	// Close releases the custodian.
	Close(ctx context.Context) error
}

// Rotator is the optional capability of custodians whose signing keys
// rotate. A key moves only forward: next -> active -> retiring -> retired.
// Each method is atomic (a crash leaves the old or the new states, never
// a mix) and durable when it returns. The core drives the schedule; the
// custodian only keeps the states, stamped with the time at the core
// passes (StateSince), so one clock decides the schedule. Custodians without it return
// sdk.ErrNotImplemented from these methods across the plugin wire and
// report Info.Rotation false.
type Rotator interface {
	// CreateNextKey generates a new key in StateNext: listed by
	// PublicKeys (so verifiers learn it) but not yet signing.
	// ErrPrecondition when a next key exists already.
	CreateNextKey(ctx context.Context, at time.Time) (PublicKey, error)
	// ActivateKey makes the next key kid the active one and the active
	// key retiring, in one step. ErrNotFound when kid is unknown or
	// retired, ErrPrecondition when it is not the next key.
	ActivateKey(ctx context.Context, kid string, at time.Time) error
	// RetireKey retires the retiring key kid: no longer listed, never
	// signs again (the custodian may destroy its private half).
	// ErrNotFound when kid is unknown, ErrPrecondition when it is the
	// active or the next key. Retiring a retired key is a no-op.
	RetireKey(ctx context.Context, kid string, at time.Time) error
}

// KeyHistory is the optional capability of custodians that keep the
// public half of retired keys. Audit checkpoints are signed with the
// signing key of their day; verifying an old checkpoint needs that key
// after it retired, so the admin key listing includes these.
type KeyHistory interface {
	// AllPublicKeys lists every key the custodian has held, retired ones
	// included, in no particular order.
	AllPublicKeys(ctx context.Context) ([]PublicKey, error)
}

// KeyImporter is the optional capability of custodians that can publish
// another custodian's public key, for moving a deployment between
// custodians without invalidating its tokens: the old keys are imported
// as retiring, verification-only keys, and retire on the usual schedule.
type KeyImporter interface {
	// ImportRetiringKey lists pub (its KID the RFC 7638 thumbprint of its
	// Key) as StateRetiring since at. It can never sign (Sign answers
	// ErrNotFound). Importing a key that is already listed is a no-op.
	// ErrInvalidArgument when the key or kid is malformed.
	ImportRetiringKey(ctx context.Context, pub PublicKey, at time.Time) error
}

// Factory opens a custodian from its URI (for example
// "local:///etc/mcias/keys?key_file=/etc/mcias/master.key").
type Factory func(ctx context.Context, uri string, logger *slog.Logger) (Custodian, error)

// Thumbprint returns the RFC 7638 JWK thumbprint of an Ed25519 public key
// (RFC 8037 section 2): base64url, unpadded, of the SHA-256 of the
// canonical JWK {"crv":"Ed25519","kty":"OKP","x":"..."}. It is the kid of
// every MCIAS signing key.
func Thumbprint(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
