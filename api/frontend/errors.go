package frontend

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
)

// ErrorRow is how one error kind is shown to a client, on either
// transport.
type ErrorRow struct {
	Kind error
	HTTP int        // REST status
	GRPC codes.Code // gRPC status code
	Code string     // contract code: the REST "code", the gRPC ErrorInfo reason
	Msg  string     // used when the error carries no client-safe message
}

// errorTable is the one place where error kinds become statuses and
// codes. Order matters: the first kind the error wraps wins.
var errorTable = []ErrorRow{
	{core.ErrInvalidCredentials, http.StatusUnauthorized, codes.Unauthenticated, "invalid_credentials", "invalid username, password or TOTP code"},
	{core.ErrTOTPRequired, http.StatusUnauthorized, codes.Unauthenticated, "totp_required", "a TOTP code is required for this account"},
	{core.ErrUnauthorized, http.StatusUnauthorized, codes.Unauthenticated, "unauthorized", "a valid bearer token is required"},
	{core.ErrForbidden, http.StatusForbidden, codes.PermissionDenied, "forbidden", "this action needs the admin role"},
	{sdk.ErrInvalidArgument, http.StatusBadRequest, codes.InvalidArgument, "invalid_request", "the request is not valid"},
	{sdk.ErrNotFound, http.StatusNotFound, codes.NotFound, "not_found", "no such object"},
	// A lost optimistic-concurrency race: retrying may succeed (Aborted);
	// a precondition that does not hold will not change by retrying.
	{sdk.ErrConflict, http.StatusConflict, codes.Aborted, "conflict", "the request conflicts with the current state; retry"},
	{sdk.ErrPrecondition, http.StatusConflict, codes.FailedPrecondition, "conflict", "the request conflicts with the current state"},
	{sdk.ErrUnavailable, http.StatusServiceUnavailable, codes.Unavailable, "unavailable", "a backend is unavailable; retry later"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, codes.DeadlineExceeded, "unavailable", "a backend did not answer in time; retry later"},
	{context.Canceled, http.StatusServiceUnavailable, codes.Canceled, "unavailable", "the request was canceled"},
	{sdk.ErrNotImplemented, http.StatusNotImplemented, codes.Unimplemented, "not_implemented", "the configured backend does not support this"},
}

// Rows the frontends produce themselves, without an error from core.
var (
	InternalRow    = ErrorRow{nil, http.StatusInternalServerError, codes.Internal, "internal", "internal error"}
	RateLimitedRow = ErrorRow{nil, http.StatusTooManyRequests, codes.ResourceExhausted, "rate_limited", "too many attempts from this address; retry later"}
	// LimiterUnavailableRow: the shared login limiter could not answer, so
	// the attempt is refused rather than let through unlimited.
	LimiterUnavailableRow = ErrorRow{sdk.ErrUnavailable, http.StatusServiceUnavailable, codes.Unavailable, "unavailable", "the login limiter is unavailable; retry later"}
	BadRequestRow         = ErrorRow{sdk.ErrInvalidArgument, http.StatusBadRequest, codes.InvalidArgument, "invalid_request", "the request is not valid"}
	ForbiddenRow          = ErrorRow{core.ErrForbidden, http.StatusForbidden, codes.PermissionDenied, "forbidden", "this action needs the admin role"}
	UnauthRow             = ErrorRow{core.ErrUnauthorized, http.StatusUnauthorized, codes.Unauthenticated, "unauthorized", "a valid bearer token is required"}
)

// Classify finds the row for err and the sentence to show: the client-
// safe message of a *core.Error below 500, else the row's own. Anything
// unknown is internal, and its text is never shown.
func Classify(err error) (ErrorRow, string) {
	row := InternalRow
	for _, r := range errorTable {
		if errors.Is(err, r.Kind) {
			row = r
			break
		}
	}
	msg := row.Msg
	var ce *core.Error
	if row.HTTP < 500 && errors.As(err, &ce) && ce.Msg != "" {
		msg = ce.Msg
	}
	return row, msg
}
