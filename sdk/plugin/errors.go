package plugin

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metacircular/mcias/sdk"
)

// kindCodes is the one table between sdk error kinds and gRPC codes, used
// in both directions. Each kind has its own code, so the kind survives the
// wire; the status message carries the backend's error text.
var kindCodes = []struct {
	kind error
	code codes.Code
}{
	{sdk.ErrNotFound, codes.NotFound},
	{sdk.ErrConflict, codes.Aborted},
	{sdk.ErrPrecondition, codes.FailedPrecondition},
	{sdk.ErrInvalidArgument, codes.InvalidArgument},
	{sdk.ErrUnavailable, codes.Unavailable},
	{sdk.ErrNotImplemented, codes.Unimplemented},
	{sdk.ErrInternal, codes.Internal},
}

// toStatus turns a backend error into the gRPC status the server shim
// returns. A context error keeps its own code (the caller gave up; the
// backend did not fail); anything else is coded by its sdk kind, and an
// error wrapping no kind is Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	default:
		kind := sdk.KindOf(err)
		for _, kc := range kindCodes {
			if kc.kind == kind {
				code = kc.code
				break
			}
		}
	}
	return status.Error(code, err.Error())
}

// wireError is an error that came back over the wire: the backend's
// message, and the kinds errors.Is must match.
type wireError struct {
	msg   string
	kinds []error
}

func (e *wireError) Error() string   { return e.msg }
func (e *wireError) Unwrap() []error { return e.kinds }

// fromStatus turns what a gRPC call returned into an sdk error, on the
// client shim side. op names the call ("storage plugin: get account").
//
//   - a status whose code is in kindCodes yields that kind, with the
//     backend's message;
//   - DeadlineExceeded and Canceled yield the context error AND
//     sdk.ErrUnavailable: the REST layer answers 503 and the caller can
//     still tell its own deadline from a backend failure;
//   - anything else (Unknown, a transport error that is not a status)
//     means the plugin could not be reached or misbehaved: ErrUnavailable.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &wireError{msg: op + ": " + err.Error(), kinds: []error{sdk.ErrUnavailable}}
	}
	msg := st.Message()
	switch st.Code() {
	case codes.DeadlineExceeded:
		return &wireError{msg: op + ": " + msg, kinds: []error{context.DeadlineExceeded, sdk.ErrUnavailable}}
	case codes.Canceled:
		return &wireError{msg: op + ": " + msg, kinds: []error{context.Canceled, sdk.ErrUnavailable}}
	}
	for _, kc := range kindCodes {
		if kc.code == st.Code() {
			// The backend's message already names its kind and operation.
			if kc.code == codes.Unavailable || kc.code == codes.Unimplemented {
				// These two codes also come from gRPC itself (transport
				// down, method unknown to an older plugin); keep op so the
				// log says which call failed.
				msg = op + ": " + msg
			}
			return &wireError{msg: msg, kinds: []error{kc.kind}}
		}
	}
	return &wireError{msg: op + ": " + st.Code().String() + ": " + msg, kinds: []error{sdk.ErrUnavailable}}
}
