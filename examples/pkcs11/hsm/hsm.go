// Package hsm is an MCIAS key custodian over PKCS#11: the token signing
// keys are Ed25519 key pairs generated inside the token
// (CKM_EC_EDWARDS_KEY_PAIR_GEN) and used with CKM_EDDSA, and secrets at
// rest are sealed with an AES-256 key held by the token (CKM_AES_GCM). No
// private or secret key ever leaves the token: they are created sensitive
// and not extractable.
//
// The token holds, under the label prefix OBJECT (the URI's object
// attribute, default "mcias"):
//
//	OBJECT-seal   AES-256 secret key               seals and opens secrets
//	OBJECT-sign   Ed25519 key pairs, CKA_ID each   sign tokens
//	OBJECT-state  data object (JSON)               each key's state and creation time
//
// The state object also marks the token as initialised: when it exists and
// a key it names is gone, the custodian reports that plainly
// (sdk.ErrUnavailable, an error log line, Info failing so readiness turns
// red) instead of generating a new key that would orphan every sealed
// secret and every issued token.
package hsm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
)

// Mechanism and key type numbers of PKCS#11 v3.0 that miekg/pkcs11's
// constant table (generated from v2.40 headers) does not have.
const (
	ckmECEdwardsKeyPairGen = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA               = 0x00001057 // CKM_EDDSA
	ckkECEdwards           = 0x00000040 // CKK_EC_EDWARDS
)

// oidEd25519 is CKA_EC_PARAMS for Ed25519: the DER OID 1.3.101.112
// (RFC 8410).
var oidEd25519 = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}

// Sealed blobs: version byte, 12-byte GCM nonce, ciphertext and 16-byte tag.
const (
	sealVersion = 1
	nonceSize   = 12
	tagBits     = 128
)

// application tags the state data object (CKA_APPLICATION).
const application = "mcias"

// Open opens the custodian a pkcs11: URI names (see ParseURI). On a token
// without this custodian's objects it creates the sealing key, a first
// signing key and the state object. It is a custody.Factory.
func Open(ctx context.Context, uri string, logger *slog.Logger) (custody.Custodian, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pin, err := cfg.pin()
	if err != nil {
		return nil, err
	}
	lib, err := library(cfg.ModulePath)
	if err != nil {
		return nil, err
	}
	c := &Custodian{cfg: cfg, pin: pin, lib: lib, log: logger.With("token", cfg.Token, "object", cfg.Object)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connectLocked(); err != nil {
		return nil, err
	}
	if err := c.loadLocked(true); err != nil {
		c.disconnectLocked()
		return nil, err
	}
	c.log.Info("pkcs11 custodian open", "keys", len(c.keys))
	return c, nil
}

// Custodian is the PKCS#11 custodian. It is safe for concurrent use: each
// operation takes a session from a pool (a PKCS#11 session runs one
// operation at a time).
type Custodian struct {
	cfg Config
	pin string
	lib *pkcs11.Ctx
	log *slog.Logger

	// mu guards everything below. Operations hold it shared while they
	// use a session; reconnecting holds it exclusively, so it never pulls
	// a session from under an operation.
	mu       sync.RWMutex
	closed   bool
	slot     uint
	sessions chan pkcs11.SessionHandle
	all      []pkcs11.SessionHandle
	gen      uint64 // bumped by every (re)connect
	broken   error  // why the last reconnect failed, until one succeeds

	seal     pkcs11.ObjectHandle
	state    pkcs11.ObjectHandle
	stateGen uint64
	keys     []*key // as listed in the state object
}

type key struct {
	id      []byte // CKA_ID of both halves
	kid     string
	pub     ed25519.PublicKey
	state   custody.KeyState
	created time.Time
	since   time.Time
	priv    pkcs11.ObjectHandle
	// publicOnly: imported from another custodian to verify its tokens
	// while they live; no private half, never signs.
	publicOnly bool
}

// stateDoc is the JSON in the state object.
type stateDoc struct {
	Gen  uint64     `json:"gen"` // bumped by every write
	Keys []stateKey `json:"keys"`
}

type stateKey struct {
	ID      string           `json:"id"` // hex CKA_ID
	State   custody.KeyState `json:"state"`
	Created time.Time        `json:"created"`
	Since   time.Time        `json:"since"`
	// PublicOnly marks a key imported (ImportRetiringKey) to verify
	// another custodian's tokens.
	PublicOnly bool `json:"public_only,omitempty"`
}

var libs = struct {
	mu sync.Mutex
	m  map[string]*pkcs11.Ctx
}{m: map[string]*pkcs11.Ctx{}}

// library loads and initialises a PKCS#11 module once per process: a
// module is process-wide state (C_Initialize, the login), so every
// custodian on it shares one handle.
func library(path string) (*pkcs11.Ctx, error) {
	libs.mu.Lock()
	defer libs.mu.Unlock()
	if l, ok := libs.m[path]; ok {
		return l, nil
	}
	l := pkcs11.New(path)
	if l == nil {
		return nil, fmt.Errorf("pkcs11: cannot load module %s: %w", path, sdk.ErrInvalidArgument)
	}
	if err := initialize(l); err != nil {
		l.Destroy()
		return nil, fmt.Errorf("pkcs11: initialise module %s: %w", path, unavailable(err))
	}
	libs.m[path] = l
	return l, nil
}

func initialize(l *pkcs11.Ctx) error {
	if err := l.Initialize(); err != nil && !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return err
	}
	return nil
}

