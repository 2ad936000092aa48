package core_test

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

const (
	issuer    = "https://mcias.test"
	adminName = "root"
	adminPW   = "correct horse battery staple"
)

// fastParams is the OWASP minimum (m=19456 KiB, t=2, p=1): real Argon2id,
// just not production cost.
var fastParams = password.Params{Time: 2, MemoryKiB: 19456, Threads: 1}

// clock is a settable time source shared by the service and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingStore wraps the real store and counts every call made through
// it: instrumentation, so a test can assert the hot path stays off the
// backend. Everything is delegated to the real sqlite store.
type countingStore struct {
	storage.Store
	n atomic.Int64
}

func (c *countingStore) Accounts() storage.AccountStore {
	return countingAccounts{c.Store.Accounts(), &c.n}
}
func (c *countingStore) Tokens() storage.TokenStore { return countingTokens{c.Store.Tokens(), &c.n} }
func (c *countingStore) Credentials() storage.CredentialStore {
	return countingCreds{c.Store.Credentials(), &c.n}
}
func (c *countingStore) Audit() storage.AuditStore { return countingAudit{c.Store.Audit(), &c.n} }
func (c *countingStore) Ping(ctx context.Context) error {
	c.n.Add(1)
	return c.Store.Ping(ctx)
}

type countingAccounts struct {
	storage.AccountStore
	n *atomic.Int64
}

func (c countingAccounts) CreateAccount(ctx context.Context, a storage.Account, ev audit.Event) error {
	c.n.Add(1)
	return c.AccountStore.CreateAccount(ctx, a, ev)
}
func (c countingAccounts) GetAccount(ctx context.Context, id string) (storage.Account, error) {
	c.n.Add(1)
	return c.AccountStore.GetAccount(ctx, id)
}
func (c countingAccounts) GetAccountByUsername(ctx context.Context, u string) (storage.Account, error) {
	c.n.Add(1)
	return c.AccountStore.GetAccountByUsername(ctx, u)
}
func (c countingAccounts) ListAccounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, string, error) {
	c.n.Add(1)
	return c.AccountStore.ListAccounts(ctx, f)
}
func (c countingAccounts) UpdateAccount(ctx context.Context, a storage.Account, o storage.UpdateOptions, ev audit.Event) (storage.Account, error) {
	c.n.Add(1)
	return c.AccountStore.UpdateAccount(ctx, a, o, ev)
}
func (c countingAccounts) CountAccounts(ctx context.Context) (int, error) {
	c.n.Add(1)
	return c.AccountStore.CountAccounts(ctx)
}

type countingTokens struct {
	storage.TokenStore
	n *atomic.Int64
}

func (c countingTokens) CreateToken(ctx context.Context, t storage.Token, r string, ev audit.Event) error {
	c.n.Add(1)
	return c.TokenStore.CreateToken(ctx, t, r, ev)
}
func (c countingTokens) GetToken(ctx context.Context, jti string) (storage.Token, error) {
	c.n.Add(1)
	return c.TokenStore.GetToken(ctx, jti)
}
func (c countingTokens) RevokeToken(ctx context.Context, jti string, at time.Time, r string, ev audit.Event) error {
	c.n.Add(1)
	return c.TokenStore.RevokeToken(ctx, jti, at, r, ev)
}
func (c countingTokens) ListTokens(ctx context.Context, f storage.TokenFilter) ([]storage.Token, error) {
	c.n.Add(1)
	return c.TokenStore.ListTokens(ctx, f)
}
func (c countingTokens) PruneTokens(ctx context.Context, before time.Time) (int, error) {
	c.n.Add(1)
	return c.TokenStore.PruneTokens(ctx, before)
}

type countingCreds struct {
	storage.CredentialStore
	n *atomic.Int64
}

func (c countingCreds) GetPGCreds(ctx context.Context, id string) (storage.PGCreds, error) {
	c.n.Add(1)
	return c.CredentialStore.GetPGCreds(ctx, id)
}
func (c countingCreds) PutPGCreds(ctx context.Context, p storage.PGCreds, ev audit.Event) (storage.PGCreds, error) {
	c.n.Add(1)
	return c.CredentialStore.PutPGCreds(ctx, p, ev)
}

type countingAudit struct {
	storage.AuditStore
	n *atomic.Int64
}

func (c countingAudit) AppendEvent(ctx context.Context, ev audit.Event) error {
	c.n.Add(1)
	return c.AuditStore.AppendEvent(ctx, ev)
}
func (c countingAudit) ListEvents(ctx context.Context, f storage.EventFilter) ([]audit.Event, error) {
	c.n.Add(1)
	return c.AuditStore.ListEvents(ctx, f)
}
func (c countingAudit) ReadEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error) {
	c.n.Add(1)
	return c.AuditStore.ReadEvents(ctx, after, limit)
}

// env is a service over a fresh sqlite database and local custody, with
// one bootstrapped admin.
type env struct {
	t     testing.TB
	svc   *core.Service
	store *countingStore
	cust  custody.Custodian
	clk   *clock
	cfg   core.Config
	deps  core.Deps
	admin core.Caller
}

func newEnv(t testing.TB, sinks ...core.SinkConfig) *env {
	t.Helper()
	return newEnvWith(t, nil, sinks...)
}

