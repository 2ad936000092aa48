package e2e

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/core/totp"
	"github.com/metacircular/mcias/internal/pgtest"
)

// Several mciassrv processes on one PostgreSQL database must behave as
// one service. These tests run three real nodes on loopback ports, with
// one shared keyring directory and one database.

// cluster is a set of nodes sharing one instance directory and database.
type cluster struct {
	t   *testing.T
	dir string
	db  string // the database's URI
	c   *http.Client

	mu    sync.Mutex // guards nodes: restart replaces one under load
	nodes []*server
}

// roomyLogin is the login limit of the clusters whose tests log in often
// from one address: the nodes share one budget per client IP, which the
// defaults (burst 10) would exhaust.
const roomyLogin = "\n[login]\nrate_per_minute = 6000.0\nburst = 1000\n"

// newCluster lays out an instance whose storage is a fresh PostgreSQL
// database, writes one config per node (each its own audit file), and
// starts n nodes at the same moment on an empty database and an empty
// keyring directory.
func newCluster(t *testing.T, n int, subprocess bool) *cluster {
	t.Helper()
	return newClusterWith(t, n, subprocess, roomyLogin)
}

// newClusterWith is newCluster with extra TOML appended to every node's
// config.
func newClusterWith(t *testing.T, n int, subprocess bool, extra string) *cluster {
	t.Helper()
	dir := newInstance(t)
	if subprocess {
		subprocessMode(t, dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "run", "mcias.toml"))
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	base := regexp.MustCompile(`(?m)^uri = "sqlite:.*"$`).ReplaceAllString(string(raw), fmt.Sprintf("uri = %q", db))
	cl := &cluster{t: t, dir: dir, db: db, c: client(t, dir, 0)}
	for i := range n {
		cfg := strings.Replace(base, `uri = "file:run/audit.jsonl"`, fmt.Sprintf("uri = \"file:run/audit-node%d.jsonl\"\nname = \"file-node%d\"", i, i), 1) + extra
		if err := os.WriteFile(cl.config(i), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cl.nodes = make([]*server, n)
	for i := range n {
		cl.nodes[i] = launch(t, dir, cl.config(i), "MCIAS_ADMIN_PASSWORD="+adminPassword)
	}
	for _, s := range cl.nodes {
		s.waitListening()
	}
	return cl
}

func (cl *cluster) config(i int) string {
	return filepath.Join(cl.dir, "run", fmt.Sprintf("node%d.toml", i))
}

func (cl *cluster) url(i int, path string) string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return "https://" + cl.nodes[i].addr + path
}

// restart stops node i with SIGTERM and starts it again (on a new port).
func (cl *cluster) restart(i int) {
	cl.t.Helper()
	cl.mu.Lock()
	old := cl.nodes[i]
	cl.mu.Unlock()
	if err := old.stop(); err != nil {
		cl.t.Errorf("node %d: unclean exit on SIGTERM: %v\n%s", i, err, old.log.String())
	}
	s := launch(cl.t, cl.dir, cl.config(i))
	s.waitListening()
	cl.mu.Lock()
	cl.nodes[i] = s
	cl.mu.Unlock()
}

// launch starts `mciassrv serve -config cfg` in dir without waiting.
func launch(t *testing.T, dir, cfg string, env ...string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, log: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(filepath.Join(dir, "bin", "mciassrv"), "serve", "-config", cfg)
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop() })
	return s
}

