package sdk

import "errors"

// Error kinds. Backends wrap one of these with %w and an operation prefix
// ("sqlite: get account 42: %w"); callers test with errors.Is. Each kind
// is translated exactly once per boundary: driver error to kind in the
// backend, kind to gRPC status in sdk/plugin, kind to HTTP status in
// api/rest.
var (
	// ErrNotFound: the addressed object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: an optimistic-concurrency version did not match, or a
	// uniqueness rule (username, jti, event id) would be broken. The
	// caller may re-read and retry.
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: the change is well formed but a guard attached to
	// it does not hold (for example it would leave no active admin).
	// Retrying the same change will not help.
	ErrPrecondition = errors.New("precondition failed")
	// ErrInvalidArgument: the request itself is malformed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnavailable: the backend cannot serve the call now (database
	// down, plugin crashed, HSM session lost). Nothing was changed.
	ErrUnavailable = errors.New("unavailable")
	// ErrNotImplemented: the backend does not offer this optional
	// capability.
	ErrNotImplemented = errors.New("not implemented")
	// ErrInternal: a bug or an unexpected state; details go to the log,
	// never to a client.
	ErrInternal = errors.New("internal error")
)

// Kinds lists every error kind, in the order a translator should test
// them.
var Kinds = []error{
	ErrNotFound, ErrConflict, ErrPrecondition, ErrInvalidArgument,
	ErrUnavailable, ErrNotImplemented, ErrInternal,
}

// KindOf returns the kind err wraps, or ErrInternal when it wraps none.
// A nil error has no kind and yields nil.
func KindOf(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range Kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return ErrInternal
}
