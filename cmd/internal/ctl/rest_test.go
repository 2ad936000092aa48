package ctl

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer stands in for mciassrv in these unit tests only: it answers
// contract-shaped JSON (DESIGN.md "REST JSON shapes") from a fixed table
// and records what the CLI sent. The end-to-end test against the real
// server lives with the lead's tests.
type fakeServer struct {
	srv    *httptest.Server
	caFile string

	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, Path, EscapedPath, RawQuery, Auth, ContentType, Accept string
	Body                                                           []byte
}

type reply struct {
	status int
	body   string
	header map[string]string
}

func newFakeServer(t *testing.T, routes map[string]reply) *fakeServer {
	t.Helper()
	return newFakeServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
		rp, ok := routes[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			rp = reply{status: 404, body: `{"error":"no such route","code":"not_found"}`}
		}
		rp.write(w)
	})
}

func (rp reply) write(w http.ResponseWriter) {
	for k, v := range rp.header {
		w.Header().Set(k, v)
	}
	if rp.body != "" && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(rp.status)
	io.WriteString(w, rp.body)
}

// newFakeServerFunc serves h over TLS, recording every request first.
func newFakeServerFunc(t *testing.T, h http.HandlerFunc) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{
			Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"),
			Accept: r.Header.Get("Accept"), Body: body,
		})
		f.mu.Unlock()
		h(w, r)
	}))
	// The untrusted-certificate test makes handshakes fail on purpose.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)

	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(f.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeServer) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the CLI sent no request")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// cli runs mciasctl in-process against f with a fixed environment.
func cli(t *testing.T, f *fakeServer, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	full := append([]string{"-server", f.srv.URL, "-ca", f.caFile}, args...)
	code = run(t.Context(), full, System{
		Getenv: func(k string) string { return env[k] },
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		TermFD: -1,
	})
	return code, out.String(), errOut.String()
}

const (
	acctAlice = `{"id":"0b6f7a4e-2a53-4c1a-9d3c-3f1f7c1b2a10","username":"alice","account_type":"human","status":"active","totp_enabled":true,"roles":["admin","ops"],"created_at":"2026-01-02T15:04:05Z","updated_at":"2026-01-03T15:04:05Z"}`
	acctSvc   = `{"id":"9c1d2e3f-0000-4000-8000-000000000001","username":"deploy","account_type":"system","status":"inactive","totp_enabled":false,"roles":[],"created_at":"2026-01-02T15:04:05Z","updated_at":"2026-01-02T15:04:05Z"}`
	aliceID   = "0b6f7a4e-2a53-4c1a-9d3c-3f1f7c1b2a10"
	jwtLike   = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.c2ln"
)

func jsonBody(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("request body %q is not a JSON object: %v", b, err)
	}
	return m
}

