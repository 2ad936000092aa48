package rest

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/api/frontend"
)

// classify finds the row for err and the sentence to show; the table is
// shared with the gRPC frontend (api/frontend).
func classify(err error) (frontend.ErrorRow, string) { return frontend.Classify(err) }

// errorBody is the JSON body of every non-2xx response.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// fail aborts the request with the response err maps to. 5xx details
// go to the log only.
func fail(c *gin.Context, err error) {
	row, msg := classify(err)
	if row.HTTP >= 500 {
		_ = c.Error(err) // picked up by the access log, never sent
	}
	abortJSON(c, row.HTTP, row.Code, msg)
}

// abortJSON aborts with a contract error body.
func abortJSON(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, errorBody{Error: msg, Code: code})
}

// badRequest aborts with 400 invalid_request and a client-safe sentence.
func badRequest(c *gin.Context, msg string) {
	abortJSON(c, http.StatusBadRequest, "invalid_request", msg)
}
