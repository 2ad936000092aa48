package storage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// AccountType distinguishes people from services.
type AccountType string

const (
	Human  AccountType = "human"
	System AccountType = "system"
)

// AccountStatus is an account's life state. A deleted account keeps its
// row for audit history, never logs in again, and frees its username.
type AccountStatus string

const (
	Active   AccountStatus = "active"
	Inactive AccountStatus = "inactive"
	Deleted  AccountStatus = "deleted"
)

// Account is an account with its roles and authentication state.
type Account struct {
	ID       string // UUID v4, immutable, never reused
	Username string // canonical form, chosen by the core
	// Skeleton is the look-alike key of Username (computed by the core).
	// Among accounts that are not deleted, Username and Skeleton are each
	// unique; a clash yields sdk.ErrConflict.
	Skeleton     string
	Type         AccountType
	Status       AccountStatus
	PasswordHash string   // PHC string; empty when the account has no password
	Roles        []string // sorted, unique
	// TOTPSecret is the TOTP secret sealed by custody; nil when none.
	TOTPSecret []byte
	// TOTPEnabled is true once enrollment is confirmed.
	TOTPEnabled bool
	// TOTPLastStep is the last RFC 6238 time step accepted; a code is
	// accepted only for a later step.
	TOTPLastStep int64
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Version increases by one on every update; set to 1 on create.
	Version int64
}

// AccountFilter selects accounts for ListAccounts. Zero fields do not
// filter.
type AccountFilter struct {
	Type   AccountType
	Status AccountStatus
	// Role selects accounts that hold this role.
	Role string
	// IncludeDeleted: deleted accounts are left out unless Status is
	// Deleted or this is set.
	IncludeDeleted bool
	// Limit bounds the page; 0 means the backend's default (100).
	Limit int
	// Cursor is the Next of the previous page; empty for the first.
	Cursor string
}

// UpdateOptions are guards and side effects applied in the same
// transaction as an account update.
type UpdateOptions struct {
	// KeepActiveAdmin: fail with sdk.ErrPrecondition unless, after the
	// update, at least one active account holds the role "admin".
	KeepActiveAdmin bool
	// RevokeTokens: revoke every unexpired token of the account, as of
	// the update's UpdatedAt, except the one named by KeepJTI.
	RevokeTokens bool
	// KeepJTI spares one token from RevokeTokens (the caller's own token
	// when it changes its own password).
	KeepJTI string
	// RevokeReason is recorded on the tokens RevokeTokens revokes.
	RevokeReason string
}

// AccountStore holds accounts.
type AccountStore interface {
	// CreateAccount stores a new account (Version must be 1) with ev.
	// sdk.ErrConflict when the ID exists or the Username or Skeleton is
	// held by an account that is not deleted.
	CreateAccount(ctx context.Context, a Account, ev audit.Event) error
	// GetAccount returns an account by ID, deleted ones included.
	// sdk.ErrNotFound when none.
	GetAccount(ctx context.Context, id string) (Account, error)
	// GetAccountByUsername returns the account that is not deleted with
	// this canonical username. sdk.ErrNotFound when none.
	GetAccountByUsername(ctx context.Context, username string) (Account, error)
	// ListAccounts returns a page of accounts ordered by creation time
	// then ID, and the cursor of the next page ("" at the end).
	ListAccounts(ctx context.Context, f AccountFilter) (accounts []Account, next string, err error)
	// UpdateAccount replaces the mutable fields (Username, Skeleton,
	// Status, PasswordHash, Roles, TOTP fields, UpdatedAt) of the account
	// whose ID and Version match a, stores ev, and applies opts, all
	// atomically; an update to Status Deleted also removes the account's
	// Postgres credential. It returns the stored account with Version+1.
	// sdk.ErrNotFound when no such ID, sdk.ErrConflict when the version
	// moved on or a uniqueness rule breaks, sdk.ErrPrecondition when a
	// guard fails. Nothing changes on error.
	UpdateAccount(ctx context.Context, a Account, opts UpdateOptions, ev audit.Event) (Account, error)
	// CountAccounts returns how many accounts exist, deleted ones
	// included (zero means a fresh database).
	CountAccounts(ctx context.Context) (int, error)
}

// TokenKind tells session tokens from service tokens.
type TokenKind string

const (
	Session TokenKind = "session"
	Service TokenKind = "service"
)

// Token is the record of an issued token (never the token itself).
type Token struct {
	JTI       string
	AccountID string
	Kind      TokenKind
	Audience  string
	KID       string // key that signed it
	IssuedAt  time.Time
	ExpiresAt time.Time
	// RevokedAt is zero while the token is not revoked.
	RevokedAt time.Time
	// RevokeReason is a short reason code ("logout", "renew", "admin",
	// "password_change", "account_disabled", "account_deleted").
	RevokeReason string
}