// newEnvWith is newEnv with the config edited by edit (when not nil)
// before the service starts.
func newEnvWith(t testing.TB, edit func(*core.Config), sinks ...core.SinkConfig) *env {
	t.Helper()
	return newEnvAt(t, t.TempDir(), edit, sinks...)
}

// newEnvAt is newEnvWith with the database and keys in dir.
func newEnvAt(t testing.TB, dir string, edit func(*core.Config), sinks ...core.SinkConfig) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, "sqlite://"+filepath.Join(dir, "mcias.db"), nil)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatalf("generate key file: %v", err)
	}
	cust, err := local.Open(ctx, "local://"+filepath.Join(dir, "keys")+"?key_file="+keyFile, nil)
	if err != nil {
		t.Fatalf("open custody: %v", err)
	}
	e := &env{
		t:     t,
		store: &countingStore{Store: st},
		cust:  cust,
		// A whole second so token times (seconds) match the clock.
		clk: &clock{t: time.Now().UTC().Truncate(time.Second)},
		cfg: core.Config{Issuer: issuer, Password: fastParams, MaxConcurrentHashes: 4},
	}
	if edit != nil {
		edit(&e.cfg)
	}
	e.deps = core.Deps{Store: e.store, Custodian: cust, Sinks: sinks, Now: e.clk.Now}
	// Registered first so it runs last, after every service is closed.
	t.Cleanup(func() {
		_ = cust.Close(context.Background())
		_ = st.Close(context.Background())
	})
	e.svc = e.open()
	created, err := e.svc.Bootstrap(ctx, adminName, adminPW)
	if err != nil || !created {
		t.Fatalf("bootstrap: created=%v err=%v", created, err)
	}
	e.admin = e.caller(e.login(adminName, adminPW))
	return e
}

// open starts another service over the same backends (a restart).
func (e *env) open() *core.Service {
	e.t.Helper()
	svc, err := core.New(context.Background(), e.cfg, e.deps)
	if err != nil {
		e.t.Fatalf("core.New: %v", err)
	}
	e.t.Cleanup(func() { _ = svc.Close(context.Background()) })
	return svc
}

func (e *env) login(name, pw string) string {
	e.t.Helper()
	it, err := e.svc.Login(context.Background(), core.Caller{IP: "192.0.2.1", RequestID: "req-login"}, name, pw, "")
	if err != nil {
		e.t.Fatalf("login %s: %v", name, err)
	}
	return it.Token
}

// caller authenticates token as a frontend would.
func (e *env) caller(token string) core.Caller {
	e.t.Helper()
	p, err := e.svc.Authenticate(context.Background(), token)
	if err != nil {
		e.t.Fatalf("authenticate: %v", err)
	}
	return core.Caller{Principal: p, IP: "192.0.2.2", RequestID: "req-" + p.Username}
}

// user creates an account (human with pw, or system when pw is "") with
// roles and returns it.
func (e *env) user(name, pw string, roles ...string) core.Account {
	e.t.Helper()
	ctx := context.Background()
	typ := storage.Human
	if pw == "" {
		typ = storage.System
	}
	a, err := e.svc.CreateAccount(ctx, e.admin, core.NewAccount{Username: name, Type: typ, Password: pw})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	if len(roles) > 0 {
		if _, err := e.svc.SetRoles(ctx, e.admin, a.ID, roles); err != nil {
			e.t.Fatalf("set roles %s: %v", name, err)
		}
	}
	return a
}

func (e *env) valid(token, aud string) bool {
	e.t.Helper()
	v, err := e.svc.Validate(context.Background(), token, aud)
	if err != nil {
		e.t.Fatalf("validate: %v", err)
	}
	return v.Valid
}

// events returns every stored event, oldest first.
func (e *env) events() []audit.Event {
	e.t.Helper()
	evs, err := e.store.Store.Audit().ReadEvents(context.Background(), 0, 100000)
	if err != nil {
		e.t.Fatalf("read events: %v", err)
	}
	return evs
}

// eventText flattens an event into one string for secret scans.
func eventText(ev audit.Event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}

// tokenParts decodes a compact token's header and claims.
func tokenParts(t testing.TB, tok string) (map[string]any, map[string]any) {
	t.Helper()
	p := jwt.NewParser()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var h, c map[string]any
	for i, dst := range []*map[string]any{&h, &c} {
		raw, err := p.DecodeSegment(parts[i])
		if err != nil {
			t.Fatalf("decode segment: %v", err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatalf("unmarshal segment: %v", err)
		}
	}
	return h, c
}

// resign builds a token from header and claims and signs it with the
// server's own active key through custody: a signature the server will
// accept, so only the claim under test can make it fail.
func (e *env) resign(h, c map[string]any) string {
	e.t.Helper()
	ctx := context.Background()
	key, err := e.svc.ActiveKey(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	signing := encodeJSON(e.t, h) + "." + encodeJSON(e.t, c)
	sig, err := e.cust.Sign(ctx, key.KID, []byte(signing))
	if err != nil {
		e.t.Fatal(err)
	}
	return signing + "." + (&jwt.Token{}).EncodeSegment(sig)
}

func encodeJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return (&jwt.Token{}).EncodeSegment(b)
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)