func isRV(err error, rvs ...uint) bool {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, rv := range rvs {
		if uint(e) == rv {
			return true
		}
	}
	return false
}

// lost reports whether err means the sessions, the login or the object
// handles are no longer good (the token was removed or restarted, the
// library was finalised under us). A reconnect may cure these.
func lost(err error) bool {
	return isRV(err,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_SLOT_ID_INVALID)
}

func unavailable(err error) error { return fmt.Errorf("%w: %w", sdk.ErrUnavailable, err) }

// connectLocked finds the token, opens the session pool and logs in.
func (c *Custodian) connectLocked() error {
	if err := initialize(c.lib); err != nil {
		return fmt.Errorf("pkcs11: initialise: %w", unavailable(err))
	}
	slot, err := c.findSlot()
	if err != nil {
		return err
	}
	c.slot = slot
	c.sessions = make(chan pkcs11.SessionHandle, c.cfg.Sessions)
	c.all = nil
	for range c.cfg.Sessions {
		sh, err := c.lib.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			c.disconnectLocked()
			return fmt.Errorf("pkcs11: open session on token %s: %w", c.cfg.Token, unavailable(err))
		}
		c.all = append(c.all, sh)
		c.sessions <- sh
	}
	// The login is the application's, shared by all its sessions.
	if err := c.lib.Login(c.all[0], pkcs11.CKU_USER, c.pin); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		c.disconnectLocked()
		if isRV(err, pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE) {
			return fmt.Errorf("pkcs11: log in to token %s: the PIN is wrong: %w", c.cfg.Token, sdk.ErrInvalidArgument)
		}
		return fmt.Errorf("pkcs11: log in to token %s: %w", c.cfg.Token, unavailable(err))
	}
	c.gen++
	return nil
}

func (c *Custodian) findSlot() (uint, error) {
	slots, err := c.lib.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11: list slots: %w", unavailable(err))
	}
	for _, s := range slots {
		ti, err := c.lib.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Label == c.cfg.Token && (c.cfg.Serial == "" || ti.SerialNumber == c.cfg.Serial) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("pkcs11: no token labelled %q in module %s: %w", c.cfg.Token, c.cfg.ModulePath, sdk.ErrUnavailable)
}

// disconnectLocked closes this custodian's sessions. It never finalises
// the module, which other custodians in the process may be using.
func (c *Custodian) disconnectLocked() {
	for _, sh := range c.all {
		_ = c.lib.CloseSession(sh) // a lost session is already closed
	}
	c.all = nil
	c.sessions = nil
}

func (c *Custodian) label(what string) string { return c.cfg.Object + "-" + what }

