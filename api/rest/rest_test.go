package rest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/api/rest"
)

func TestPublicRoutes(t *testing.T) {
	e := newEnv(t, rest.Config{})
	r := e.do("GET", "/v1/health", "", nil)
	mustStatus(t, "health", r, 200, "")
	if r.json(t)["status"] != "ok" {
		t.Fatalf("health body %s", r.body)
	}
	r = e.do("GET", "/v1/ready", "", nil)
	mustStatus(t, "ready", r, 200, "")
	if r.json(t)["status"] != "ready" {
		t.Fatalf("ready body %s", r.body)
	}
	jwk := e.do("GET", "/v1/keys/public", "", nil).json(t)
	for k, want := range map[string]string{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig"} {
		if jwk[k] != want {
			t.Errorf("jwk %s = %v, want %s", k, jwk[k], want)
		}
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(e.do("GET", "/.well-known/jwks.json", "", nil).body, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v %v", err, set)
	}
	if set.Keys[0]["kid"] != jwk["kid"] {
		t.Fatalf("jwks does not list the current key first")
	}
	if r := e.do("GET", "/v1/nope", "", nil); r.status != 404 {
		t.Fatalf("unknown route: %d", r.status)
	}
	if r := e.do("DELETE", "/v1/health", "", nil); r.status != 405 {
		t.Fatalf("wrong method: %d", r.status)
	}
}

// TestReadyDown: the 503 of /v1/ready names the backend that is down and,
// like every non-2xx answer, carries the contract's error and code.
func TestReadyDown(t *testing.T) {
	e := newEnv(t, rest.Config{})
	if err := e.store.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/v1/ready", "", nil)
	mustStatus(t, "ready with storage down", r, 503, "unavailable")
	m := r.json(t)
	if m["status"] != "unavailable" || !strings.Contains(fmt.Sprint(m["error"]), "storage") {
		t.Fatalf("ready body %s", r.body)
	}
	if b, _ := m["backends"].(map[string]any)["storage"].(map[string]any); b["status"] != "down" {
		t.Fatalf("ready body %s", r.body)
	}
}

func TestStrictJSON(t *testing.T) {
	e := newEnv(t, rest.Config{MaxBodyBytes: 4096})
	login := "/v1/auth/login"
	for _, tc := range []struct {
		name    string
		body    any
		headers []string
		status  int
		code    string
	}{
		{"case=unknown field", `{"username":"admin","password":"x","role":"admin"}`, nil, 400, "invalid_request"},
		// Valid credentials, so only the strictness check can refuse them:
		// encoding/json matches names case-insensitively and keeps the
		// last duplicate, so two parsers could read one body differently.
		{"case=field name in another case", `{"Username":"` + adminUser + `","PASSWORD":"` + adminPass + `"}`, nil, 400, "invalid_request"},
		{"case=duplicate field", `{"username":"nobody","username":"` + adminUser + `","password":"` + adminPass + `"}`, nil, 400, "invalid_request"},
		{"case=trailing data", `{"username":"admin","password":"x"} {"a":1}`, nil, 400, "invalid_request"},
		{"case=trailing garbage", `{"username":"admin","password":"x"}garbage`, nil, 400, "invalid_request"},
		{"case=malformed", `{"username":`, nil, 400, "invalid_request"},
		{"case=not an object", `["admin"]`, nil, 400, "invalid_request"},
		{"case=wrong type", `{"username":1,"password":"x"}`, nil, 400, "invalid_request"},
		{"case=empty body", ``, nil, 400, "invalid_request"},
		{"case=missing fields", `{}`, nil, 400, "invalid_request"},
		{"case=form content type", `username=admin&password=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"case=text content type", `{"username":"admin","password":"x"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"case=oversized", `{"username":"admin","password":"` + strings.Repeat("a", 8000) + `"}`, nil, 413, "payload_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", login, "", tc.body, tc.headers...)
			mustStatus(t, tc.name, r, tc.status, tc.code)
		})
	}
	// Chunked (no Content-Length) oversized bodies are cut off too.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", e.srv.URL+login, strings.NewReader(strings.Repeat(" ", 10000)+"{}"))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t, rest.Config{})
	admin := e.login(adminUser, adminPass)
	r := e.do("POST", "/v1/accounts", admin, map[string]string{"username": "alice", "account_type": "human", "password": "alice-password-123"})
	mustStatus(t, "create alice", r, 201, "")
	alice := e.login("alice", "alice-password-123")

	adminRoutes := []struct{ method, path string }{
		{"GET", "/v1/accounts"}, {"POST", "/v1/accounts"}, {"GET", "/v1/accounts/x"},
		{"PATCH", "/v1/accounts/x"}, {"DELETE", "/v1/accounts/x"}, {"PUT", "/v1/accounts/x/password"},
		{"GET", "/v1/accounts/x/roles"}, {"PUT", "/v1/accounts/x/roles"}, {"DELETE", "/v1/accounts/x/totp"},
		{"POST", "/v1/token/issue"}, {"DELETE", "/v1/token/x"}, {"GET", "/v1/accounts/x/pgcreds"},
		{"PUT", "/v1/accounts/x/pgcreds"}, {"GET", "/v1/audit"},
	}
	for _, rt := range adminRoutes {
		t.Run("case=non-admin "+rt.method+" "+rt.path, func(t *testing.T) {
			mustStatus(t, "non-admin", e.do(rt.method, rt.path, alice, map[string]string{}), 403, "forbidden")
			mustStatus(t, "anonymous", e.do(rt.method, rt.path, "", map[string]string{}), 401, "unauthorized")
			mustStatus(t, "garbage token", e.do(rt.method, rt.path, "not.a.token", map[string]string{}), 401, "unauthorized")
		})
	}
	r = e.do("GET", "/v1/auth/me", alice, nil)
	mustStatus(t, "me", r, 200, "")
	if r.json(t)["username"] != "alice" {
		t.Fatalf("me: %s", r.body)
	}
	if r.header.Get("WWW-Authenticate") != "" {
		t.Fatal("WWW-Authenticate on success")
	}
	r = e.do("GET", "/v1/auth/me", "", nil)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("401 without WWW-Authenticate: %v", r.header)
	}
}

