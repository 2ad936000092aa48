package rest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/api/rest"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
	"github.com/metacircular/mcias/sdk/storage"
)

// The tests run the real stack: SQLite storage, local custody, core and
// the Gin router, behind an httptest TLS server.

const (
	adminUser = "admin"
	adminPass = "correct horse battery staple"
)

type env struct {
	t      *testing.T
	srv    *httptest.Server
	api    *rest.Server
	client *http.Client
	// seen collects every response body, for the no-secrets check.
	seen *bytes.Buffer
	// store is the real storage backend, for tests that take it down.
	store storage.Store
}

func newEnv(t *testing.T, cfg rest.Config) *env {
	t.Helper()
	return newEnvSinks(t, cfg)
}

// newEnvSinks is newEnv with audit sinks.
func newEnvSinks(t *testing.T, cfg rest.Config, sinks ...core.SinkConfig) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(ctx, "sqlite:"+filepath.Join(dir, "mcias.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(t.Context()) })
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	custodian, err := local.Open(ctx, "local:"+filepath.Join(dir, "keys")+"?key_file="+keyFile, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = custodian.Close(t.Context()) })
	svc, err := core.New(ctx, core.Config{
		Issuer:   "https://mcias.test",
		Password: password.Params{Time: 2, MemoryKiB: 19456, Threads: 1},
		Audit:    core.AuditDelivery{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
	}, core.Deps{Store: store, Custodian: custodian, Logger: logger, Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(t.Context()) })
	if _, err := svc.Bootstrap(ctx, adminUser, adminPass); err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	if cfg.LoginPerMinute == 0 {
		cfg.LoginPerMinute, cfg.LoginBurst = 6000, 1000
	}
	api, err := rest.New(svc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, api: api, client: srv.Client(), seen: new(bytes.Buffer), store: store}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request; body may be nil, a string (sent as is) or a value
// (marshalled). Content type is JSON unless set in headers.
func (e *env) do(method, path, token string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.seen.Write(raw)
	e.seen.WriteByte('\n')
	if resp.StatusCode >= 300 {
		checkErrorBody(e.t, method+" "+path, resp.StatusCode, raw)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// checkErrorBody holds every non-2xx response to the contract's shape.
func checkErrorBody(t *testing.T, what string, status int, raw []byte) {
	t.Helper()
	var eb struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if what != "GET /v1/ready" { // its 503 carries the readiness report too
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&eb); err != nil || eb.Error == "" || eb.Code == "" {
		t.Errorf("%s: status %d with a body that is not {error, code}: %s", what, status, raw)
	}
}

// login returns a token or fails the test.
func (e *env) login(user, pass string) string {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": user, "password": pass})
	if r.status != http.StatusOK {
		e.t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	return r.json(e.t)["token"].(string)
}

// mustStatus fails unless r has the wanted status (and code, when given).
func mustStatus(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	if code != "" {
		var eb struct{ Code string }
		_ = json.Unmarshal(r.body, &eb)
		if eb.Code != code {
			t.Fatalf("%s: code %q, want %q", what, eb.Code, code)
		}
	}
}
