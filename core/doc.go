// Package core holds the MCIAS domain services: accounts and their roles,
// login with password and TOTP, token issue, validation and revocation,
// Postgres credentials, and the audit pipeline. Frontends (REST, gRPC) call
// a *Service; backends reach it only through the sdk interfaces
// (storage.Store, custody.Custodian, audit.Sink), so this package never
// imports a backend, Gin or gRPC.
//
// The hot path (Validate, Authenticate) is served from memory: signing
// keys, the state of every live token (revoked or not) and a snapshot of
// every account seen are cached, and every write this process makes
// updates them. A background loop refreshes keys and follows the storage
// revocation feed so that changes made by another process are seen within
// a minute.
//
// Audit events are stored with the change they record; each sink gets
// copies from its own worker, at least once and in order, from a cursor
// kept in storage (delivery.go), and the chain head is signed
// periodically (checkpoint.go). Jobs that one node of several must do
// (delivery to a sink, checkpoints, scheduled rotation) run under storage
// leases (lease.go).
//
// Errors a client may read are *Error values (see errors.go); anything
// else keeps its sdk kind and gets a generic message from the frontend.
package core
