package rest_test

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/api/rest"
	"github.com/metacircular/mcias/core/totp"
)

// TestFullFlow walks every route once and then checks that no response
// carried a secret outside the two places the contract allows.
func TestFullFlow(t *testing.T) {
	e := newEnv(t, rest.Config{})
	admin := e.login(adminUser, adminPass)

	bobPass := "bob-initial-password"
	r := e.do("POST", "/v1/accounts", admin, map[string]string{"username": "Bob", "account_type": "human", "password": bobPass})
	mustStatus(t, "create bob", r, 201, "")
	bob := r.json(t)
	if bob["username"] != "bob" {
		t.Fatalf("username not canonical: %v", bob["username"])
	}
	bobID := bob["id"].(string)
	mustStatus(t, "duplicate", e.do("POST", "/v1/accounts", admin, map[string]string{"username": "BOB", "account_type": "human", "password": bobPass}), 409, "conflict")
	mustStatus(t, "bad type", e.do("POST", "/v1/accounts", admin, map[string]string{"username": "carol", "account_type": "robot"}), 400, "invalid_request")
	mustStatus(t, "human without password", e.do("POST", "/v1/accounts", admin, map[string]string{"username": "carol", "account_type": "human"}), 400, "invalid_request")

	r = e.do("POST", "/v1/accounts", admin, map[string]string{"username": "billing-svc", "account_type": "system"})
	mustStatus(t, "create system", r, 201, "")
	svcID := r.json(t)["id"].(string)

	mustStatus(t, "list", e.do("GET", "/v1/accounts?type=human&limit=1", admin, nil), 200, "")
	mustStatus(t, "bad limit", e.do("GET", "/v1/accounts?limit=100000", admin, nil), 400, "invalid_request")
	mustStatus(t, "get", e.do("GET", "/v1/accounts/"+bobID, admin, nil), 200, "")
	mustStatus(t, "get missing", e.do("GET", "/v1/accounts/00000000-0000-4000-8000-000000000000", admin, nil), 404, "not_found")

	r = e.do("PUT", "/v1/accounts/"+bobID+"/roles", admin, map[string][]string{"roles": {"reader", "writer"}})
	mustStatus(t, "set roles", r, 200, "")
	mustStatus(t, "get roles", e.do("GET", "/v1/accounts/"+bobID+"/roles", admin, nil), 200, "")

	// Bob: session, renew, TOTP.
	bobTok := e.login("bob", bobPass)
	r = e.do("POST", "/v1/auth/renew", bobTok, nil)
	mustStatus(t, "renew", r, 200, "")
	old := bobTok
	bobTok = r.json(t)["token"].(string)
	mustStatus(t, "renewed-away token", e.do("GET", "/v1/auth/me", old, nil), 401, "unauthorized")

	r = e.do("POST", "/v1/auth/totp/enroll", bobTok, nil)
	mustStatus(t, "enroll", r, 200, "")
	enroll := r.json(t)
	secretB32 := enroll["secret"].(string)
	u, err := url.Parse(enroll["otpauth_uri"].(string))
	if err != nil || u.Scheme != "otpauth" || u.Query().Get("secret") != secretB32 {
		t.Fatalf("otpauth uri %v", enroll["otpauth_uri"])
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secretB32)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, "confirm wrong", e.do("POST", "/v1/auth/totp/confirm", bobTok, map[string]string{"code": "000000x"}), 400, "")
	code := totp.Code(secret, totp.Step(time.Now()))
	mustStatus(t, "confirm", e.do("POST", "/v1/auth/totp/confirm", bobTok, map[string]string{"code": code}), 204, "")
	mustStatus(t, "login without code", e.do("POST", "/v1/auth/login", "", map[string]string{"username": "bob", "password": bobPass}), 401, "totp_required")
	mustStatus(t, "login replayed code", e.do("POST", "/v1/auth/login", "", map[string]string{"username": "bob", "password": bobPass, "totp_code": code}), 401, "invalid_credentials")
	mustStatus(t, "remove totp", e.do("DELETE", "/v1/accounts/"+bobID+"/totp", admin, nil), 204, "")

	// Passwords.
	newPass := "bob-second-password"
	mustStatus(t, "change password wrong current", e.do("PUT", "/v1/auth/password", bobTok, map[string]string{"current_password": "nope-nope-nope", "new_password": newPass}), 401, "")
	mustStatus(t, "change password", e.do("PUT", "/v1/auth/password", bobTok, map[string]string{"current_password": bobPass, "new_password": newPass}), 204, "")
	mustStatus(t, "own token survives own password change", e.do("GET", "/v1/auth/me", bobTok, nil), 200, "")
	adminSet := "bob-third-password"
	mustStatus(t, "admin sets password", e.do("PUT", "/v1/accounts/"+bobID+"/password", admin, map[string]string{"password": adminSet}), 204, "")
	mustStatus(t, "token dead after admin password set", e.do("GET", "/v1/auth/me", bobTok, nil), 401, "unauthorized")
	bobTok = e.login("bob", adminSet)

	// Service tokens.
	mustStatus(t, "issue for human", e.do("POST", "/v1/token/issue", admin, map[string]any{"account_id": bobID}), 400, "invalid_request")
	r = e.do("POST", "/v1/token/issue", admin, map[string]any{"account_id": svcID, "ttl_seconds": int64(1) << 62})
	mustStatus(t, "issue huge ttl", r, 400, "invalid_request")
	if msg := fmt.Sprint(r.json(t)["error"]); !strings.Contains(msg, "between 1 second and") {
		t.Fatalf("issue huge ttl: error %q does not give the allowed range", msg)
	}
	mustStatus(t, "issue negative ttl", e.do("POST", "/v1/token/issue", admin, map[string]any{"account_id": svcID, "ttl_seconds": -5}), 400, "invalid_request")
	r = e.do("POST", "/v1/token/issue", admin, map[string]any{"account_id": svcID, "ttl_seconds": 600, "audience": "billing"})
	mustStatus(t, "issue", r, 200, "")
	svcTok := r.json(t)["token"].(string)
	r = e.do("POST", "/v1/token/validate", "", map[string]string{"token": svcTok, "audience": "billing"})
	v := r.json(t)
	if v["valid"] != true || v["sub"] != svcID || v["account_type"] != "system" || v["jti"] == "" {
		t.Fatalf("validate service token: %s", r.body)
	}
	r = e.do("POST", "/v1/token/validate", "", map[string]string{"token": svcTok})
	if string(r.body) != `{"valid":false}` {
		t.Fatalf("audience-bound token valid without audience: %s", r.body)
	}
	mustStatus(t, "revoke", e.do("DELETE", "/v1/token/"+v["jti"].(string), admin, nil), 204, "")
	mustStatus(t, "revoke unknown", e.do("DELETE", "/v1/token/00000000-0000-4000-8000-000000000000", admin, nil), 404, "not_found")
	r = e.do("POST", "/v1/token/validate", "", map[string]string{"token": svcTok, "audience": "billing"})
	if string(r.body) != `{"valid":false}` {
		t.Fatalf("revoked token valid: %s", r.body)
	}

	// Postgres credentials.
	pgPass := "pg-secret-value-42"
	creds := map[string]any{"host": "db.internal", "port": 5432, "database": "billing", "username": "billing", "password": pgPass}
	mustStatus(t, "set pgcreds", e.do("PUT", "/v1/accounts/"+svcID+"/pgcreds", admin, creds), 204, "")
	r = e.do("GET", "/v1/accounts/"+svcID+"/pgcreds", admin, nil)
	mustStatus(t, "get pgcreds", r, 200, "")
	if r.json(t)["password"] != pgPass {
		t.Fatalf("pgcreds: %s", r.body)
	}
	creds["port"] = 70000
	mustStatus(t, "bad port", e.do("PUT", "/v1/accounts/"+svcID+"/pgcreds", admin, creds), 400, "invalid_request")

	// Status changes and the last-admin rule.
	mustStatus(t, "disable", e.do("PATCH", "/v1/accounts/"+bobID, admin, map[string]string{"status": "inactive"}), 200, "")
	mustStatus(t, "token dead when disabled", e.do("GET", "/v1/auth/me", bobTok, nil), 401, "unauthorized")
	mustStatus(t, "enable", e.do("PATCH", "/v1/accounts/"+bobID, admin, map[string]string{"status": "active"}), 200, "")
	mustStatus(t, "token stays dead after re-enable", e.do("GET", "/v1/auth/me", bobTok, nil), 401, "unauthorized")
	mustStatus(t, "bad status", e.do("PATCH", "/v1/accounts/"+bobID, admin, map[string]string{"status": "deleted"}), 400, "invalid_request")
	adminID := e.do("GET", "/v1/auth/me", admin, nil).json(t)["id"].(string)
	mustStatus(t, "demote last admin", e.do("PUT", "/v1/accounts/"+adminID+"/roles", admin, map[string][]string{"roles": {}}), 409, "conflict")
	mustStatus(t, "disable last admin", e.do("PATCH", "/v1/accounts/"+adminID, admin, map[string]string{"status": "inactive"}), 409, "conflict")
	mustStatus(t, "delete last admin", e.do("DELETE", "/v1/accounts/"+adminID, admin, nil), 409, "conflict")
	mustStatus(t, "delete bob", e.do("DELETE", "/v1/accounts/"+bobID, admin, nil), 204, "")
	mustStatus(t, "deleted cannot log in", e.do("POST", "/v1/auth/login", "", map[string]string{"username": "bob", "password": adminSet}), 401, "invalid_credentials")

	// Audit.
	r = e.do("GET", "/v1/audit?limit=5", admin, nil)
	mustStatus(t, "audit", r, 200, "")
	page := r.json(t)
	if len(page["events"].([]any)) != 5 || page["next_cursor"] == nil {
		t.Fatalf("audit page: %s", r.body)
	}
	r = e.do("GET", "/v1/audit?limit=5&cursor="+url.QueryEscape(page["next_cursor"].(string)), admin, nil)
	mustStatus(t, "audit page 2", r, 200, "")
	r = e.do("GET", "/v1/audit?type=pgcreds_read&account_id="+svcID, admin, nil)
	if evs := r.json(t)["events"].([]any); len(evs) != 1 {
		t.Fatalf("pgcreds_read events: %s", r.body)
	}
	mustStatus(t, "audit bad since", e.do("GET", "/v1/audit?since=yesterday", admin, nil), 400, "invalid_request")

	mustStatus(t, "logout", e.do("POST", "/v1/auth/logout", admin, nil), 204, "")
	mustStatus(t, "after logout", e.do("GET", "/v1/auth/me", admin, nil), 401, "unauthorized")

	// No secret ever left the server except the enroll secret (once, in
	// the enroll response) and the pgcreds password (admin GET): remove
	// those two responses' values and scan the rest.
	all := e.seen.Bytes()
	all = bytes.Replace(all, []byte(`"secret":"`+secretB32+`"`), nil, 1)
	all = bytes.Replace(all, []byte(`secret=`+secretB32), nil, 1)
	all = bytes.Replace(all, []byte(`"password":"`+pgPass+`"`), nil, 1)
	for _, s := range []string{adminPass, bobPass, newPass, adminSet, pgPass, secretB32, "$argon2id$", "argon2"} {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("a response contains the secret %q", s)
		}
	}
	if strings.Count(string(all), code) > 0 && len(code) == 6 && bytes.Contains(all, []byte(`"`+code+`"`)) {
		t.Errorf("a response echoes the TOTP code")
	}
}