// find returns the handles of the objects that match tmpl.
func (c *Custodian) find(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := c.lib.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	var out []pkcs11.ObjectHandle
	for {
		hs, _, err := c.lib.FindObjects(sh, 16)
		if err != nil {
			_ = c.lib.FindObjectsFinal(sh)
			return nil, err
		}
		out = append(out, hs...)
		if len(hs) == 0 {
			break
		}
	}
	return out, c.lib.FindObjectsFinal(sh)
}

// findOne returns the single object matching tmpl; ok is false when there
// is none.
func (c *Custodian) findOne(sh pkcs11.SessionHandle, what string, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, bool, error) {
	hs, err := c.find(sh, tmpl)
	if err != nil {
		return 0, false, fmt.Errorf("pkcs11: find %s: %w", what, unavailable(err))
	}
	switch len(hs) {
	case 0:
		return 0, false, nil
	case 1:
		return hs[0], true, nil
	default:
		return 0, false, fmt.Errorf("pkcs11: token %s holds %d objects %s, want one: %w", c.cfg.Token, len(hs), what, sdk.ErrInternal)
	}
}

func (c *Custodian) sealTmpl() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("seal")),
	}
}

func (c *Custodian) stateTmpl() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, application),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("state")),
	}
}

func (c *Custodian) keyTmpl(class uint, id []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("sign")),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
}

// loadLocked reads the state object and finds every key it names. With
// create, a token that holds none of this custodian's objects is set up.
func (c *Custodian) loadLocked(create bool) error {
	sh := c.all[0]
	states, err := c.find(sh, c.stateTmpl())
	if err != nil {
		return fmt.Errorf("pkcs11: find the state object: %w", unavailable(err))
	}
	if len(states) == 0 {
		if !create {
			return c.gone(fmt.Errorf("pkcs11: the state object %s is gone from token %s: %w", c.label("state"), c.cfg.Token, sdk.ErrUnavailable))
		}
		return c.initTokenLocked(sh)
	}
	// A rotation writes a new state object with the next generation, then
	// destroys the old one; a crash in between leaves both, and the newer
	// one is the truth.
	var doc stateDoc
	c.state = 0
	for _, h := range states {
		attrs, err := c.lib.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return fmt.Errorf("pkcs11: read state object: %w", unavailable(err))
		}
		var d stateDoc
		if err := json.Unmarshal(attrs[0].Value, &d); err != nil {
			return fmt.Errorf("pkcs11: state object %s is not valid JSON: %w", c.label("state"), sdk.ErrInternal)
		}
		if c.state == 0 || d.Gen > doc.Gen {
			c.state, doc = h, d
		}
	}
	c.stateGen = doc.Gen
	seal, ok, err := c.findOne(sh, "sealing key "+c.label("seal"), c.sealTmpl())
	if err != nil {
		return err
	}
	if !ok {
		return c.gone(fmt.Errorf("pkcs11: the sealing key %s is gone from token %s; sealed secrets cannot be opened until it is restored: %w", c.label("seal"), c.cfg.Token, sdk.ErrUnavailable))
	}
	keys := make([]*key, 0, len(doc.Keys))
	for _, sk := range doc.Keys {
		k, err := c.loadKey(sh, sk)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	c.seal, c.keys = seal, keys
	return nil
}

// gone logs that a key the state object names is missing and returns err.
func (c *Custodian) gone(err error) error {
	c.log.Error("pkcs11 key missing from token", "error", err.Error())
	return err
}

