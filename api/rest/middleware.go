package rest

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/api/frontend"
	"github.com/metacircular/mcias/core"
)

const (
	headerRequestID = "X-Request-ID"
	ctxRequestID    = "mcias.request_id"
	ctxPrincipal    = "mcias.principal"
)

// requestID takes a well-formed X-Request-ID from the client or makes
// one, and echoes it in the response.
func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := frontend.RequestID(c.GetHeader(headerRequestID))
		c.Set(ctxRequestID, id)
		c.Header(headerRequestID, id)
		c.Next()
	}
}

// accessLog writes one line per request: the route template (never the
// raw path or query), status, duration, client IP and request ID. Bodies
// and headers are never logged, so no password, token, code or secret
// can reach the log.
func accessLog(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "(no route)"
		}
		attrs := []any{
			"method", c.Request.Method,
			"route", route,
			"status", c.Writer.Status(),
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
			"ip", c.ClientIP(),
			"request_id", c.GetString(ctxRequestID),
		}
		level := slog.LevelInfo
		if c.Writer.Status() >= 500 {
			level = slog.LevelError
			if len(c.Errors) > 0 {
				attrs = append(attrs, "error", c.Errors.Last().Err.Error())
			}
		}
		logger.Log(c.Request.Context(), level, "request", attrs...)
	}
}

// recoverJSON turns a panic into a 500 with the contract body; the panic
// value goes to the log only.
func recoverJSON(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logger.Error("panic in handler", "route", c.FullPath(),
					"request_id", c.GetString(ctxRequestID), "panic", fmt.Sprint(v))
				abortJSON(c, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		c.Next()
	}
}

// limitBody caps every request body.
func limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			abortJSON(c, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("request body exceeds %d bytes", n))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}

// securityHeaders sets headers every JSON API response should carry.
func securityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		c.Next()
	}
}

// bearerAuth requires a valid bearer token and stores its principal.
func (s *Server) bearerAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		tok, ok := bearerToken(c.GetHeader("Authorization"))
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="mcias"`)
			abortJSON(c, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		p, err := s.svc.Authenticate(c.Request.Context(), tok)
		if err != nil {
			c.Header("WWW-Authenticate", `Bearer realm="mcias", error="invalid_token"`)
			fail(c, err)
			return
		}
		c.Set(ctxPrincipal, p)
		c.Next()
	}
}

// requireAdmin rejects callers without the admin role before any handler
// runs; core checks again (defence in depth).
func requireAdmin() gin.HandlerFunc {
	return func(c *gin.Context) {
		p, _ := c.Get(ctxPrincipal)
		if pr, ok := p.(*core.Principal); !ok || !pr.IsAdmin() {
			abortJSON(c, http.StatusForbidden, "forbidden", "this action needs the admin role")
			return
		}
		c.Next()
	}
}

func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// caller builds the core.Caller of the request.
func caller(c *gin.Context) core.Caller {
	cl := core.Caller{
		IP:        c.ClientIP(),
		RequestID: c.GetString(ctxRequestID),
	}
	if p, ok := c.Get(ctxPrincipal); ok {
		cl.Principal, _ = p.(*core.Principal)
	}
	return cl
}