func TestCLIAgainstFakeServer(t *testing.T) {
	routes := map[string]reply{
		"POST /v1/auth/login":                                   {200, `{"token":"` + jwtLike + `","expires_at":"2026-01-02T16:04:05Z"}`, nil},
		"POST /v1/auth/renew":                                   {200, `{"token":"renewed","expires_at":"2026-01-02T16:04:05Z"}`, nil},
		"POST /v1/auth/logout":                                  {204, "", nil},
		"GET /v1/auth/me":                                       {200, acctAlice, nil},
		"PUT /v1/auth/password":                                 {204, "", nil},
		"POST /v1/auth/totp/enroll":                             {200, `{"secret":"JBSWY3DPEHPK3PXP","otpauth_uri":"otpauth://totp/MCIAS:alice?secret=JBSWY3DPEHPK3PXP&issuer=MCIAS&algorithm=SHA1&digits=6&period=30"}`, nil},
		"POST /v1/auth/totp/confirm":                            {204, "", nil},
		"GET /v1/accounts":                                      {200, `{"accounts":[` + acctAlice + `,` + acctSvc + `],"next_cursor":"Y3Vyc29y"}`, nil},
		"POST /v1/accounts":                                     {201, acctSvc, nil},
		"GET /v1/accounts/" + aliceID:                           {200, acctAlice, nil},
		"PATCH /v1/accounts/" + aliceID:                         {200, acctAlice, nil},
		"DELETE /v1/accounts/" + aliceID:                        {204, "", nil},
		"PUT /v1/accounts/" + aliceID + "/password":             {204, "", nil},
		"DELETE /v1/accounts/" + aliceID + "/totp":              {204, "", nil},
		"GET /v1/accounts/" + aliceID + "/roles":                {200, `{"roles":["admin","ops"]}`, nil},
		"PUT /v1/accounts/" + aliceID + "/roles":                {200, `{"roles":[]}`, nil},
		"GET /v1/accounts/" + aliceID + "/pgcreds":              {200, `{"host":"db.internal","port":5432,"database":"app","username":"app_rw","password":"s3cret"}`, nil},
		"PUT /v1/accounts/" + aliceID + "/pgcreds":              {204, "", nil},
		"GET /v1/accounts/a%2Fb":                                {200, acctAlice, nil},
		"POST /v1/token/issue":                                  {200, `{"token":"svc-token","expires_at":"2026-01-03T15:04:05Z"}`, nil},
		"DELETE /v1/token/5b0c2f1e-1111-4222-8333-444455556666": {204, "", nil},
		"GET /v1/audit":                                         {200, `{"events":[{"id":"e1","time":"2026-01-02T15:04:05Z","type":"login_failure","ip":"192.0.2.1","request_id":"r1","outcome":"failure","details":{"reason":"bad password"}}]}`, nil},
		"GET /v1/health":                                        {200, `{"status":"ok"}`, nil},
		"GET /.well-known/jwks.json":                            {200, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA","use":"sig"}]}`, nil},
		"GET /v1/keys/public":                                   {200, `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA","use":"sig"}`, nil},
	}
	f := newFakeServer(t, routes)
	tokenEnv := map[string]string{"MCIAS_TOKEN": "admintoken"}

	tests := []struct {
		name       string
		env        map[string]string
		stdin      string
		args       []string
		wantCode   int
		wantStdout string // exact when wantExact, else substring
		wantExact  bool
		wantStderr string // substring
		check      func(t *testing.T, r recorded)
	}{
		{
			name: "case=login prints only the token", env: map[string]string{"MCIAS_PASSWORD": "correct horse", "MCIAS_TOKEN": "old"},
			args: []string{"auth", "login", "-username", "Alice"}, wantStdout: jwtLike + "\n", wantExact: true,
			check: func(t *testing.T, r recorded) {
				b := jsonBody(t, r.Body)
				if b["username"] != "Alice" || b["password"] != "correct horse" || b["totp_code"] != nil {
					t.Errorf("body = %v", b)
				}
				if r.Auth != "" {
					t.Errorf("login sent Authorization %q; public routes must not", r.Auth)
				}
				if r.ContentType != "application/json" || r.Accept != "application/json" {
					t.Errorf("content-type %q accept %q", r.ContentType, r.Accept)
				}
			},
		},
		{
			name: "case=login password from stdin and totp", stdin: "pass word \n",
			args: []string{"auth", "login", "-username", "alice", "-totp", "123456"}, wantStdout: jwtLike + "\n", wantExact: true,
			check: func(t *testing.T, r recorded) {
				b := jsonBody(t, r.Body)
				if b["password"] != "pass word " || b["totp_code"] != "123456" {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			name: "case=login -json prints the response", env: map[string]string{"MCIAS_PASSWORD": "x"},
			args: []string{"-json", "auth", "login", "-username", "alice"}, wantStdout: `{"token":"` + jwtLike + `","expires_at":"2026-01-02T16:04:05Z"}` + "\n", wantExact: true,
		},
		{
			name: "case=login without password input", args: []string{"auth", "login", "-username", "alice"},
			wantCode: 1, wantStderr: "read password from stdin (or set MCIAS_PASSWORD)",
		},
		{
			name: "case=renew", env: tokenEnv, args: []string{"auth", "renew"}, wantStdout: "renewed\n", wantExact: true,
			check: func(t *testing.T, r recorded) {
				if r.Auth != "Bearer admintoken" || string(r.Body) != "{}" {
					t.Errorf("auth %q body %q", r.Auth, r.Body)
				}
			},
		},
		{name: "case=logout", env: tokenEnv, args: []string{"auth", "logout"}, wantStdout: "logged out"},
		{name: "case=logout -json prints nothing", env: tokenEnv, args: []string{"-json", "auth", "logout"}, wantStdout: "", wantExact: true},
		{name: "case=me", env: tokenEnv, args: []string{"auth", "me"}, wantStdout: "username: alice\n"},
		{
			name: "case=change password from env", env: map[string]string{"MCIAS_TOKEN": "t", "MCIAS_PASSWORD": "old pw", "MCIAS_NEW_PASSWORD": "new pw"},
			args: []string{"auth", "password"}, wantStdout: "password changed",
			check: func(t *testing.T, r recorded) {
				b := jsonBody(t, r.Body)
				if b["current_password"] != "old pw" || b["new_password"] != "new pw" || r.Method != "PUT" {
					t.Errorf("%s body = %v", r.Method, b)
				}
			},
		},
		{
			name: "case=change password from two stdin lines", env: tokenEnv, stdin: "old pw\r\nnew pw\n",
			args: []string{"auth", "password"}, wantStdout: "password changed",
			check: func(t *testing.T, r recorded) {
				b := jsonBody(t, r.Body)
				if b["current_password"] != "old pw" || b["new_password"] != "new pw" {
					t.Errorf("body = %v", b)
				}
			},
		},
		{name: "case=totp enroll", env: tokenEnv, args: []string{"auth", "totp-enroll"}, wantStdout: "secret:      JBSWY3DPEHPK3PXP\n", wantStderr: "totp-confirm"},
		{
			name: "case=totp confirm", env: tokenEnv, args: []string{"auth", "totp-confirm", "-code", "123456"}, wantStdout: "TOTP enabled",
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"code":"123456"}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{
			name: "case=account list table", env: tokenEnv,
			args: []string{"account", "list", "-type", "human", "-status", "active", "-role", "admin", "-limit", "2", "-cursor", "abc"},
			wantStdout: "ID                                    USERNAME  TYPE    STATUS    TOTP  ROLES\n" +
				"0b6f7a4e-2a53-4c1a-9d3c-3f1f7c1b2a10  alice     human   active    yes   admin,ops\n" +
				"9c1d2e3f-0000-4000-8000-000000000001  deploy    system  inactive  no    -\n",
			wantExact:  true,
			wantStderr: "more results: mciasctl account list -cursor Y3Vyc29y",
			check: func(t *testing.T, r recorded) {
				if r.RawQuery != "cursor=abc&limit=2&role=admin&status=active&type=human" {
					t.Errorf("query %q", r.RawQuery)
				}
			},
		},
		{
			name: "case=account list -json is the raw body", env: tokenEnv, args: []string{"-json", "account", "list"},
			wantStdout: routes["GET /v1/accounts"].body + "\n", wantExact: true,
		},
		{
			name: "case=account create human", env: map[string]string{"MCIAS_TOKEN": "t", "MCIAS_NEW_PASSWORD": "long enough pw"},
			args: []string{"account", "create", "-username", "bob", "-type", "human"}, wantStdout: "username: deploy",
			check: func(t *testing.T, r recorded) {
				b := jsonBody(t, r.Body)
				if b["username"] != "bob" || b["account_type"] != "human" || b["password"] != "long enough pw" {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			name: "case=account create system without password", env: tokenEnv,
			args: []string{"account", "create", "-type", "system", "-username", "deploy", "-no-password"}, wantStdout: "type:     system",
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"username":"deploy","account_type":"system"}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{name: "case=account get", env: tokenEnv, args: []string{"account", "get", aliceID}, wantStdout: "roles:    admin,ops\n"},
		{
			name: "case=account get escapes the id", env: tokenEnv, args: []string{"account", "get", "a/b"}, wantStdout: "alice",
			check: func(t *testing.T, r recorded) {
				if r.EscapedPath != "/v1/accounts/a%2Fb" {
					t.Errorf("path %q", r.EscapedPath)
				}
			},
		},
		{
			name: "case=account update flags after the id", env: tokenEnv, args: []string{"account", "update", aliceID, "-status", "inactive"},
			wantStdout: "id:",
			check: func(t *testing.T, r recorded) {
				if r.Method != "PATCH" || string(r.Body) != `{"status":"inactive"}` {
					t.Errorf("%s %s", r.Method, r.Body)
				}
			},
		},
		{name: "case=account delete", env: tokenEnv, args: []string{"account", "delete", aliceID}, wantStdout: "deleted"},
		{
			name: "case=account set-password", env: map[string]string{"MCIAS_TOKEN": "t", "MCIAS_NEW_PASSWORD": "another pw"},
			args: []string{"account", "set-password", aliceID}, wantStdout: "password set",
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"password":"another pw"}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{name: "case=account remove-totp", env: tokenEnv, args: []string{"account", "remove-totp", aliceID}, wantStdout: "TOTP removed"},
		{name: "case=role get", env: tokenEnv, args: []string{"role", "get", aliceID}, wantStdout: "admin,ops\n", wantExact: true},
		{
			name: "case=role set empty clears", env: tokenEnv, args: []string{"role", "set", aliceID, ""}, wantStdout: "(none)\n", wantExact: true,
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"roles":[]}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{
			name: "case=role set list", env: tokenEnv, args: []string{"role", "set", aliceID, "admin, ops,,"},
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"roles":["admin","ops"]}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{name: "case=pgcreds get", env: tokenEnv, args: []string{"pgcreds", "get", aliceID}, wantStdout: "password: s3cret\n"},
		{
			name: "case=pgcreds set", env: tokenEnv, stdin: "pg pw\n",
			args:       []string{"pgcreds", "set", aliceID, "-host", "db.internal", "-port", "6432", "-database", "app", "-username", "app_rw"},
			wantStdout: "stored",
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"host":"db.internal","port":6432,"database":"app","username":"app_rw","password":"pg pw"}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{
			name: "case=token issue", env: tokenEnv, args: []string{"token", "issue", "-account", aliceID, "-ttl", "1h", "-audience", "ci"},
			wantStdout: "svc-token\n", wantExact: true,
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"account_id":"`+aliceID+`","ttl_seconds":3600,"audience":"ci"}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{
			name: "case=token issue default ttl", env: tokenEnv, args: []string{"token", "issue", "-account", aliceID},
			check: func(t *testing.T, r recorded) {
				if string(r.Body) != `{"account_id":"`+aliceID+`"}` {
					t.Errorf("body %s", r.Body)
				}
			},
		},
		{name: "case=token revoke", env: tokenEnv, args: []string{"token", "revoke", "5b0c2f1e-1111-4222-8333-444455556666"}, wantStdout: "revoked"},
		{
			name: "case=audit list", env: tokenEnv, args: []string{"audit", "list", "-type", "login_failure", "-account", aliceID, "-since", "2026-01-02T00:00:00+01:00", "-limit", "10"},
			wantStdout: "2026-01-02T15:04:05Z  login_failure  failure  -      -        192.0.2.1  reason=\"bad password\"\n",
			check: func(t *testing.T, r recorded) {
				if r.RawQuery != "account_id="+aliceID+"&limit=10&since=2026-01-01T23%3A00%3A00Z&type=login_failure" {
					t.Errorf("query %q", r.RawQuery)
				}
			},
		},
		{name: "case=health", args: []string{"health"}, wantStdout: "ok\n", wantExact: true},
		{name: "case=jwks", args: []string{"jwks"}, wantStdout: "k1   OKP  Ed25519  EdDSA  sig  11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n"},
		{name: "case=pubkey", args: []string{"pubkey"}, wantStdout: "KID  KTY"},
		{name: "case=admin route without token", args: []string{"account", "list"}, wantCode: 4, wantStderr: "no token"},
		{name: "case=unknown id is not found", env: tokenEnv, args: []string{"account", "get", "nope"}, wantCode: 1, wantStderr: "mciasctl: no such route (not_found, HTTP 404)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.count()
			code, stdout, stderr := cli(t, f, tt.env, tt.stdin, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr)
			}
			if tt.wantExact && stdout != tt.wantStdout {
				t.Errorf("stdout:\n%q\nwant:\n%q", stdout, tt.wantStdout)
			}
			if !tt.wantExact && !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout:\n%s\nwant it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.wantStderr)
			}
			if tt.check != nil {
				if f.count() == before {
					t.Fatal("no request reached the server")
				}
				tt.check(t, f.last(t))
			}
		})
	}
}

func TestCLIErrors(t *testing.T) {
	errBody := func(msg, code string) string { return `{"error":"` + msg + `","code":"` + code + `"}` }
	tests := []struct {
		name       string
		reply      reply
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"case=invalid credentials", reply{401, errBody("invalid username or password", "invalid_credentials"), nil},
			[]string{"auth", "login", "-username", "a"}, 4, "", "mciasctl: invalid username or password (invalid_credentials, HTTP 401)\n"},
		{"case=totp required without terminal", reply{401, errBody("a TOTP code is required", "totp_required"), nil},
			[]string{"auth", "login", "-username", "a"}, 4, "", "(totp_required, HTTP 401)"},
		{"case=forbidden", reply{403, errBody("this needs the admin role", "forbidden"), nil},
			[]string{"account", "list"}, 4, "", "mciasctl: this needs the admin role (forbidden, HTTP 403)\n"},
		{"case=conflict", reply{409, errBody("cannot remove the last active admin", "conflict"), nil},
			[]string{"role", "set", "x", ""}, 1, "", "(conflict, HTTP 409)"},
		{"case=rate limited", reply{429, errBody("too many requests", "rate_limited"), map[string]string{"Retry-After": "7"}},
			[]string{"account", "list"}, 1, "", "mciasctl: too many requests (rate_limited, HTTP 429); retry after 7 s\n"},
		{"case=proxy error page", reply{502, "<html>bad gateway</html>", map[string]string{"Content-Type": "text/html"}},
			[]string{"health"}, 1, "", "mciasctl: server answered 502 Bad Gateway (HTTP 502)\n"},
		{"case=escape sequences are neutralised", reply{400, errBody(`bad \u001b[31mred\u202e`, "invalid_request"), nil},
			[]string{"health"}, 1, "", "mciasctl: bad ?[31mred? (invalid_request, HTTP 400)\n"},
		{"case=token invalid exits 1", reply{200, `{"valid":false}`, nil},
			[]string{"token", "validate", jwtLike}, 1, "invalid\n", ""},
		{"case=token valid exits 0", reply{200, `{"valid":true,"sub":"s1","username":"alice","account_type":"human","roles":["admin"],"expires_at":"2026-01-02T16:04:05Z","jti":"j1"}`, nil},
			[]string{"token", "validate", "-audience", "ci", jwtLike}, 0, "valid\nsub:      s1\nusername: alice\ntype:     human\nroles:    admin\nexpires:  2026-01-02T16:04:05Z\njti:      j1\n", ""},
		{"case=token invalid -json still exits 1", reply{200, `{"valid":false}`, nil},
			[]string{"-json", "token", "validate", jwtLike}, 1, "{\"valid\":false}\n", ""},
		{"case=not ready", reply{503, `{"status":"unavailable","backends":{"storage":{"name":"sqlite","status":"down","error":"database is locked"},"custody":{"name":"local","status":"up"}}}`, nil},
			[]string{"ready"}, 1, "unavailable\nBACKEND  NAME    STATUS  ERROR\ncustody  local   up      -\nstorage  sqlite  down    database is locked\n", "mciasctl: server is not ready; down: storage (unavailable)\n"},
		{"case=not ready for a required sink", reply{503, `{"status":"unavailable","backends":{"storage":{"name":"sqlite","status":"up"},` +
			`"audit:siem":{"name":"webhook","status":"down","error":"audit sink lags beyond its bound","sink":{"state":"open","required":true,"cursor":3,"lag_events":12,"lag_seconds":300,"lag_exceeded":true,"failures":7,"last_error":"timeout"}},` +
			`"audit:file":{"name":"file","status":"down","error":"audit sink unavailable","sink":{"state":"retrying","required":false,"cursor":14,"lag_events":1,"lag_seconds":0.5,"lag_exceeded":false,"failures":1,"last_error":"unavailable"}}}}`, nil},
			[]string{"ready"}, 1, "unavailable\nBACKEND     NAME     STATUS  ERROR                             DELIVERY\n" +
				"audit:file  file     down    audit sink unavailable            retrying, 1 behind (1s)\n" +
				"audit:siem  webhook  down    audit sink lags beyond its bound  open, 12 behind (5m0s), required, beyond bound\n" +
				"storage     sqlite   up      -                                 -\n", "mciasctl: server is not ready; down: audit:siem (unavailable)\n"},
		{"case=ready", reply{200, `{"status":"ready","backends":{"storage":{"name":"sqlite","status":"up"}}}`, nil},
			[]string{"ready"}, 0, "ready\nBACKEND  NAME    STATUS  ERROR\nstorage  sqlite  up      -\n", ""},
		{"case=garbled success body", reply{200, `{"accounts":`, nil},
			[]string{"account", "list"}, 1, "", "server sent a response this client cannot read (HTTP 200)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One reply for every request: the one under test.
			f := newFakeServerFunc(t, func(w http.ResponseWriter, r *http.Request) { tt.reply.write(w) })
			env := map[string]string{"MCIAS_TOKEN": "t", "MCIAS_PASSWORD": "pw"}
			code, stdout, stderr := cli(t, f, env, "", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout:\n%q\nwant:\n%q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestCLITokenFromStdin(t *testing.T) {
	f := newFakeServer(t, map[string]reply{"POST /v1/token/validate": {200, `{"valid":false}`, nil}})
	code, _, stderr := cli(t, f, nil, "  "+jwtLike+"\n", "token", "validate", "-")
	if code != 1 {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	r := f.last(t)
	if string(r.Body) != `{"token":"`+jwtLike+`"}` || r.Auth != "" {
		t.Errorf("body %s auth %q", r.Body, r.Auth)
	}
}

// TestCLIRevokeFromStdin: token revoke takes the token on stdin too, so
// it never has to be an argument (visible in ps).
func TestCLIRevokeFromStdin(t *testing.T) {
	const jti = "0f0e3c3a-1111-4222-8333-444455556666"
	tok := "eyJhbGciOiJFZERTQSJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"`+jti+`"}`)) + ".c2ln"
	f := newFakeServer(t, map[string]reply{"DELETE /v1/token/" + jti: {204, "", nil}})
	code, stdout, stderr := cli(t, f, map[string]string{"MCIAS_TOKEN": "admintoken"}, tok+"\n", "token", "revoke", "-")
	if code != 0 || !strings.Contains(stdout, "token "+jti+" revoked") {
		t.Fatalf("exit %d; stdout %q; stderr %q", code, stdout, stderr)
	}
	if r := f.last(t); r.Method != "DELETE" || r.Path != "/v1/token/"+jti {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	code, _, stderr = cli(t, f, map[string]string{"MCIAS_TOKEN": "admintoken"}, "", "token", "revoke", "-")
	if code != exitFailed || !strings.Contains(stderr, "read token from stdin") {
		t.Errorf("empty stdin: exit %d; stderr %q", code, stderr)
	}
}

func TestCLIUnreachable(t *testing.T) {
	f := newFakeServer(t, map[string]reply{"GET /v1/health": {200, `{"status":"ok"}`, nil}})

	t.Run("case=untrusted certificate", func(t *testing.T) {
		var out, errOut strings.Builder
		code := run(t.Context(), []string{"-server", f.srv.URL, "health"}, System{
			Getenv: func(string) string { return "" }, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, TermFD: -1,
		})
		if code != exitUnreachable {
			t.Fatalf("exit %d, want %d; stderr %q", code, exitUnreachable, errOut.String())
		}
		if !strings.Contains(errOut.String(), "certificate") || !strings.Contains(errOut.String(), "-ca") {
			t.Errorf("stderr %q should name the certificate problem and the -ca fix", errOut.String())
		}
	})

	t.Run("case=CA from MCIAS_CA", func(t *testing.T) {
		var out, errOut strings.Builder
		env := map[string]string{"MCIAS_SERVER": f.srv.URL, "MCIAS_CA": f.caFile}
		code := run(t.Context(), []string{"health"}, System{
			Getenv: func(k string) string { return env[k] }, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, TermFD: -1,
		})
		if code != 0 || out.String() != "ok\n" {
			t.Fatalf("exit %d stdout %q stderr %q", code, out.String(), errOut.String())
		}
	})

	t.Run("case=connection refused", func(t *testing.T) {
		dead := newFakeServer(t, nil)
		dead.srv.Close()
		code, _, stderr := cli(t, dead, nil, "", "health")
		if code != exitUnreachable || !strings.Contains(stderr, "mciasctl: could not reach server") {
			t.Fatalf("exit %d stderr %q", code, stderr)
		}
	})

	t.Run("case=timeout", func(t *testing.T) {
		release := make(chan struct{})
		slow := newFakeServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
				// Answer nothing: a 200 written while the client tears
				// the connection down can still reach it and race the
				// timeout.
				panic(http.ErrAbortHandler)
			}
		})
		defer close(release)
		code, stdout, stderr := cli(t, slow, nil, "", "-timeout", "100ms", "health")
		if code != exitUnreachable || !strings.Contains(stderr, "timed out") {
			t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
		}
	})
}

func TestNewClient(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		server    string
		ca        string
		wantUsage bool
		wantErr   string
	}{
		{name: "case=https ok", server: "https://mcias.example.net:8443"},
		{name: "case=trailing slash ok", server: "https://mcias.example.net:8443/"},
		{name: "case=http loopback ok", server: "http://127.0.0.1:8080"},
		{name: "case=http localhost ok", server: "http://localhost:8080"},
		{name: "case=http remote refused", server: "http://mcias.example.net", wantUsage: true, wantErr: "refusing plain http"},
		{name: "case=other scheme", server: "ftp://x", wantUsage: true, wantErr: "scheme must be https"},
		{name: "case=no host", server: "mcias.example.net", wantUsage: true, wantErr: "bad -server URL"},
		{name: "case=query", server: "https://x/?a=b", wantUsage: true, wantErr: "no query"},
		{name: "case=missing CA file", server: "https://x", ca: filepath.Join(dir, "missing.pem"), wantErr: "read CA bundle"},
		{name: "case=CA file without PEM", server: "https://x", ca: notPEM, wantErr: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.server, "", tt.ca, time.Second)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			var ue *usageError
			if errors.As(err, &ue) != tt.wantUsage {
				t.Errorf("usage error = %v, want %v", !tt.wantUsage, tt.wantUsage)
			}
		})
	}
}