func (c *Custodian) loadKey(sh pkcs11.SessionHandle, sk stateKey) (*key, error) {
	id, err := hex.DecodeString(sk.ID)
	if err != nil || len(id) == 0 {
		return nil, fmt.Errorf("pkcs11: state object names key id %q: %w", sk.ID, sdk.ErrInternal)
	}
	k := &key{id: id, state: sk.State, created: sk.Created, since: sk.Since, publicOnly: sk.PublicOnly}
	pubH, ok, err := c.findOne(sh, "public key "+sk.ID, c.keyTmpl(pkcs11.CKO_PUBLIC_KEY, id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, c.gone(fmt.Errorf("pkcs11: the public half of signing key id %s is gone from token %s: %w", sk.ID, c.cfg.Token, sdk.ErrUnavailable))
	}
	if k.pub, err = c.publicKey(sh, pubH); err != nil {
		return nil, err
	}
	k.kid = custody.Thumbprint(k.pub)
	if sk.State == custody.StateRetired || sk.PublicOnly {
		return k, nil // never signs (again); there may be no private half
	}
	priv, ok, err := c.findOne(sh, "private key "+sk.ID, c.keyTmpl(pkcs11.CKO_PRIVATE_KEY, id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, c.gone(fmt.Errorf("pkcs11: signing key %s (id %s, %s) is gone from token %s; no token can be signed with it: %w", k.kid, sk.ID, sk.State, c.cfg.Token, sdk.ErrUnavailable))
	}
	k.priv = priv
	return k, nil
}

// publicKey reads an Ed25519 public key's CKA_EC_POINT: the 32 bytes,
// DER-wrapped in an OCTET STRING as PKCS#11 v3.0 says, or bare as some
// modules return them.
func (c *Custodian) publicKey(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (ed25519.PublicKey, error) {
	attrs, err := c.lib.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: read public key: %w", unavailable(err))
	}
	p := attrs[0].Value
	switch {
	case len(p) == ed25519.PublicKeySize:
	case len(p) == ed25519.PublicKeySize+2 && p[0] == 0x04 && p[1] == ed25519.PublicKeySize:
		p = p[2:]
	default:
		return nil, fmt.Errorf("pkcs11: public key has a %d-byte EC point, not Ed25519: %w", len(p), sdk.ErrInternal)
	}
	return ed25519.PublicKey(append([]byte(nil), p...)), nil
}

// initTokenLocked creates the sealing key, a first active signing key and
// the state object, refusing when some of this custodian's objects are
// already there (a half set up or damaged token is for a human to look
// at).
func (c *Custodian) initTokenLocked(sh pkcs11.SessionHandle) error {
	for _, tmpl := range [][]*pkcs11.Attribute{
		c.sealTmpl(),
		{pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("sign"))},
	} {
		hs, err := c.find(sh, tmpl)
		if err != nil {
			return fmt.Errorf("pkcs11: look for existing keys: %w", unavailable(err))
		}
		if len(hs) > 0 {
			return c.gone(fmt.Errorf("pkcs11: token %s holds keys labelled %s-* but no state object %s; refusing to create new keys over them: %w",
				c.cfg.Token, c.cfg.Object, c.label("state"), sdk.ErrUnavailable))
		}
	}
	seal, err := c.lib.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("seal")),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	})
	if err != nil {
		return fmt.Errorf("pkcs11: generate the AES sealing key: %w", unavailable(err))
	}
	k, err := c.generateKey(sh, custody.StateActive, stamp(time.Time{}))
	if err != nil {
		return err
	}
	c.seal = seal
	if err := c.saveLocked(sh, []*key{k}); err != nil {
		return err
	}
	c.log.Info("pkcs11 token set up: sealing key and first signing key generated in the token", "kid", k.kid)
	return nil
}

func docOf(keys []*key) stateDoc {
	var d stateDoc
	for _, k := range keys {
		d.Keys = append(d.Keys, stateKey{ID: hex.EncodeToString(k.id), State: k.state, Created: k.created, Since: k.since, PublicOnly: k.publicOnly})
	}
	return d
}

// generateKey makes an Ed25519 key pair inside the token. The private
// half is sensitive and not extractable: it can sign, nothing else.
func (c *Custodian) generateKey(sh pkcs11.SessionHandle, state custody.KeyState, now time.Time) (*key, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("pkcs11: key id: %w", sdk.ErrInternal)
	}
	pubH, privH, err := c.lib.GenerateKeyPair(sh,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oidEd25519),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("sign")),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("sign")),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: generate an Ed25519 key pair in token %s (does the module support CKM_EC_EDWARDS_KEY_PAIR_GEN?): %w", c.cfg.Token, unavailable(err))
	}
	pub, err := c.publicKey(sh, pubH)
	if err != nil {
		return nil, err
	}
	k := &key{id: id, pub: pub, kid: custody.Thumbprint(pub), state: state, created: now, since: now, priv: privH}
	c.log.Info("pkcs11 signing key generated in the token", "kid", k.kid, "state", string(state))
	return k, nil
}

