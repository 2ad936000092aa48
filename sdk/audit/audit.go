// Package audit defines the MCIAS audit event and the Sink contract: a
// destination that audit events are forwarded to after storage has
// recorded them.
//
// Storage is the system of record: every event is written through
// storage.Store in the same transaction as the change it records. Sinks
// receive copies afterwards, at least once, in storage order; an event's
// ID is stable so a sink can drop duplicates.
package audit

import (
	"context"
	"log/slog"
	"time"
)

// Type names a kind of audited act.
type Type string

// The audited acts of CONTRACT.md.
const (
	LoginSuccess   Type = "login_success"
	LoginFailure   Type = "login_failure"
	Logout         Type = "logout"
	TokenRenew     Type = "token_renew"
	TokenIssue     Type = "token_issue"
	TokenRevoke    Type = "token_revoke"
	AccountCreate  Type = "account_create"
	AccountUpdate  Type = "account_update"
	AccountDelete  Type = "account_delete"
	PasswordChange Type = "password_change"
	RoleChange     Type = "role_change"
	TOTPEnroll     Type = "totp_enroll"
	TOTPConfirm    Type = "totp_confirm"
	TOTPRemove     Type = "totp_remove"
	PGCredsRead    Type = "pgcreds_read"
	PGCredsWrite   Type = "pgcreds_write"
	KeyRotation    Type = "key_rotation"
	PluginStart    Type = "plugin_start"
	PluginCrash    Type = "plugin_crash"
	// Checkpoint records a signed statement of the chain head; see
	// CheckpointMessage.
	Checkpoint Type = "audit_checkpoint"
)

// Outcome of an audited act.
type Outcome string

const (
	Success Outcome = "success"
	Failure Outcome = "failure"
)

// Event is one audited act. It never carries a secret value: no
// password, hash, token, TOTP code or secret, no key material.
type Event struct {
	// ID is a UUID chosen by the producer; stable across redelivery.
	ID string
	// Seq is assigned by storage when the event is stored: strictly
	// increasing in commit order. Zero before storage assigned it.
	Seq       int64
	Time      time.Time
	Type      Type
	ActorID   string // account that acted; empty for anonymous acts
	AccountID string // account acted upon; empty when none
	IP        string
	RequestID string
	Outcome   Outcome
	// Details holds non-secret context (reason codes, changed fields,
	// jti, role lists).
	Details map[string]string
	// PrevHash and Hash link the event into the tamper-evident chain:
	// Hash = ChainHash(PrevHash, event) and PrevHash is the Hash of the
	// event with the next lower Seq (GenesisHash for the first). Storage
	// sets both when it stores the event, in the same transaction; they
	// are nil before.
	PrevHash []byte
	Hash     []byte
}

// Info describes a sink.
type Info struct {
	Name string
}

// Sink receives audit events.
type Sink interface {
	// Info reports the sink's name.
	Info(ctx context.Context) (Info, error)
	// Deliver hands events to the sink in storage order. It returns nil
	// only once every event is durably accepted; on error the caller
	// delivers the same batch again, so a sink must tolerate duplicates
	// (use Event.ID). ErrUnavailable marks a transient failure.
	Deliver(ctx context.Context, events []Event) error
	// Close releases the sink. Deliver must not be called afterwards.
	Close(ctx context.Context) error
}

// Factory opens a sink from its URI (for example
// "file:///var/log/mcias/audit.jsonl").
type Factory func(ctx context.Context, uri string, logger *slog.Logger) (Sink, error)

// Reopener is an optional capability of a sink that writes to a named
// file (or a similar handle an operator rotates): Reopen closes it and
// opens it by name again, so events go to a fresh file after log
// rotation renamed the old one. It must not lose or split an event: a
// batch is wholly in the old file or wholly in the new. mciassrv calls
// Reopen on every sink that has it when it receives SIGHUP; a sink never
// installs signal handlers itself.
type Reopener interface {
	Reopen(ctx context.Context) error
}