// forge returns a compact JWS with the given header and claims and a
// signature made by sign.
func forge(header, claims map[string]any, sign func(string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

func TestForgedTokens(t *testing.T) {
	e := newEnv(t, rest.Config{})
	admin := e.login(adminUser, adminPass)
	me := e.do("GET", "/v1/auth/me", admin, nil).json(t)
	jwk := e.do("GET", "/v1/keys/public", "", nil).json(t)
	pub, _ := base64.RawURLEncoding.DecodeString(jwk["x"].(string))
	now := time.Now().Unix()
	claims := map[string]any{
		"iss": "https://mcias.test", "sub": me["id"], "iat": now, "nbf": now, "exp": now + 3600,
		"jti": "4f1c2b8e-8d1a-4e44-9a55-2b1d7c3e9f00", "roles": []string{"admin"},
	}
	hmacWith := func(key []byte) func(string) []byte {
		return func(in string) []byte { m := hmac.New(sha256.New, key); m.Write([]byte(in)); return m.Sum(nil) }
	}
	parts := strings.Split(admin, ".")
	for _, tc := range []struct{ name, token string }{
		{"case=alg none", forge(map[string]any{"alg": "none", "typ": "JWT", "kid": jwk["kid"]}, claims, func(string) []byte { return nil })},
		{"case=alg none unsigned", strings.TrimSuffix(forge(map[string]any{"alg": "none", "typ": "JWT"}, claims, func(string) []byte { return nil }), ".") + "."},
		{"case=HMAC with public key", forge(map[string]any{"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}, claims, hmacWith(pub))},
		{"case=HMAC with public key text", forge(map[string]any{"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}, claims, hmacWith([]byte(jwk["x"].(string))))},
		{"case=embedded jwk", forge(map[string]any{"alg": "EdDSA", "typ": "JWT", "jwk": jwk}, claims, func(string) []byte { return make([]byte, 64) })},
		{"case=tampered claims", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","roles":["admin"]}`)) + "." + parts[2]},
		{"case=tampered signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))},
		{"case=empty", "."},
		{"case=junk", strings.Repeat("A", 5000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustStatus(t, "bearer", e.do("GET", "/v1/auth/me", tc.token, nil), 401, "unauthorized")
			r := e.do("POST", "/v1/token/validate", "", map[string]string{"token": tc.token})
			mustStatus(t, "validate", r, 200, "")
			if string(r.body) != `{"valid":false}` {
				t.Fatalf("validate forged: %s", r.body)
			}
		})
	}
}

func TestLoginRateLimitIgnoresForwardedFor(t *testing.T) {
	e := newEnv(t, rest.Config{LoginPerMinute: 1, LoginBurst: 3})
	body := map[string]string{"username": "nobody", "password": "wrong-password"}
	for i := range 3 {
		// A client cannot pick a fresh bucket by claiming another address.
		r := e.do("POST", "/v1/auth/login", "", body, "X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i))
		mustStatus(t, "within burst", r, 401, "invalid_credentials")
	}
	r := e.do("POST", "/v1/auth/login", "", body, "X-Forwarded-For", "10.9.9.9")
	mustStatus(t, "over the limit", r, 429, "rate_limited")
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After = %q", ra)
	}
	// Validation is not rate limited.
	mustStatus(t, "validate", e.do("POST", "/v1/token/validate", "", map[string]string{"token": "x"}), 200, "")
}

func TestTrustedProxy(t *testing.T) {
	e := newEnv(t, rest.Config{TrustedProxies: []string{"127.0.0.1/32", "::1/128"}, LoginPerMinute: 1, LoginBurst: 1})
	body := map[string]string{"username": "nobody", "password": "wrong-password"}
	// Behind a trusted proxy each forwarded client gets its own bucket.
	for i := range 3 {
		r := e.do("POST", "/v1/auth/login", "", body, "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i))
		mustStatus(t, "forwarded client", r, 401, "invalid_credentials")
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, rest.Config{})
	r := e.do("GET", "/v1/health", "", nil, "X-Request-ID", "abc-123")
	if got := r.header.Get("X-Request-ID"); got != "abc-123" {
		t.Fatalf("request id echoed as %q", got)
	}
	r = e.do("GET", "/v1/health", "", nil, "X-Request-ID", "bad id; with <spaces>")
	if got := r.header.Get("X-Request-ID"); got == "" || strings.ContainsAny(got, " \n") {
		t.Fatalf("unsafe request id not replaced: %q", got)
	}
}

// TestIDCaseAndControlCharacters: an upper-cased account id in a path
// names the same account, and a password with a NUL or another control
// character is refused with 400 invalid_request (login: 401).
func TestIDCaseAndControlCharacters(t *testing.T) {
	e := newEnv(t, rest.Config{})
	admin := e.login(adminUser, adminPass)
	r := e.do("POST", "/v1/accounts", admin, map[string]string{"username": "alice", "account_type": "human", "password": "alice password 1"})
	mustStatus(t, "create", r, 201, "")
	id := r.json(t)["id"].(string)
	up := strings.ToUpper(id)
	r = e.do("GET", "/v1/accounts/"+up, admin, nil)
	mustStatus(t, "get by upper-case id", r, 200, "")
	if got := r.json(t)["id"]; got != id {
		t.Fatalf("id = %v, want %s", got, id)
	}
	mustStatus(t, "roles by upper-case id", e.do("PUT", "/v1/accounts/"+up+"/roles", admin, map[string][]string{"roles": {"ops"}}), 200, "")

	for _, pw := range []string{strings.Repeat("\x00", 12), "alice password\x002", "alice password\n2"} {
		r = e.do("POST", "/v1/accounts", admin, map[string]string{"username": "bob", "account_type": "human", "password": pw})
		mustStatus(t, "create with control characters", r, 400, "invalid_request")
		if msg := r.json(t)["error"].(string); !strings.Contains(msg, "control characters") {
			t.Fatalf("error %q does not say why", msg)
		}
		mustStatus(t, "set with control characters", e.do("PUT", "/v1/accounts/"+up+"/password", admin, map[string]string{"password": pw}), 400, "invalid_request")
		mustStatus(t, "change with control characters", e.do("PUT", "/v1/auth/password", admin,
			map[string]string{"current_password": adminPass, "new_password": pw}), 400, "invalid_request")
		mustStatus(t, "login with control characters", e.do("POST", "/v1/auth/login", "",
			map[string]string{"username": "alice", "password": pw}), 401, "invalid_credentials")
	}
	e.login("alice", "alice password 1")
}