// waitListening waits until the server logs its address.
func (s *server) waitListening() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(s.log.String()); m != nil {
			s.addr = m[1]
			return
		}
		select {
		case err := <-s.done:
			s.done <- err
			s.t.Fatalf("mciassrv exited: %v\n%s", err, s.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.t.Fatalf("mciassrv did not start:\n%s", s.log.String())
}

// call does one JSON request; unlike post it reports transport errors
// instead of failing the test, so load goroutines can use it.
func call(c *http.Client, method, url, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, nil
}

// must does one request that must answer want.
func (cl *cluster) must(want int, node int, method, path, token string, body any) map[string]any {
	cl.t.Helper()
	code, m, err := call(cl.c, method, cl.url(node, path), token, body)
	if err != nil || code != want {
		cl.t.Fatalf("%s %s on node %d = %d %v, %v; want %d", method, path, node, code, m, err, want)
	}
	return m
}

func (cl *cluster) login(node int, username, password string) string {
	cl.t.Helper()
	m := cl.must(200, node, "POST", "/v1/auth/login", "", map[string]string{"username": username, "password": password})
	return m["token"].(string)
}

func (cl *cluster) valid(node int, token string) bool {
	cl.t.Helper()
	m := cl.must(200, node, "POST", "/v1/token/validate", "", map[string]string{"token": token})
	return m["valid"] == true
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// TestMultiNode: three nodes started together on an empty database and an
// empty keyring directory create one signing key and one bootstrap admin;
// any node verifies any node's tokens; a revocation, a disable or a
// password change on one node is refused by the others within the
// propagation bound (measured here and recorded in docs/multinode.md);
// TOTP one-time use and the last-admin rule hold across nodes.
func TestMultiNode(t *testing.T) {
	cl := newCluster(t, 3, false)

	// Exactly one node created the bootstrap admin.
	created := 0
	for _, s := range cl.nodes {
		created += strings.Count(s.log.String(), "created the bootstrap admin")
	}
	if created != 1 {
		t.Fatalf("%d nodes created the bootstrap admin, want exactly 1", created)
	}
	// One signing key, published alike by every node.
	var jwks []string
	for i := range cl.nodes {
		m := cl.must(200, i, "GET", "/.well-known/jwks.json", "", nil)
		b, _ := json.Marshal(m)
		jwks = append(jwks, string(b))
		if keys, _ := m["keys"].([]any); len(keys) != 1 {
			t.Fatalf("node %d publishes %d keys, want 1", i, len(keys))
		}
	}
	if jwks[0] != jwks[1] || jwks[0] != jwks[2] {
		t.Fatalf("nodes publish different keys:\n%s", strings.Join(jwks, "\n"))
	}

	admin := cl.login(0, "admin", adminPassword)
	for i := range cl.nodes {
		if !cl.valid(i, admin) {
			t.Fatalf("node %d refuses a token node 0 issued", i)
		}
	}

	// A system account for service tokens: issuing them costs no Argon2id,
	// so the propagation can be measured over many revocations.
	svc := cl.must(201, 1, "POST", "/v1/accounts", admin, map[string]string{"username": "billing", "account_type": "system"})
	svcID := svc["id"].(string)

	lat := cl.propagation(admin, svcID, 40)
	t.Logf("revocation propagation over %d observations: p50 %v, p99 %v, max %v",
		len(lat), percentile(lat, 50), percentile(lat, 99), percentile(lat, 100))

	// A disable on node 0 kills the account's tokens on nodes 1 and 2;
	// so does a password change on node 2 for nodes 0 and 1.
	alice := cl.must(201, 0, "POST", "/v1/accounts", admin, map[string]string{"username": "alice", "account_type": "human", "password": "alice-long-password-1"})
	aliceID := alice["id"].(string)
	refusedEverywhere := func(what, tok string, except int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := range cl.nodes {
			if i == except {
				continue
			}
			for cl.valid(i, tok) {
				if time.Now().After(deadline) {
					t.Fatalf("after %s: node %d still accepts the token", what, i)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	tok := cl.login(1, "alice", "alice-long-password-1")
	for i := range cl.nodes {
		if !cl.valid(i, tok) {
			t.Fatalf("node %d refuses alice's token", i)
		}
	}
	cl.must(200, 0, "PATCH", "/v1/accounts/"+aliceID, admin, map[string]string{"status": "inactive"})
	refusedEverywhere("a disable on node 0", tok, 0)
	cl.must(200, 0, "PATCH", "/v1/accounts/"+aliceID, admin, map[string]string{"status": "active"})
	if cl.valid(2, tok) {
		t.Fatal("re-enabling the account revived its old token")
	}
	tok = cl.login(2, "alice", "alice-long-password-1")
	for i := range cl.nodes {
		if !cl.valid(i, tok) {
			t.Fatalf("node %d refuses alice's new token", i)
		}
	}
	cl.must(204, 2, "PUT", "/v1/accounts/"+aliceID+"/password", admin, map[string]string{"password": "alice-new-password-2"})
	refusedEverywhere("a password change on node 2", tok, 2)

	// TOTP: one code, sent to two nodes at once, logs in at most once.
	tok = cl.login(0, "alice", "alice-new-password-2")
	enr := cl.must(200, 0, "POST", "/v1/auth/totp/enroll", tok, nil)
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(enr["secret"].(string)))
	if err != nil {
		t.Fatalf("TOTP secret: %v", err)
	}
	step := totp.Step(time.Now())
	cl.must(204, 1, "POST", "/v1/auth/totp/confirm", tok, map[string]string{"code": totp.Code(secret, step)})
	// A later step than the one confirmation used.
	for totp.Step(time.Now()) == step {
		time.Sleep(100 * time.Millisecond)
	}
	code := totp.Code(secret, totp.Step(time.Now()))
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range cl.nodes {
		wg.Go(func() {
			st, _, err := call(cl.c, "POST", cl.url(i, "/v1/auth/login"), "",
				map[string]string{"username": "alice", "password": "alice-new-password-2", "totp_code": code})
			if err == nil && st == 200 {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if w := wins.Load(); w != 1 {
		t.Fatalf("one TOTP code sent to three nodes at once logged in %d times, want exactly 1", w)
	}

	// The last-admin rule: two admins demote each other on two nodes at
	// once; at least one admin remains.
	adm2 := cl.must(201, 0, "POST", "/v1/accounts", admin, map[string]string{"username": "admin2", "account_type": "human", "password": "admin2-long-password"})
	adm2ID := adm2["id"].(string)
	cl.must(200, 0, "PUT", "/v1/accounts/"+adm2ID+"/roles", admin, map[string][]string{"roles": {"admin"}})
	admin2 := cl.login(1, "admin2", "admin2-long-password")
	me := cl.must(200, 0, "GET", "/v1/auth/me", admin, nil)
	adminID := me["id"].(string)
	for round := range 3 {
		var codes [2]int
		wg.Go(func() {
			codes[0], _, _ = call(cl.c, "PATCH", cl.url(0, "/v1/accounts/"+adm2ID), admin, map[string]string{"status": "inactive"})
		})
		wg.Go(func() {
			codes[1], _, _ = call(cl.c, "PATCH", cl.url(1, "/v1/accounts/"+adminID), admin2, map[string]string{"status": "inactive"})
		})
		wg.Wait()
		if codes[0] == 200 && codes[1] == 200 {
			t.Fatalf("round %d: both admins disabled each other on two nodes", round)
		}
		// Put whichever was disabled back, with a fresh token.
		for _, id := range []string{adminID, adm2ID} {
			code, _, _ := call(cl.c, "PATCH", cl.url(2, "/v1/accounts/"+id), cl.anyAdmin(), map[string]string{"status": "active"})
			if code != 200 {
				t.Fatalf("round %d: re-enable %s = %d", round, id, code)
			}
		}
		admin = cl.login(0, "admin", adminPassword)
		admin2 = cl.login(1, "admin2", "admin2-long-password")
	}
}

// anyAdmin logs in as whichever admin is still active.
func (cl *cluster) anyAdmin() string {
	cl.t.Helper()
	for _, c := range []struct{ u, p string }{{"admin", adminPassword}, {"admin2", "admin2-long-password"}} {
		code, m, err := call(cl.c, "POST", cl.url(2, "/v1/auth/login"), "", map[string]string{"username": c.u, "password": c.p})
		if err == nil && code == 200 {
			return m["token"].(string)
		}
	}
	cl.t.Fatal("no admin can log in")
	return ""
}

// retrying does what a client of a load-balanced service does: a request
// that fails in transport or with 503 goes to the next node. It returns
// the first other answer, or an error after many attempts.
func (cl *cluster) retrying(start int, method, path, token string, body any) (int, map[string]any, int, error) {
	var lastErr error
	for attempt := range 50 {
		node := (start + attempt) % 3
		code, m, err := call(cl.c, method, cl.url(node, path), token, body)
		if err == nil && code != http.StatusServiceUnavailable {
			return code, m, attempt, nil
		}
		lastErr = fmt.Errorf("node %d: %d %v", node, code, err)
		time.Sleep(20 * time.Millisecond)
	}
	return 0, nil, 50, fmt.Errorf("no node answered: %v", lastErr)
}

// TestRollingRestart restarts every node, one at a time, while clients
// validate tokens and an admin issues and revokes tokens. A client that
// retries a failed connection or a 503 on another node gets the right
// answer every time, and nothing committed is lost.
func TestRollingRestart(t *testing.T) {
	cl := newCluster(t, 3, false)
	admin := cl.login(0, "admin", adminPassword)
	svcID := cl.must(201, 0, "POST", "/v1/accounts", admin, map[string]string{"username": "billing", "account_type": "system"})["id"].(string)

	type tokenState struct {
		token, jti string
		revoked    bool
		// pending: a revocation is under way; either answer is right
		// until it has had the propagation bound to reach every node.
		pending bool
	}
	var (
		mu     sync.Mutex
		tokens []tokenState
	)
	issue := func(node int) error {
		code, m, _, err := cl.retrying(node, "POST", "/v1/token/issue", admin, map[string]any{"account_id": svcID})
		if err != nil || code != 200 {
			return fmt.Errorf("issue: %d %v", code, err)
		}
		tok := m["token"].(string)
		code, v, _, err := cl.retrying(node, "POST", "/v1/token/validate", "", map[string]string{"token": tok})
		if err != nil || code != 200 || v["valid"] != true {
			return fmt.Errorf("validate a fresh token: %d %v %v", code, v, err)
		}
		mu.Lock()
		tokens = append(tokens, tokenState{token: tok, jti: v["jti"].(string)})
		mu.Unlock()
		return nil
	}
	for i := range 10 {
		if err := issue(i); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	var (
		wg                       sync.WaitGroup
		requests, retried, wrong atomic.Int64
		failures                 = make(chan string, 100)
	)
	fail := func(format string, args ...any) {
		select {
		case failures <- fmt.Sprintf(format, args...):
		default:
		}
	}
	for w := range 4 {
		wg.Go(func() {
			for n := w; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				idx := n % len(tokens)
				ts := tokens[idx]
				mu.Unlock()
				code, m, attempts, err := cl.retrying(n, "POST", "/v1/token/validate", "", map[string]string{"token": ts.token})
				requests.Add(1)
				retried.Add(int64(attempts))
				if err != nil || code != 200 {
					wrong.Add(1)
					fail("validate: %d %v", code, err)
					continue
				}
				// A token revoked before this request started must be
				// refused; one live throughout must be accepted. A
				// revocation that began while the request was on its
				// way (the state read after it differs) allows either.
				mu.Lock()
				after := tokens[idx]
				mu.Unlock()
				settled := !ts.pending && !after.pending && after.revoked == ts.revoked
				if got := m["valid"] == true; got == ts.revoked && settled {
					wrong.Add(1)
					fail("validate %s: valid=%v, revoked=%v", ts.jti, got, ts.revoked)
				}
			}
		})
	}
	// The admin writes meanwhile: issues tokens and revokes some.
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if n%3 == 2 {
				mu.Lock()
				i := n % len(tokens)
				ts := tokens[i]
				if ts.revoked || ts.pending {
					mu.Unlock()
					continue
				}
				tokens[i].pending = true
				mu.Unlock()
				code, _, _, err := cl.retrying(n, "DELETE", "/v1/token/"+ts.jti, admin, nil)
				if err != nil || code != 204 {
					// Left pending: whether it committed is unknown.
					fail("revoke: %d %v", code, err)
					continue
				}
				// From now on every node must refuse it; give the feed
				// its bound before the validators expect it.
				time.Sleep(time.Second)
				mu.Lock()
				tokens[i].revoked, tokens[i].pending = true, false
				mu.Unlock()
				continue
			}
			if err := issue(n); err != nil {
				fail("%v", err)
			}
		}
	})

	time.Sleep(time.Second)
	for i := range 3 {
		cl.restart(i)
		time.Sleep(time.Second)
	}
	close(stop)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	t.Logf("rolling restart of 3 nodes: %d validations, %d retried attempts, %d wrong or lost", requests.Load(), retried.Load(), wrong.Load())
	if requests.Load() < 100 {
		t.Errorf("only %d validations ran during the restarts", requests.Load())
	}

	// Nothing committed was lost: every node knows every token's state.
	for _, ts := range tokens {
		for i := range 3 {
			if got := cl.valid(i, ts.token); got == ts.revoked {
				t.Errorf("after the restarts node %d: token %s valid=%v, revoked=%v", i, ts.jti, got, ts.revoked)
			}
		}
	}
}

// propagation issues rounds service tokens for account svcID, has every
// node validate each (so each holds it in memory), revokes it on the next
// node, and returns how long each other node took to refuse it.
func (cl *cluster) propagation(admin, svcID string, rounds int) []time.Duration {
	t := cl.t
	t.Helper()
	n := len(cl.nodes)
	var lat []time.Duration
	for r := range rounds {
		from := r % n
		tok := cl.must(200, from, "POST", "/v1/token/issue", admin, map[string]any{"account_id": svcID})["token"].(string)
		m := cl.must(200, from, "POST", "/v1/token/validate", "", map[string]string{"token": tok})
		jti := m["jti"].(string)
		for i := range n {
			if !cl.valid(i, tok) {
				t.Fatalf("round %d: node %d refuses a fresh token", r, i)
			}
		}
		revoker := (from + 1) % n
		cl.must(204, revoker, "DELETE", "/v1/token/"+jti, admin, nil)
		revoked := time.Now()
		for i := range n {
			if i == revoker {
				if cl.valid(i, tok) {
					t.Fatalf("round %d: the revoking node still accepts the token", r)
				}
				continue
			}
			for cl.valid(i, tok) {
				if time.Since(revoked) > 10*time.Second {
					t.Fatalf("round %d: node %d still accepts a token revoked on node %d 10s ago", r, i, revoker)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(revoked))
		}
	}
	return lat
}

// TestMultiNodePlugins: two nodes running every backend as a plugin
// subprocess (mcias-plugin-postgres among them) share one database; the
// change feed crosses the plugin boundary, so the propagation bound holds
// there too.
func TestMultiNodePlugins(t *testing.T) {
	cl := newCluster(t, 2, true)
	for i := range cl.nodes {
		m := cl.must(200, i, "GET", "/v1/ready", "", nil)
		b, _ := json.Marshal(m)
		if !strings.Contains(string(b), "mcias-plugin-postgres") && !strings.Contains(string(b), `"postgres"`) {
			t.Fatalf("node %d: storage is not the postgres plugin: %s", i, b)
		}
	}
	admin := cl.login(0, "admin", adminPassword)
	if !cl.valid(1, admin) {
		t.Fatal("node 1 refuses a token node 0 issued")
	}
	svcID := cl.must(201, 1, "POST", "/v1/accounts", admin, map[string]string{"username": "billing", "account_type": "system"})["id"].(string)
	lat := cl.propagation(admin, svcID, 20)
	t.Logf("revocation propagation through plugins over %d observations: p50 %v, p99 %v, max %v",
		len(lat), percentile(lat, 50), percentile(lat, 99), percentile(lat, 100))
}

// TestDatabaseOutage: while the database refuses every connection, calls
// that need it answer 503 and tokens the nodes hold keep validating from
// memory; once it is back the nodes recover without a restart, the change
// feed included.
func TestDatabaseOutage(t *testing.T) {
	cl := newCluster(t, 2, false)
	admin := cl.login(0, "admin", adminPassword)
	svcID := cl.must(201, 0, "POST", "/v1/accounts", admin, map[string]string{"username": "billing", "account_type": "system"})["id"].(string)
	tok := cl.must(200, 0, "POST", "/v1/token/issue", admin, map[string]any{"account_id": svcID})["token"].(string)
	for i := range cl.nodes {
		if !cl.valid(i, tok) || !cl.valid(i, admin) {
			t.Fatalf("node %d refuses a fresh token", i)
		}
	}

	u, err := url.Parse(cl.db)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	conn, err := pgx.Connect(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// The database goes away: no new connection is allowed and every
	// open one is cut.
	exec(`ALTER DATABASE ` + name + ` ALLOW_CONNECTIONS false`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + name + `'`)
	defer exec(`ALTER DATABASE ` + name + ` ALLOW_CONNECTIONS true`)

	for i := range cl.nodes {
		code, m, err := call(cl.c, "POST", cl.url(i, "/v1/auth/login"), "", map[string]string{"username": "admin", "password": adminPassword})
		if err != nil || code != http.StatusServiceUnavailable || m["code"] != "unavailable" {
			t.Errorf("node %d: login with the database down = %d %v %v, want 503 unavailable", i, code, m, err)
		}
		code, m, err = call(cl.c, "POST", cl.url(i, "/v1/token/issue"), admin, map[string]any{"account_id": svcID})
		if err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("node %d: token issue with the database down = %d %v %v, want 503", i, code, m, err)
		}
		if code, _, err := call(cl.c, "GET", cl.url(i, "/v1/ready"), "", nil); err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("node %d: /v1/ready with the database down = %d, %v; want 503", i, code, err)
		}
		if !cl.valid(i, tok) {
			t.Errorf("node %d: a token it holds stopped validating while the database is down", i)
		}
	}

	exec(`ALTER DATABASE ` + name + ` ALLOW_CONNECTIONS true`)
	deadline := time.Now().Add(30 * time.Second)
	for i := range cl.nodes {
		for {
			code, _, err := call(cl.c, "GET", cl.url(i, "/v1/ready"), "", nil)
			if err == nil && code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d not ready 30s after the database came back: %d %v", i, code, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	admin = cl.login(1, "admin", adminPassword)
	// The change feed reconnected (within its 5 s backoff cap): a
	// revocation on node 0 reaches node 1 long before the one-minute poll.
	lat := cl.propagation(admin, svcID, 4)
	t.Logf("after the outage: revocation propagation max %v", percentile(lat, 100))
}

// TestMultiNodeLoginLimit: the per-IP login limit holds across nodes.
// Three nodes on one database with burst B and (almost) no refill: of many
// failed logins from one address, spread over every node and sent at
// once, exactly B pass the limiter (401); every other one is 429 with
// Retry-After, a correct password included.
func TestMultiNodeLoginLimit(t *testing.T) {
	const burst = 6
	// One token back every 100 minutes: none during the test.
	cl := newClusterWith(t, 3, false, fmt.Sprintf("\n[login]\nrate_per_minute = 0.01\nburst = %d\n", burst))
	const attempts = 36
	type answer struct {
		code       int
		retryAfter string
		err        error
	}
	answers := make([]answer, attempts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range attempts {
		wg.Go(func() {
			<-start
			body := strings.NewReader(`{"username":"admin","password":"not-the-password"}`)
			req, err := http.NewRequest("POST", cl.url(i%len(cl.nodes), "/v1/auth/login"), body)
			if err != nil {
				answers[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := cl.c.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers[i] = answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
		})
	}
	close(start)
	wg.Wait()
	passed, perNode := 0, make([]int, len(cl.nodes))
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("attempt %d: %v", i, a.err)
		case a.code == http.StatusUnauthorized:
			passed++
			perNode[i%len(cl.nodes)]++
		case a.code == http.StatusTooManyRequests:
			if a.retryAfter == "" || a.retryAfter == "0" {
				t.Errorf("attempt %d: 429 with Retry-After %q, want a positive wait", i, a.retryAfter)
			}
		default:
			t.Errorf("attempt %d: status %d, want 401 or 429", i, a.code)
		}
	}
	t.Logf("%d of %d failed logins over %d nodes passed the limiter (per node %v)", passed, attempts, len(cl.nodes), perNode)
	if passed != burst {
		t.Errorf("%d failed logins passed the limiter across the nodes, want exactly the burst %d", passed, burst)
	}
	// The budget is spent on every node: the right password waits too.
	for i := range cl.nodes {
		code, m, err := call(cl.c, "POST", cl.url(i, "/v1/auth/login"), "", map[string]string{"username": "admin", "password": adminPassword})
		if err != nil || code != http.StatusTooManyRequests || m["code"] != "rate_limited" {
			t.Errorf("node %d: login after the budget = %d %v %v, want 429 rate_limited", i, code, m, err)
		}
	}
}
