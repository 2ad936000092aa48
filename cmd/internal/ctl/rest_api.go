package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// The REST implementation of API: each operation is one Request.

// fetch performs req and decodes the answer into a T.
func fetch[T any](ctx context.Context, c *Client, req Request) (T, Raw, error) {
	var out T
	raw, err := c.Do(ctx, req, &out)
	return out, raw, err
}

// send performs req, whose success has no body (204).
func send(ctx context.Context, c *Client, req Request) (Raw, error) {
	return c.Do(ctx, req, nil)
}

func accountPath(id string, sub ...string) string {
	p := "/v1/accounts/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

func setIf(q url.Values, key, value string) {
	if value != "" {
		q.Set(key, value)
	}
}

// emptyBody is sent to the body-less POSTs: the contract accepts an empty
// body or {}, and {} with a JSON content type passes the strictest check.
var emptyBody = struct{}{}

func (c *Client) Health(ctx context.Context) (healthStatus, Raw, error) {
	return fetch[healthStatus](ctx, c, Request{Method: http.MethodGet, Path: "/v1/health"})
}

// Ready: the 503 body is the report (which backend is down), not an
// error object.
func (c *Client) Ready(ctx context.Context) (readiness, Raw, error) {
	r, raw, err := fetch[readiness](ctx, c, Request{Method: http.MethodGet, Path: "/v1/ready"})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable &&
		json.Unmarshal(ae.Body, &r) == nil && r.Status != "" {
		return r, Raw(ae.Body), nil
	}
	return r, raw, err
}

func (c *Client) PublicKey(ctx context.Context) (jwk, Raw, error) {
	return fetch[jwk](ctx, c, Request{Method: http.MethodGet, Path: "/v1/keys/public"})
}

func (c *Client) JWKS(ctx context.Context) (jwks, Raw, error) {
	return fetch[jwks](ctx, c, Request{Method: http.MethodGet, Path: "/.well-known/jwks.json"})
}

func (c *Client) Login(ctx context.Context, req loginRequest) (tokenResponse, Raw, error) {
	return fetch[tokenResponse](ctx, c, Request{Method: http.MethodPost, Path: "/v1/auth/login", Body: req})
}

func (c *Client) Logout(ctx context.Context) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodPost, Path: "/v1/auth/logout", Body: emptyBody, Auth: true})
}

func (c *Client) Renew(ctx context.Context) (tokenResponse, Raw, error) {
	return fetch[tokenResponse](ctx, c, Request{Method: http.MethodPost, Path: "/v1/auth/renew", Body: emptyBody, Auth: true})
}

func (c *Client) Me(ctx context.Context) (account, Raw, error) {
	return fetch[account](ctx, c, Request{Method: http.MethodGet, Path: "/v1/auth/me", Auth: true})
}

func (c *Client) ChangePassword(ctx context.Context, current, next string) (Raw, error) {
	body := map[string]string{"current_password": current, "new_password": next}
	return send(ctx, c, Request{Method: http.MethodPut, Path: "/v1/auth/password", Body: body, Auth: true})
}

func (c *Client) EnrollTOTP(ctx context.Context) (totpEnrollment, Raw, error) {
	return fetch[totpEnrollment](ctx, c, Request{Method: http.MethodPost, Path: "/v1/auth/totp/enroll", Body: emptyBody, Auth: true})
}

func (c *Client) ConfirmTOTP(ctx context.Context, code string) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodPost, Path: "/v1/auth/totp/confirm", Body: map[string]string{"code": code}, Auth: true})
}

func (c *Client) RemoveTOTP(ctx context.Context, id string) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodDelete, Path: accountPath(id, "totp"), Auth: true})
}

func (c *Client) ValidateToken(ctx context.Context, req validateRequest) (validation, Raw, error) {
	return fetch[validation](ctx, c, Request{Method: http.MethodPost, Path: "/v1/token/validate", Body: req})
}

func (c *Client) IssueToken(ctx context.Context, req issueRequest) (tokenResponse, Raw, error) {
	return fetch[tokenResponse](ctx, c, Request{Method: http.MethodPost, Path: "/v1/token/issue", Body: req, Auth: true})
}