func TestClientDo(t *testing.T) {
	f := newFakeServer(t, map[string]reply{
		"GET /base/v1/auth/me": {200, acctAlice, nil},
		"GET /base/v1/health":  {200, `{"status":"ok"}`, nil},
	})
	c, err := NewClient(f.srv.URL+"/base/", " tok\n", f.caFile, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ac account
	raw, err := c.Do(t.Context(), Request{Method: http.MethodGet, Path: "/v1/auth/me", Auth: true}, &ac)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != acctAlice || ac.Username != "alice" || !ac.TOTPEnabled || len(ac.Roles) != 2 {
		t.Errorf("raw %s decoded %+v", raw, ac)
	}
	r := f.last(t)
	if r.Auth != "Bearer tok" || r.ContentType != "" {
		t.Errorf("auth %q content-type %q (a GET has no body)", r.Auth, r.ContentType)
	}

	// Without a token an authenticated request never leaves the process.
	c2, _ := NewClient(f.srv.URL+"/base", "", f.caFile, 5*time.Second)
	n := f.count()
	if _, err := c2.Do(t.Context(), Request{Method: http.MethodGet, Path: "/v1/auth/me", Auth: true}, nil); !errors.Is(err, errNoToken) {
		t.Errorf("error %v, want errNoToken", err)
	}
	if f.count() != n {
		t.Error("a request was sent without a token")
	}

	// Redirects are not followed: one could carry a password elsewhere.
	redir := newFakeServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
	})
	c3, err := NewClient(redir.srv.URL, "", redir.caFile, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c3.Do(t.Context(), Request{Method: http.MethodPost, Path: "/v1/auth/login", Body: map[string]string{"password": "x"}}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusFound {
		t.Errorf("error %v, want an APIError with status 302", err)
	}
	if redir.count() != 1 {
		t.Errorf("%d requests, want 1", redir.count())
	}
}