// do runs op on a pooled session, with c.mu held shared (op reads the
// key handles without locking again). When the token, its sessions or the
// library were lost under it (a restart, a removal), it reconnects and
// runs op once more; a second failure is reported as sdk.ErrUnavailable.
func (c *Custodian) do(ctx context.Context, op func(sh pkcs11.SessionHandle) error) error {
	var err error
	for attempt := range 2 {
		var gen uint64
		gen, err = c.run(ctx, op)
		if err == nil || !lost(err) {
			return err
		}
		if attempt == 0 {
			c.log.Warn("pkcs11 session lost; reconnecting", "error", err.Error())
			if rerr := c.reconnect(gen); rerr != nil {
				return rerr
			}
		}
	}
	return unavailable(err)
}

// run takes a session, runs op, and puts the session back.
func (c *Custodian) run(ctx context.Context, op func(sh pkcs11.SessionHandle) error) (uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0, fmt.Errorf("pkcs11: custodian is closed: %w", sdk.ErrUnavailable)
	}
	if c.broken != nil {
		// A failed reconnect left no sessions; report it as lost so do
		// tries again (the token may be back).
		return c.gen, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	var sh pkcs11.SessionHandle
	select {
	case sh = <-c.sessions:
	case <-ctx.Done():
		return c.gen, fmt.Errorf("pkcs11: wait for a session: %w: %w", sdk.ErrUnavailable, ctx.Err())
	}
	defer func() { c.sessions <- sh }()
	return c.gen, op(sh)
}

// reconnect replaces every session and re-finds every object, unless
// someone already did since generation gen failed.
func (c *Custodian) reconnect(gen uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("pkcs11: custodian is closed: %w", sdk.ErrUnavailable)
	}
	if c.gen != gen && c.broken == nil {
		return nil
	}
	c.disconnectLocked()
	err := c.connectLocked()
	if err == nil {
		if err = c.loadLocked(false); err != nil {
			c.disconnectLocked()
		}
	}
	if err != nil {
		c.broken = err
		return err
	}
	if c.broken != nil {
		c.log.Info("pkcs11 token back; keys found again")
	}
	c.broken = nil
	c.log.Info("pkcs11 reconnected", "keys", len(c.keys))
	return nil
}

// Info reports the custodian's name. It also checks that the sealing key
// and every key that may sign are still in the token, so a health probe
// (and /v1/ready) turns red when one is gone.
func (c *Custodian) Info(ctx context.Context) (custody.Info, error) {
	err := c.do(ctx, func(sh pkcs11.SessionHandle) error {
		if _, ok, err := c.findOne(sh, "sealing key", c.sealTmpl()); err != nil || !ok {
			return c.missing(err, "the sealing key "+c.label("seal"))
		}
		for _, k := range c.keys {
			if k.state == custody.StateRetired || k.publicOnly {
				continue
			}
			if _, ok, err := c.findOne(sh, "signing key", c.keyTmpl(pkcs11.CKO_PRIVATE_KEY, k.id)); err != nil || !ok {
				return c.missing(err, "signing key "+k.kid)
			}
		}
		return nil
	})
	if err != nil {
		return custody.Info{}, err
	}
	return custody.Info{Name: "pkcs11", Rotation: true}, nil
}

var _ custody.Rotator = (*Custodian)(nil)

// writable returns a session for a rotation step. Rotation holds c.mu
// exclusively, so no operation uses the first session meanwhile; a lost
// session fails the step (nothing was changed: the state object is
// written last, in one C_SetAttributeValue) and the next call reconnects.
func (c *Custodian) writable() (pkcs11.SessionHandle, error) {
	if c.closed {
		return 0, fmt.Errorf("pkcs11: custodian is closed: %w", sdk.ErrUnavailable)
	}
	if c.broken != nil {
		return 0, c.broken
	}
	return c.all[0], nil
}