// TokenFilter selects tokens for ListTokens. Zero fields do not filter.
type TokenFilter struct {
	AccountID string
	// RevokedOnly selects revoked tokens.
	RevokedOnly bool
	// ExpiresAfter selects tokens that expire after this instant.
	ExpiresAfter time.Time
	// RevokedAfter selects tokens revoked after this instant (a change
	// feed for revocation caches).
	RevokedAfter time.Time
	// KID selects tokens signed by this key id (emergency rotation finds
	// the tokens of a compromised key).
	KID   string
	Limit int // 0 means no limit
}

// TokenStore holds issued-token records and revocation.
type TokenStore interface {
	// CreateToken records an issued token with ev. When replaces is not
	// empty, that token is revoked (reason "renew") in the same
	// transaction; it must exist, belong to the same account and not be
	// revoked, else sdk.ErrConflict (or sdk.ErrNotFound) and nothing
	// changes. sdk.ErrConflict when the JTI exists, sdk.ErrNotFound when
	// the account does not.
	CreateToken(ctx context.Context, t Token, replaces string, ev audit.Event) error
	// GetToken returns a token record. sdk.ErrNotFound when none.
	GetToken(ctx context.Context, jti string) (Token, error)
	// RevokeToken marks a token revoked at the given time with reason,
	// and stores ev. Revoking a revoked token keeps the first revocation
	// and still stores ev. sdk.ErrNotFound when no such token.
	RevokeToken(ctx context.Context, jti string, at time.Time, reason string, ev audit.Event) error
	// ListTokens returns tokens matching f, ordered by issue time.
	ListTokens(ctx context.Context, f TokenFilter) ([]Token, error)
	// PruneTokens deletes records of tokens that expired before the
	// given instant; it returns how many. Housekeeping, not audited.
	PruneTokens(ctx context.Context, before time.Time) (int, error)
}

// PGCreds is a Postgres credential kept for an account.
type PGCreds struct {
	AccountID string
	Host      string
	Port      int
	Database  string
	Username  string
	// Password is sealed by custody; storage never sees it in clear.
	Password  []byte
	UpdatedAt time.Time
	// Version: 0 on PutPGCreds means "create"; otherwise the version read.
	Version int64
}

// CredentialStore holds Postgres credentials.
type CredentialStore interface {
	// GetPGCreds returns the credential of an account. sdk.ErrNotFound
	// when none.
	GetPGCreds(ctx context.Context, accountID string) (PGCreds, error)
	// PutPGCreds creates (Version 0) or replaces (Version matching) the
	// credential and stores ev, atomically, returning it with its new
	// Version. sdk.ErrConflict when the version does not match (or the
	// credential exists and Version is 0); sdk.ErrNotFound when the
	// account does not exist.
	PutPGCreds(ctx context.Context, c PGCreds, ev audit.Event) (PGCreds, error)
}

// EventFilter selects audit events for ListEvents. Zero fields do not
// filter.
type EventFilter struct {
	Type      audit.Type
	AccountID string // matches ActorID or AccountID
	Since     time.Time
	// BeforeSeq: only events with Seq < BeforeSeq (the paging cursor).
	BeforeSeq int64
	// Limit bounds the page; 0 means the backend's default (100).
	Limit int
}

// MaxNameLen bounds a sink name of SinkCursor and SetSinkCursor, and a
// lease name or holder of Leaser (bytes).
const MaxNameLen = 200

// CheckName is the rule for sink names, lease names and lease holders
// that every backend applies: not empty and at most MaxNameLen bytes;
// otherwise an error wrapping sdk.ErrInvalidArgument that names what.
func CheckName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s", sdk.ErrInvalidArgument, what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s longer than %d bytes", sdk.ErrInvalidArgument, what, MaxNameLen)
	}
	return nil
}

// AuditStore holds the audit log.
//
// The log is a hash chain: whenever a write stores an event (AppendEvent
// and every write that takes an audit.Event), the store, inside that
// write's transaction, assigns the event the next Seq, sets PrevHash to
// the Hash of the event with the next lower Seq (audit.GenesisHash for
// the first) and Hash to audit.ChainHash(PrevHash, event) computed over
// the event as stored (its Seq, and its Time at the microsecond precision
// every backend keeps), and stores both. Writes that store events are
// serialised, so the chain is linear and Seq increases in commit order
// with no gap; a write that fails stores no event.
type AuditStore interface {
	// AppendEvent stores an event that records no state change (a failed
	// login, a read of a credential). sdk.ErrConflict when its ID exists.
	AppendEvent(ctx context.Context, ev audit.Event) error
	// ListEvents returns events matching f, newest (highest Seq) first.
	ListEvents(ctx context.Context, f EventFilter) ([]audit.Event, error)
	// ReadEvents returns up to limit (0 means 100) events with
	// Seq > afterSeq, oldest first: the feed that delivery to sinks
	// follows.
	ReadEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error)
	// SinkCursor returns the Seq of the last event delivered to the sink
	// named sink (0 when none yet).
	SinkCursor(ctx context.Context, sink string) (int64, error)
	// SetSinkCursor records that the sink has every event up to seq. A
	// cursor never moves backwards: a seq lower than the stored one is
	// ignored, not an error. Both cursor methods fail with
	// sdk.ErrInvalidArgument for an empty sink name or one longer than
	// MaxNameLen, and SetSinkCursor for a negative seq.
	SetSinkCursor(ctx context.Context, sink string, seq int64) error
}

