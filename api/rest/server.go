package rest

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/api/frontend"
	"github.com/metacircular/mcias/core"
)

// Config tunes the transport.
type Config struct {
	// TrustedProxies are the CIDRs or IPs whose X-Forwarded-For is
	// believed. Empty: the TCP peer is the client, always.
	TrustedProxies []string
	// MaxBodyBytes caps request bodies; 0 means 64 KiB.
	MaxBodyBytes int64
	// LoginPerMinute and LoginBurst shape the per-IP limit on routes that
	// check a password; 0 means 30 per minute, burst 10.
	LoginPerMinute float64
	LoginBurst     int
	// Limiter, when set, is used instead of one built from
	// LoginPerMinute and LoginBurst: mciassrv shares one with the gRPC
	// frontend so both transports draw on the same per-IP budget.
	Limiter *frontend.Limiter
	Logger  *slog.Logger
}

// Server is the REST frontend.
type Server struct {
	svc    *core.Service
	engine *gin.Engine
	logger *slog.Logger
}

// New builds the REST frontend over svc.
func New(svc *core.Service, cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.LoginPerMinute <= 0 {
		cfg.LoginPerMinute = 30
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("rest: trusted proxies: %w", err)
	}
	s := &Server{svc: svc, engine: e, logger: cfg.Logger}

	e.Use(requestID(), accessLog(cfg.Logger), recoverJSON(cfg.Logger), securityHeaders(), limitBody(cfg.MaxBodyBytes))
	e.NoRoute(func(c *gin.Context) { abortJSON(c, http.StatusNotFound, "not_found", "no such route") })
	e.NoMethod(func(c *gin.Context) {
		abortJSON(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
	})

	if cfg.Limiter == nil {
		cfg.Limiter = frontend.NewLimiter(cfg.LoginPerMinute, cfg.LoginBurst)
	}
	passwordLimit := limitPasswords(cfg.Limiter, cfg.Logger)

	e.GET("/.well-known/jwks.json", s.jwks)
	v1 := e.Group("/v1")
	v1.GET("/health", s.health)
	v1.GET("/ready", s.ready)
	v1.GET("/keys/public", s.publicKey)
	v1.POST("/auth/login", passwordLimit, s.login)
	v1.POST("/token/validate", s.validate)

	authed := v1.Group("", s.bearerAuth())
	authed.POST("/auth/logout", s.logout)
	authed.POST("/auth/renew", s.renew)
	authed.GET("/auth/me", s.me)
	authed.PUT("/auth/password", passwordLimit, s.changePassword)
	authed.POST("/auth/totp/enroll", s.enrollTOTP)
	authed.POST("/auth/totp/confirm", s.confirmTOTP)

	admin := authed.Group("", requireAdmin())
	admin.GET("/accounts", s.listAccounts)
	admin.POST("/accounts", s.createAccount)
	admin.GET("/accounts/:id", s.getAccount)
	admin.PATCH("/accounts/:id", s.updateAccount)
	admin.DELETE("/accounts/:id", s.deleteAccount)
	admin.PUT("/accounts/:id/password", s.setPassword)
	admin.GET("/accounts/:id/roles", s.getRoles)
	admin.PUT("/accounts/:id/roles", s.setRoles)
	admin.DELETE("/accounts/:id/totp", s.removeTOTP)
	admin.POST("/token/issue", s.issueToken)
	admin.DELETE("/token/:jti", s.revokeToken)
	admin.GET("/accounts/:id/pgcreds", s.getPGCreds)
	admin.PUT("/accounts/:id/pgcreds", s.setPGCreds)
	admin.GET("/audit", s.listAudit)
	admin.GET("/audit/chain", s.readChain)
	admin.GET("/keys", s.listKeys)
	admin.POST("/keys/rotate", s.rotateKeys)
	return s, nil
}

// Handler returns the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.engine }

// Routes lists every (method, path) the router serves, for the test that
// keeps api/openapi.yaml in step.
func (s *Server) Routes() []gin.RouteInfo { return s.engine.Routes() }
