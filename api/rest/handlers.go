package rest

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// ---- public ----

func (s *Server) health(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

type backendView struct {
	Name   string      `json:"name"`
	Status string      `json:"status"`
	Error  string      `json:"error,omitempty"`
	Plugin *pluginView `json:"plugin,omitempty"`
	Sink   *sinkView   `json:"sink,omitempty"`
}

type sinkView struct {
	State       string  `json:"state"`
	Required    bool    `json:"required"`
	Cursor      int64   `json:"cursor"`
	LagEvents   int64   `json:"lag_events"`
	LagSeconds  float64 `json:"lag_seconds"`
	LagExceeded bool    `json:"lag_exceeded"`
	Failures    int     `json:"failures"`
	LastError   string  `json:"last_error,omitempty"`
}

type pluginView struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	PID       int    `json:"pid,omitempty"`
	Restarts  int    `json:"restarts"`
	LastCrash string `json:"last_crash,omitempty"`
}

func (s *Server) ready(c *gin.Context) {
	r := s.svc.Ready(c.Request.Context())
	backends := make(map[string]backendView, len(r.Backends))
	for role, b := range r.Backends {
		v := backendView{Name: b.Name, Status: "up"}
		if !b.Up {
			v.Status, v.Error = "down", b.Error
		}
		if p := b.Plugin; p != nil {
			v.Plugin = &pluginView{Name: p.Name, Status: "up", PID: p.PID, Restarts: p.Restarts, LastCrash: p.LastError}
			if !p.Up {
				v.Plugin.Status = "down"
			}
		}
		if sk := b.Sink; sk != nil {
			v.Sink = &sinkView{State: sk.State, Required: sk.Required, Cursor: sk.Cursor, LagEvents: sk.LagEvents,
				LagSeconds: sk.LagAge.Seconds(), LagExceeded: sk.LagExceeded, Failures: sk.Failures, LastError: sk.LastError}
		}
		backends[role] = v
	}
	if r.Ready {
		c.JSON(http.StatusOK, gin.H{"status": "ready", "backends": backends})
		return
	}
	var down []string
	for role, b := range backends {
		// A sink that is down holds readiness only when required and
		// beyond its bound.
		if b.Status != "up" && (b.Sink == nil || b.Sink.LagExceeded) {
			down = append(down, role)
		}
	}
	slices.Sort(down)
	// The report, plus the error and code every non-2xx answer carries.
	c.JSON(http.StatusServiceUnavailable, gin.H{
		"status": "unavailable", "backends": backends,
		"error": "not ready: " + strings.Join(down, ", ") + " unavailable", "code": "unavailable",
	})
}

func (s *Server) publicKey(c *gin.Context) {
	k, err := s.svc.ActiveKey(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewJWK(k))
}

func (s *Server) jwks(c *gin.Context) {
	keys, err := s.svc.PublicKeys(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]jwkView, 0, len(keys))
	for _, k := range keys {
		out = append(out, viewJWK(k))
	}
	c.JSON(http.StatusOK, gin.H{"keys": out})
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTPCode string `json:"totp_code"`
}

func (s *Server) login(c *gin.Context) {
	var req loginRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.Username == "" || req.Password == "" {
		badRequest(c, "username and password are required")
		return
	}
	tok, err := s.svc.Login(c.Request.Context(), caller(c), req.Username, req.Password, req.TOTPCode)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewToken(tok))
}

type validateRequest struct {
	Token    string `json:"token"`
	Audience string `json:"audience"`
}

func (s *Server) validate(c *gin.Context) {
	var req validateRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.Token == "" {
		badRequest(c, "token is required")
		return
	}
	v, err := s.svc.Validate(c.Request.Context(), req.Token, req.Audience)
	if err != nil {
		fail(c, err)
		return
	}
	if !v.Valid {
		c.JSON(http.StatusOK, validationView{})
		return
	}
	c.JSON(http.StatusOK, validationView{
		Valid: true, Sub: v.Sub, Username: v.Username, AccountType: string(v.AccountType),
		Roles: nonNil(v.Roles), ExpiresAt: rfc3339(v.ExpiresAt), JTI: v.JTI,
	})
}

// ---- any valid token ----

type emptyRequest struct{}