// Info describes a store.
type Info struct {
	Name string
	// SchemaVersion is the highest migration applied.
	SchemaVersion int
}

// Store is the whole storage backend. Implementations must be safe for
// concurrent use.
type Store interface {
	Accounts() AccountStore
	Tokens() TokenStore
	Credentials() CredentialStore
	Audit() AuditStore
	// Info reports the backend's name and schema version.
	Info(ctx context.Context) (Info, error)
	// Ping checks that the backend can serve calls now;
	// sdk.ErrUnavailable when it cannot.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close(ctx context.Context) error
}

// Change is one notification of a ChangeFeed.
type Change struct {
	// AccountID names the account whose record or tokens changed. Empty
	// means "something may have changed that was not seen" (the feed was
	// just established or re-established, or notifications were
	// coalesced): the receiver re-reads everything it follows.
	AccountID string
}

// ChangeFeed is an optional capability of a store that several processes
// share (several server nodes on one database): it tells this process,
// soon after another one commits, that an account was updated or a token
// revoked, so caches kept in memory follow without polling. It carries
// hints, not data: the receiver re-reads what changed (ListTokens with
// RevokedAfter, GetAccount), so a lost or duplicated notification costs a
// read, never correctness.
type ChangeFeed interface {
	// WatchChanges starts a watch and returns its channel. The first value
	// is an empty Change once the watch is established; after the watch is
	// lost and re-established (the database restarted) another empty
	// Change follows. The channel is closed when ctx ends, the store
	// closes, or the watch cannot go on (a plugin process died); the
	// receiver may then watch again. sdk.ErrNotImplemented when the store
	// cannot watch (a plugin whose backend has no feed).
	WatchChanges(ctx context.Context) (<-chan Change, error)
}

// LoginLimiter is an optional capability of a store that several processes
// share: it keeps the per-client token buckets that limit password
// attempts in the database, so several server nodes on one database allow
// a client the configured rate once, not once per node.
type LoginLimiter interface {
	// TakeLoginAttempt takes one token from the bucket named key, which
	// holds at most burst tokens and refills at ratePerMinute, as of now.
	// It is atomic: however many processes take from one key at once, no
	// more tokens are granted than the bucket holds. A bucket not seen
	// before starts full. When no token is left it reports allowed false
	// and retryAfter, how long until one is; a refused take uses nothing.
	// The clock is the caller's (now), and time never runs backwards for a
	// bucket: a take with an earlier now than the last one refills nothing.
	// A bucket left alone until it is full again may be forgotten (that
	// forgets nothing). Errors: sdk.ErrInvalidArgument for an empty key, a
	// rate not above zero or a burst below one; sdk.ErrUnavailable when the
	// store cannot answer; sdk.ErrNotImplemented when the store has no
	// shared buckets (a plugin whose backend lacks them).
	TakeLoginAttempt(ctx context.Context, key string, ratePerMinute float64, burst int, now time.Time) (allowed bool, retryAfter time.Duration, err error)
}

// Leaser is an optional capability of a store that several processes
// share: named leases with a time to live, so that exactly one of several
// server nodes does a job (rotates keys, delivers to one sink, writes
// checkpoints) and another takes over when it stops renewing.
type Leaser interface {
	// AcquireLease takes the lease named name for holder for ttl when it
	// is free or expired, or renews it (for ttl from now) when holder
	// already holds it; it reports true then. It reports false, with a
	// nil error, when another holder's lease has not expired. It is
	// atomic across every process on the store, and expiry follows the
	// store's clock (the database's where there is one), so clock skew
	// between nodes does not matter. sdk.ErrInvalidArgument for an empty
	// or overlong (MaxNameLen) name or holder, or a ttl not above
	// zero; sdk.ErrNotImplemented when the store has no leases (a plugin
	// whose backend lacks them).
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease frees the lease when holder holds it; otherwise
	// (another holder's lease, or none) it does nothing.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Factory opens a store from its URI (for example
// "sqlite:///var/lib/mcias/mcias.db"), applying pending migrations.
type Factory func(ctx context.Context, uri string, logger *slog.Logger) (Store, error)