// saveLocked writes keys' states as a new state object of the next
// generation and then destroys the old one. Creating an object is atomic;
// SoftHSM2 (like many modules) makes a data object's value read-only, so
// it cannot be updated in place.
func (c *Custodian) saveLocked(sh pkcs11.SessionHandle, keys []*key) error {
	doc := docOf(keys)
	doc.Gen = c.stateGen + 1
	raw, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("pkcs11: encode state: %w", sdk.ErrInternal)
	}
	state, err := c.lib.CreateObject(sh, append(c.stateTmpl(),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, raw)))
	if err != nil {
		return fmt.Errorf("pkcs11: write the state object: %w", unavailable(err))
	}
	if old := c.state; old != 0 {
		if err := c.lib.DestroyObject(sh, old); err != nil {
			// The newer generation wins at the next load.
			c.log.Warn("pkcs11: destroy the previous state object", "error", err.Error())
		}
	}
	c.state, c.stateGen, c.keys = state, doc.Gen, keys
	return nil
}

// CreateNextKey generates a new Ed25519 key pair in the token, in state
// next.
func (c *Custodian) CreateNextKey(ctx context.Context, at time.Time) (custody.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sh, err := c.writable()
	if err != nil {
		return custody.PublicKey{}, err
	}
	for _, k := range c.keys {
		if k.state == custody.StateNext {
			return custody.PublicKey{}, fmt.Errorf("pkcs11: create next key: %s is the next key already: %w", k.kid, sdk.ErrPrecondition)
		}
	}
	k, err := c.generateKey(sh, custody.StateNext, stamp(at))
	if err != nil {
		return custody.PublicKey{}, err
	}
	if err := c.saveLocked(sh, append(slices.Clone(c.keys), k)); err != nil {
		return custody.PublicKey{}, err
	}
	return custody.PublicKey{KID: k.kid, Alg: "EdDSA", Key: append(ed25519.PublicKey(nil), k.pub...), State: k.state, CreatedAt: k.created, StateSince: k.since}, nil
}

// transition changes key states in a copy and saves it.
func (c *Custodian) transition(kid string, at time.Time, op string, change func(keys []*key, i int, now time.Time) (bool, error)) (*key, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sh, err := c.writable()
	if err != nil {
		return nil, err
	}
	keys := make([]*key, len(c.keys))
	idx := -1
	for i, k := range c.keys {
		cp := *k
		keys[i] = &cp
		if k.kid == kid {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("pkcs11: %s key %q: %w", op, kid, sdk.ErrNotFound)
	}
	changed, err := change(keys, idx, stamp(at))
	if err != nil || !changed {
		return nil, err
	}
	if err := c.saveLocked(sh, keys); err != nil {
		return nil, err
	}
	c.log.Info("pkcs11 key state changed", "op", op, "kid", kid)
	return keys[idx], nil
}

var _ custody.KeyImporter = (*Custodian)(nil)

var _ custody.KeyHistory = (*Custodian)(nil)

// ImportRetiringKey stores another custodian's public key in the token as
// a verification-only key (a public key object, no private half) in state
// retiring, so tokens that custodian signed keep verifying until the
// rotation schedule retires it.
func (c *Custodian) ImportRetiringKey(ctx context.Context, pub custody.PublicKey, at time.Time) error {
	if len(pub.Key) != ed25519.PublicKeySize || pub.KID != custody.Thumbprint(pub.Key) {
		return fmt.Errorf("pkcs11: import key %q: not an Ed25519 public key with its thumbprint as kid: %w", pub.KID, sdk.ErrInvalidArgument)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sh, err := c.writable()
	if err != nil {
		return err
	}
	for _, k := range c.keys {
		if k.kid == pub.KID {
			return nil
		}
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("pkcs11: key id: %w", sdk.ErrInternal)
	}
	point := append([]byte{0x04, ed25519.PublicKeySize}, pub.Key...)
	if _, err := c.lib.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oidEd25519),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.label("sign")),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
	}); err != nil {
		return fmt.Errorf("pkcs11: import key %s: %w", pub.KID, unavailable(err))
	}
	created := pub.CreatedAt
	if created.IsZero() {
		created = stamp(at)
	}
	k := &key{id: id, pub: append(ed25519.PublicKey(nil), pub.Key...), kid: pub.KID, state: custody.StateRetiring,
		created: created.UTC(), since: stamp(at), publicOnly: true}
	if err := c.saveLocked(sh, append(slices.Clone(c.keys), k)); err != nil {
		return err
	}
	c.log.Info("pkcs11 imported a verification-only key as retiring", "kid", k.kid)
	return nil
}

