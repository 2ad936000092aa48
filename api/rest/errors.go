package rest

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
)

// errorRow is how one error kind is shown to a client.
type errorRow struct {
	kind   error
	status int
	code   string
	msg    string // used when the error carries no client-safe message
}

// errorTable is the one place where error kinds become HTTP statuses and
// codes. Order matters: the first kind the error wraps wins.
var errorTable = []errorRow{
	{core.ErrInvalidCredentials, http.StatusUnauthorized, "invalid_credentials", "invalid username, password or TOTP code"},
	{core.ErrTOTPRequired, http.StatusUnauthorized, "totp_required", "a TOTP code is required for this account"},
	{core.ErrUnauthorized, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required"},
	{core.ErrForbidden, http.StatusForbidden, "forbidden", "this action needs the admin role"},
	{sdk.ErrInvalidArgument, http.StatusBadRequest, "invalid_request", "the request is not valid"},
	{sdk.ErrNotFound, http.StatusNotFound, "not_found", "no such object"},
	{sdk.ErrConflict, http.StatusConflict, "conflict", "the request conflicts with the current state; retry"},
	{sdk.ErrPrecondition, http.StatusConflict, "conflict", "the request conflicts with the current state"},
	{sdk.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "a backend is unavailable; retry later"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable", "a backend did not answer in time; retry later"},
	{context.Canceled, http.StatusServiceUnavailable, "unavailable", "the request was canceled"},
	{sdk.ErrNotImplemented, http.StatusNotImplemented, "not_implemented", "the configured backend does not support this"},
}

var internalRow = errorRow{nil, http.StatusInternalServerError, "internal", "internal error"}

// classify finds the row for err and the sentence to show.
func classify(err error) (errorRow, string) {
	row := internalRow
	for _, r := range errorTable {
		if errors.Is(err, r.kind) {
			row = r
			break
		}
	}
	msg := row.msg
	var ce *core.Error
	if row.status < 500 && errors.As(err, &ce) && ce.Msg != "" {
		msg = ce.Msg
	}
	return row, msg
}

// errorBody is the JSON body of every non-2xx response.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// fail aborts the request with the response err maps to. 5xx details
// go to the log only.
func fail(c *gin.Context, err error) {
	row, msg := classify(err)
	if row.status >= 500 {
		_ = c.Error(err) // picked up by the access log, never sent
	}
	abortJSON(c, row.status, row.code, msg)
}

// abortJSON aborts with a contract error body.
func abortJSON(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, errorBody{Error: msg, Code: code})
}

// badRequest aborts with 400 invalid_request and a client-safe sentence.
func badRequest(c *gin.Context, msg string) {
	abortJSON(c, http.StatusBadRequest, "invalid_request", msg)
}