func (c *Client) RevokeToken(ctx context.Context, jti string) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodDelete, Path: "/v1/token/" + url.PathEscape(jti), Auth: true})
}

func (c *Client) ListAccounts(ctx context.Context, aq accountQuery) (accountPage, Raw, error) {
	q := url.Values{}
	setIf(q, "type", aq.Type)
	setIf(q, "status", aq.Status)
	setIf(q, "role", aq.Role)
	setIf(q, "cursor", aq.Cursor)
	if aq.Limit != 0 {
		q.Set("limit", strconv.Itoa(aq.Limit))
	}
	return fetch[accountPage](ctx, c, Request{Method: http.MethodGet, Path: "/v1/accounts", Query: q, Auth: true})
}

func (c *Client) CreateAccount(ctx context.Context, req createAccountRequest) (account, Raw, error) {
	return fetch[account](ctx, c, Request{Method: http.MethodPost, Path: "/v1/accounts", Body: req, Auth: true})
}

func (c *Client) GetAccount(ctx context.Context, id string) (account, Raw, error) {
	return fetch[account](ctx, c, Request{Method: http.MethodGet, Path: accountPath(id), Auth: true})
}

func (c *Client) UpdateAccount(ctx context.Context, id, status string) (account, Raw, error) {
	return fetch[account](ctx, c, Request{Method: http.MethodPatch, Path: accountPath(id), Body: map[string]string{"status": status}, Auth: true})
}

func (c *Client) DeleteAccount(ctx context.Context, id string) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodDelete, Path: accountPath(id), Auth: true})
}

func (c *Client) SetPassword(ctx context.Context, id, password string) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodPut, Path: accountPath(id, "password"), Body: map[string]string{"password": password}, Auth: true})
}

func (c *Client) GetRoles(ctx context.Context, id string) (rolesBody, Raw, error) {
	return fetch[rolesBody](ctx, c, Request{Method: http.MethodGet, Path: accountPath(id, "roles"), Auth: true})
}

func (c *Client) SetRoles(ctx context.Context, id string, roles []string) (rolesBody, Raw, error) {
	return fetch[rolesBody](ctx, c, Request{Method: http.MethodPut, Path: accountPath(id, "roles"), Body: rolesBody{Roles: roles}, Auth: true})
}

func (c *Client) GetPGCreds(ctx context.Context, id string) (pgCreds, Raw, error) {
	return fetch[pgCreds](ctx, c, Request{Method: http.MethodGet, Path: accountPath(id, "pgcreds"), Auth: true})
}

func (c *Client) SetPGCreds(ctx context.Context, id string, pc pgCreds) (Raw, error) {
	return send(ctx, c, Request{Method: http.MethodPut, Path: accountPath(id, "pgcreds"), Body: pc, Auth: true})
}

func (c *Client) ListAudit(ctx context.Context, aq auditQuery) (auditPage, Raw, error) {
	q := url.Values{}
	setIf(q, "type", aq.Type)
	setIf(q, "account_id", aq.AccountID)
	setIf(q, "since", aq.Since)
	setIf(q, "cursor", aq.Cursor)
	if aq.Limit != 0 {
		q.Set("limit", strconv.Itoa(aq.Limit))
	}
	return fetch[auditPage](ctx, c, Request{Method: http.MethodGet, Path: "/v1/audit", Query: q, Auth: true})
}

func (c *Client) ReadChain(ctx context.Context, afterSeq int64, limit int) (chainPage, Raw, error) {
	q := url.Values{}
	q.Set("after_seq", strconv.FormatInt(afterSeq, 10))
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return fetch[chainPage](ctx, c, Request{Method: http.MethodGet, Path: "/v1/audit/chain", Query: q, Auth: true})
}

func (c *Client) ListKeys(ctx context.Context) (signingKeys, Raw, error) {
	return fetch[signingKeys](ctx, c, Request{Method: http.MethodGet, Path: "/v1/keys", Auth: true})
}

func (c *Client) RotateKeys(ctx context.Context, emergency bool) (rotateResult, Raw, error) {
	return fetch[rotateResult](ctx, c, Request{Method: http.MethodPost, Path: "/v1/keys/rotate", Body: map[string]bool{"emergency": emergency}, Auth: true})
}