// stamp is the time a state change is recorded at: the caller's, or now
// when it gave none; whole seconds, UTC.
func stamp(at time.Time) time.Time {
	if at.IsZero() {
		at = time.Now()
	}
	return at.UTC().Truncate(time.Second)
}

// ActivateKey makes the next key active and the active one retiring.
func (c *Custodian) ActivateKey(ctx context.Context, kid string, at time.Time) error {
	_, err := c.transition(kid, at, "activate", func(keys []*key, i int, now time.Time) (bool, error) {
		if keys[i].state != custody.StateNext {
			return false, fmt.Errorf("pkcs11: activate key %s: it is %s, not next: %w", kid, keys[i].state, sdk.ErrPrecondition)
		}
		for _, k := range keys {
			if k.state == custody.StateActive {
				k.state, k.since = custody.StateRetiring, now
			}
		}
		keys[i].state, keys[i].since = custody.StateActive, now
		return true, nil
	})
	return err
}

// RetireKey retires a retiring key and destroys its private half in the
// token: it can never sign again.
func (c *Custodian) RetireKey(ctx context.Context, kid string, at time.Time) error {
	k, err := c.transition(kid, at, "retire", func(keys []*key, i int, now time.Time) (bool, error) {
		switch keys[i].state {
		case custody.StateRetired:
			return false, nil
		case custody.StateRetiring:
		default:
			return false, fmt.Errorf("pkcs11: retire key %s: it is %s, not retiring: %w", kid, keys[i].state, sdk.ErrPrecondition)
		}
		keys[i].state, keys[i].since = custody.StateRetired, now
		return true, nil
	})
	if err != nil || k == nil || k.publicOnly {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if sh, err := c.writable(); err == nil {
		if err := c.lib.DestroyObject(sh, k.priv); err != nil {
			// The state says retired, so it never signs again; the
			// object is only clutter now.
			c.log.Warn("pkcs11: destroy the retired private key", "kid", kid, "error", err.Error())
		}
	}
	return nil
}

// missing turns a failed lookup into its error: the lookup's own (a lost
// session is retried by do), or a plain "gone" when it found nothing.
func (c *Custodian) missing(err error, what string) error {
	if err != nil {
		var e pkcs11.Error
		if errors.As(err, &e) {
			return e
		}
		return err
	}
	return c.gone(fmt.Errorf("pkcs11: %s is gone from token %s: %w", what, c.cfg.Token, sdk.ErrUnavailable))
}

// PublicKeys lists the keys that are not retired, from memory: they
// change only on rotation, which updates the list.
func (c *Custodian) PublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	return c.publicKeys(false)
}

// AllPublicKeys implements custody.KeyHistory: retired keys too, whose
// public objects stay in the token (only their private halves are
// destroyed), so audit checkpoints they signed still verify.
func (c *Custodian) AllPublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	return c.publicKeys(true)
}

func (c *Custodian) publicKeys(retired bool) ([]custody.PublicKey, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, fmt.Errorf("pkcs11: custodian is closed: %w", sdk.ErrUnavailable)
	}
	if c.broken != nil {
		return nil, c.broken
	}
	out := make([]custody.PublicKey, 0, len(c.keys))
	for _, k := range c.keys {
		if k.state == custody.StateRetired && !retired {
			continue
		}
		out = append(out, custody.PublicKey{KID: k.kid, Alg: "EdDSA", Key: append(ed25519.PublicKey(nil), k.pub...), State: k.state, CreatedAt: k.created, StateSince: k.since})
	}
	return out, nil
}

