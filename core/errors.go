package core

import (
	"errors"

	"github.com/metacircular/mcias/sdk"
)

// Kinds the core adds to those of sdk. Frontends map each to a status in
// one table.
var (
	// ErrInvalidCredentials: unknown user, wrong password, wrong TOTP
	// code or inactive account; deliberately indistinguishable.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrTOTPRequired: the password was right and the account needs a
	// TOTP code that was not given.
	ErrTOTPRequired = errors.New("totp required")
	// ErrUnauthorized: no valid bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the caller lacks the role the act needs.
	ErrForbidden = errors.New("forbidden")
)

// Error carries a message that is safe to show to a client, and the kind
// (a core or sdk error) that decides its status.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// newError returns a client-safe error of the given kind.
func newError(kind error, msg string) error { return &Error{Kind: kind, Msg: msg} }

// invalid returns a client-safe sdk.ErrInvalidArgument.
func invalid(msg string) error { return newError(sdk.ErrInvalidArgument, msg) }
