// Package storage defines the MCIAS storage contract: accounts with their
// roles and TOTP state, issued tokens and their revocation, Postgres
// credentials, and the audit log.
//
// The contract is written to cross a process boundary: every method takes
// ctx first and plain Go values, never a transaction or a closure. Every
// method that changes state takes the audit.Event that records the change
// and stores both atomically: either the change and its event are both
// committed, or neither is. Concurrency is optimistic: mutable records carry
// a Version, an update names the version it read, and a mismatch yields
// sdk.ErrConflict; the one retry loop lives in the core.
//
// Storage assigns each stored event a Seq, strictly increasing in commit
// order, and links it into the audit hash chain (PrevHash, Hash; see
// AuditStore). Optional capabilities (ChangeFeed, LoginLimiter, Leaser)
// are further interfaces a Store may implement; callers test for them
// with a type assertion.
package storage