// signer returns the private key handle of kid.
func (c *Custodian) signer(kid string) (pkcs11.ObjectHandle, error) {
	for _, k := range c.keys {
		if k.kid == kid && k.state != custody.StateRetired && !k.publicOnly {
			return k.priv, nil
		}
	}
	return 0, fmt.Errorf("pkcs11: sign: no signing key %q: %w", kid, sdk.ErrNotFound)
}

// Sign signs msg with CKM_EDDSA (pure Ed25519) inside the token.
func (c *Custodian) Sign(ctx context.Context, kid string, msg []byte) ([]byte, error) {
	var sig []byte
	err := c.do(ctx, func(sh pkcs11.SessionHandle) error {
		priv, err := c.signer(kid)
		if err != nil {
			return err
		}
		if err := c.lib.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, priv); err != nil {
			return err
		}
		sig, err = c.lib.Sign(sh, msg)
		return err
	})
	if err != nil {
		return nil, c.opErr("sign", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("pkcs11: sign: the token returned a %d-byte signature: %w", len(sig), sdk.ErrInternal)
	}
	return sig, nil
}

// opErr gives a PKCS#11 return value that is not one of the sdk kinds a
// kind: the module refused or failed the operation, which the caller
// cannot fix by retrying with other input.
func (c *Custodian) opErr(op string, err error) error {
	if sdk.KindOf(err) != sdk.ErrInternal || errors.Is(err, sdk.ErrInternal) {
		return fmt.Errorf("pkcs11: %s: %w", op, err)
	}
	return fmt.Errorf("pkcs11: %s: %w: %w", op, sdk.ErrInternal, err)
}

// Encrypt seals plaintext with AES-256-GCM inside the token, under a
// fresh random nonce, authenticated together with aad.
func (c *Custodian) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pkcs11: encrypt: nonce: %w", sdk.ErrInternal)
	}
	var ct []byte
	err := c.do(ctx, func(sh pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(nonce, aad, tagBits)
		defer params.Free()
		if err := c.lib.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, c.seal); err != nil {
			return err
		}
		var err error
		ct, err = c.lib.Encrypt(sh, plaintext)
		return err
	})
	if err != nil {
		return nil, c.opErr("encrypt", err)
	}
	out := make([]byte, 0, 1+nonceSize+len(ct))
	out = append(out, sealVersion)
	out = append(out, nonce...)
	return append(out, ct...), nil
}

// Decrypt opens what Encrypt sealed. A blob that is malformed or fails
// authentication is sdk.ErrInvalidArgument.
func (c *Custodian) Decrypt(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+nonceSize+tagBits/8 || sealed[0] != sealVersion {
		return nil, fmt.Errorf("pkcs11: decrypt: malformed sealed value: %w", sdk.ErrInvalidArgument)
	}
	nonce, ct := sealed[1:1+nonceSize], sealed[1+nonceSize:]
	var pt []byte
	// A GCM tag that does not verify is CKR_ENCRYPTED_DATA_INVALID by the
	// standard; SoftHSM2 says CKR_GENERAL_ERROR. Only C_Decrypt's own
	// failure counts: the key and mechanism were accepted by DecryptInit,
	// and a lost session is told apart (and retried) first.
	var authFailed bool
	err := c.do(ctx, func(sh pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(nonce, aad, tagBits)
		defer params.Free()
		if err := c.lib.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, c.seal); err != nil {
			return err
		}
		var err error
		if pt, err = c.lib.Decrypt(sh, ct); err != nil && !lost(err) {
			authFailed = isRV(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR)
		}
		return err
	})
	if authFailed {
		return nil, fmt.Errorf("pkcs11: decrypt: sealed value fails authentication: %w", sdk.ErrInvalidArgument)
	}
	if err != nil {
		return nil, c.opErr("decrypt", err)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// Close closes the custodian's sessions. The module stays loaded and
// initialised for other custodians of the process.
func (c *Custodian) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.disconnectLocked()
	return nil
}