func (s *Server) logout(c *gin.Context) {
	if !decodeOptionalJSON(c, &emptyRequest{}) {
		return
	}
	if err := s.svc.Logout(c.Request.Context(), caller(c)); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) renew(c *gin.Context) {
	if !decodeOptionalJSON(c, &emptyRequest{}) {
		return
	}
	tok, err := s.svc.Renew(c.Request.Context(), caller(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewToken(tok))
}

func (s *Server) me(c *gin.Context) {
	a, err := s.svc.Me(c.Request.Context(), caller(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewAccount(a))
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

func (s *Server) changePassword(c *gin.Context) {
	var req changePasswordRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.CurrentPassword == "" || req.NewPassword == "" {
		badRequest(c, "current_password and new_password are required")
		return
	}
	if err := s.svc.ChangePassword(c.Request.Context(), caller(c), req.CurrentPassword, req.NewPassword); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) enrollTOTP(c *gin.Context) {
	if !decodeOptionalJSON(c, &emptyRequest{}) {
		return
	}
	e, err := s.svc.EnrollTOTP(c.Request.Context(), caller(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"secret": e.Secret, "otpauth_uri": e.OTPAuthURI})
}

type codeRequest struct {
	Code string `json:"code"`
}

func (s *Server) confirmTOTP(c *gin.Context) {
	var req codeRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.Code == "" {
		badRequest(c, "code is required")
		return
	}
	if err := s.svc.ConfirmTOTP(c.Request.Context(), caller(c), req.Code); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// ---- admin ----

// queryLimit parses the limit query parameter (1..500, absent = 0).
func queryLimit(c *gin.Context) (int, bool) {
	v, ok := c.GetQuery("limit")
	if !ok {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		badRequest(c, "limit must be an integer from 1 to 500")
		return 0, false
	}
	return n, true
}

func (s *Server) listAccounts(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	page, err := s.svc.ListAccounts(c.Request.Context(), caller(c), core.AccountQuery{
		Type:   storage.AccountType(c.Query("type")),
		Status: storage.AccountStatus(c.Query("status")),
		Role:   c.Query("role"),
		Limit:  limit,
		Cursor: c.Query("cursor"),
	})
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]accountView, 0, len(page.Accounts))
	for _, a := range page.Accounts {
		out = append(out, viewAccount(a))
	}
	body := gin.H{"accounts": out}
	if page.NextCursor != "" {
		body["next_cursor"] = page.NextCursor
	}
	c.JSON(http.StatusOK, body)
}

type createAccountRequest struct {
	Username    string `json:"username"`
	AccountType string `json:"account_type"`
	Password    string `json:"password"`
}

func (s *Server) createAccount(c *gin.Context) {
	var req createAccountRequest
	if !decodeJSON(c, &req) {
		return
	}
	a, err := s.svc.CreateAccount(c.Request.Context(), caller(c), core.NewAccount{
		Username: req.Username,
		Type:     storage.AccountType(req.AccountType),
		Password: req.Password,
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/v1/accounts/"+a.ID)
	c.JSON(http.StatusCreated, viewAccount(a))
}

func (s *Server) getAccount(c *gin.Context) {
	a, err := s.svc.GetAccount(c.Request.Context(), caller(c), c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewAccount(a))
}

type updateAccountRequest struct {
	Status *string `json:"status"`
}

func (s *Server) updateAccount(c *gin.Context) {
	var req updateAccountRequest
	if !decodeJSON(c, &req) {
		return
	}
	var u core.AccountUpdate
	if req.Status != nil {
		st := storage.AccountStatus(*req.Status)
		u.Status = &st
	}
	a, err := s.svc.UpdateAccount(c.Request.Context(), caller(c), c.Param("id"), u)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewAccount(a))
}

func (s *Server) deleteAccount(c *gin.Context) {
	if err := s.svc.DeleteAccount(c.Request.Context(), caller(c), c.Param("id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type setPasswordRequest struct {
	Password string `json:"password"`
}

func (s *Server) setPassword(c *gin.Context) {
	var req setPasswordRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.Password == "" {
		badRequest(c, "password is required")
		return
	}
	if err := s.svc.SetPassword(c.Request.Context(), caller(c), c.Param("id"), req.Password); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type rolesBody struct {
	Roles []string `json:"roles"`
}

func (s *Server) getRoles(c *gin.Context) {
	roles, err := s.svc.GetRoles(c.Request.Context(), caller(c), c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rolesBody{Roles: nonNil(roles)})
}

func (s *Server) setRoles(c *gin.Context) {
	var req rolesBody
	if !decodeJSON(c, &req) {
		return
	}
	if req.Roles == nil {
		badRequest(c, "roles is required (use [] to clear)")
		return
	}
	roles, err := s.svc.SetRoles(c.Request.Context(), caller(c), c.Param("id"), req.Roles)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rolesBody{Roles: nonNil(roles)})
}

func (s *Server) removeTOTP(c *gin.Context) {
	if err := s.svc.RemoveTOTP(c.Request.Context(), caller(c), c.Param("id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type issueRequest struct {
	AccountID  string `json:"account_id"`
	TTLSeconds *int64 `json:"ttl_seconds"`
	Audience   string `json:"audience"`
}

func (s *Server) issueToken(c *gin.Context) {
	var req issueRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.AccountID == "" {
		badRequest(c, "account_id is required")
		return
	}
	var ttl time.Duration
	if req.TTLSeconds != nil {
		// Bound before converting so the multiplication cannot overflow;
		// a value past any Duration is clamped, and core then refuses it
		// with the allowed range.
		switch n := *req.TTLSeconds; {
		case n <= 0:
			badRequest(c, "ttl_seconds must be a positive number of seconds")
			return
		case n > math.MaxInt64/int64(time.Second):
			ttl = time.Duration(math.MaxInt64)
		default:
			ttl = time.Duration(n) * time.Second
		}
	}
	tok, err := s.svc.IssueServiceToken(c.Request.Context(), caller(c), req.AccountID, ttl, req.Audience)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewToken(tok))
}

func (s *Server) revokeToken(c *gin.Context) {
	if err := s.svc.RevokeToken(c.Request.Context(), caller(c), c.Param("jti")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) getPGCreds(c *gin.Context) {
	pc, err := s.svc.GetPGCreds(c.Request.Context(), caller(c), c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, pgcredsView(pc))
}

func (s *Server) setPGCreds(c *gin.Context) {
	var req pgcredsView
	if !decodeJSON(c, &req) {
		return
	}
	if err := s.svc.SetPGCreds(c.Request.Context(), caller(c), c.Param("id"), core.PGCreds(req)); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listAudit(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	q := core.AuditQuery{
		Type:      audit.Type(c.Query("type")),
		AccountID: c.Query("account_id"),
		Limit:     limit,
		Cursor:    c.Query("cursor"),
	}
	if v := c.Query("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			badRequest(c, "since must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			return
		}
		q.Since = t
	}
	page, err := s.svc.ListAudit(c.Request.Context(), caller(c), q)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]eventView, 0, len(page.Events))
	for _, e := range page.Events {
		out = append(out, viewEvent(e))
	}
	body := gin.H{"events": out}
	if page.NextCursor != "" {
		body["next_cursor"] = page.NextCursor
	}
	c.JSON(http.StatusOK, body)
}

func (s *Server) readChain(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	var after int64
	if v := c.Query("after_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			badRequest(c, "after_seq must be a non-negative integer")
			return
		}
		after = n
	}
	evs, err := s.svc.ReadChain(c.Request.Context(), caller(c), after, limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]eventView, 0, len(evs))
	for _, e := range evs {
		out = append(out, viewChainEvent(e))
	}
	c.JSON(http.StatusOK, gin.H{"events": out})
}

func (s *Server) listKeys(c *gin.Context) {
	keys, err := s.svc.ListKeys(c.Request.Context(), caller(c))
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]signingKeyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, viewSigningKey(k))
	}
	c.JSON(http.StatusOK, gin.H{"keys": out})
}

type rotateRequest struct {
	Emergency bool `json:"emergency"`
}

type keyStateView struct {
	Kid        string    `json:"kid"`
	State      string    `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	StateSince time.Time `json:"state_since"`
}

func (s *Server) rotateKeys(c *gin.Context) {
	var req rotateRequest
	if !decodeJSON(c, &req) {
		return
	}
	res, err := s.svc.RotateKeys(c.Request.Context(), caller(c), req.Emergency)
	if err != nil {
		fail(c, err)
		return
	}
	keys := make([]keyStateView, 0, len(res.Keys))
	for _, k := range res.Keys {
		since := k.StateSince
		if since.IsZero() {
			since = k.CreatedAt
		}
		keys = append(keys, keyStateView{Kid: k.KID, State: string(k.State), CreatedAt: k.CreatedAt.UTC(), StateSince: since.UTC()})
	}
	out := gin.H{"keys": keys, "revoked_tokens": res.Revoked}
	if !res.ActivatesAt.IsZero() {
		out["activates_at"] = res.ActivatesAt.UTC()
	}
	c.JSON(http.StatusOK, out)
}
