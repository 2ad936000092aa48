package e2e

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/metacircular/mcias/sdk/audit"
)

// ctlCLI runs the built mciasctl with the server, CA and token set.
func ctlCLI(t *testing.T, s *server, token string, args ...string) (string, int) {
	t.Helper()
	env := []string{"MCIAS_SERVER=https://" + s.addr, "MCIAS_CA=" + filepath.Join(s.dir, "run", "tls", "ca.pem"), "MCIAS_TOKEN=" + token}
	out, err := runIn(s.dir, env, "", "bin/mciasctl", args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	t.Fatalf("mciasctl %v: %v\n%s", args, err, out)
	return "", 0
}

// verifyCLI runs `audit verify` with the built mciasctl or mciasgrpcctl
// and returns its output and exit status.
func verifyCLI(t *testing.T, s *server, token, bin string, args ...string) (string, int) {
	t.Helper()
	env := []string{"MCIAS_SERVER=https://" + s.addr, "MCIAS_GRPC_SERVER=" + s.grpc,
		"MCIAS_CA=" + filepath.Join(s.dir, "run", "tls", "ca.pem"), "MCIAS_TOKEN=" + token}
	out, err := runIn(s.dir, env, "", "bin/"+bin, append([]string{"audit", "verify"}, args...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	t.Fatalf("%s audit verify: %v\n%s", bin, err, out)
	return "", 0
}

// TestAuditTamperEvidence is issue 6's tamper test on the real server and
// SQLite file: an untouched log verifies over REST and gRPC; an event
// changed in the database file while the server is down is named by its
// seq once the server is back; a deleted event is found at the event
// after the hole.
func TestAuditTamperEvidence(t *testing.T) {
	dir := newInstance(t)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	login := func() string {
		st, body := post(t, c, "https://"+s.addr+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
		if st != 200 {
			t.Fatalf("login: %d %v", st, body)
		}
		return body["token"].(string)
	}
	admin := login()
	base := "https://" + s.addr
	for i := range 3 {
		if st, _ := post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":"wrong-%d"}`, i)); st != 401 {
			t.Fatalf("wrong password: %d", st)
		}
	}
	if st, body := post(t, c, base+"/v1/accounts", admin, `{"username":"alice","account_type":"system"}`); st != 201 {
		t.Fatalf("create account: %d %v", st, body)
	}
	for _, bin := range []string{"mciasctl", "mciasgrpcctl"} {
		if out, code := verifyCLI(t, s, admin, bin); code != 0 || !strings.Contains(out, "audit chain intact") {
			t.Fatalf("%s audit verify on an untouched log: exit %d\n%s", bin, code, out)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Change one stored event in the database file, as someone with
	// write access to it could: the second failed login now seems to come
	// from elsewhere.
	db := openRunDB(t, dir)
	var seq int64
	var ip string
	if err := db.QueryRow(`SELECT seq, ip FROM audit_events WHERE type = 'login_failure' ORDER BY seq LIMIT 1 OFFSET 1`).Scan(&seq, &ip); err != nil {
		t.Fatal(err)
	}
	exec1 := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec1(`UPDATE audit_events SET ip = '203.0.113.7' WHERE seq = ?`, seq)

	s = start(t, dir)
	admin = login()
	want := fmt.Sprintf("audit chain broken at seq %d (event ", seq)
	for _, bin := range []string{"mciasctl", "mciasgrpcctl"} {
		out, code := verifyCLI(t, s, admin, bin)
		if code != 5 || !strings.Contains(out, want) || !strings.Contains(out, "the event was modified") {
			t.Fatalf("%s audit verify after a modification: exit %d, want 5 naming seq %d\n%s", bin, code, seq, out)
		}
	}

	// Put it back: the log verifies again, so the break was that edit.
	exec1(`UPDATE audit_events SET ip = ? WHERE seq = ?`, ip, seq)
	if out, code := verifyCLI(t, s, admin, "mciasctl"); code != 0 {
		t.Fatalf("audit verify after undoing the edit: exit %d\n%s", code, out)
	}

	// Delete an event: the one after the hole no longer links.
	var next int64
	if err := db.QueryRow(`SELECT MIN(seq) FROM audit_events WHERE seq > ?`, seq).Scan(&next); err != nil {
		t.Fatal(err)
	}
	exec1(`DELETE FROM audit_events WHERE seq = ?`, seq)
	out, code := verifyCLI(t, s, admin, "mciasctl")
	if code != 5 || !strings.Contains(out, fmt.Sprintf("audit chain broken at seq %d (event ", next)) ||
		!strings.Contains(out, "deleted or changed") {
		t.Fatalf("audit verify after a deletion: exit %d, want 5 naming seq %d\n%s", code, next, out)
	}
}

// TestAuditKeysThroughPlugin: with custody in a plugin subprocess, the
// key listing audit verify uses still holds a key retired by an
// emergency rotation (custody.KeyHistory across the plugin wire), and the
// chain stays intact across the rotation.
func TestAuditKeysThroughPlugin(t *testing.T) {
	dir := newInstance(t)
	subprocessMode(t, dir)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	login := func() string {
		st, body := post(t, c, "https://"+s.addr+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
		if st != 200 {
			t.Fatalf("login: %d %v", st, body)
		}
		return body["token"].(string)
	}
	admin := login()
	if out, code := ctlCLI(t, s, admin, "key", "rotate", "-emergency"); code != 0 {
		t.Fatalf("key rotate -emergency: exit %d\n%s", code, out)
	}
	admin = login()
	out, code := ctlCLI(t, s, admin, "key", "list")
	if code != 0 || strings.Count(out, " retired ") != 1 || strings.Count(out, " active ") != 1 {
		t.Fatalf("key list after an emergency rotation, custody in a plugin: exit %d\n%s", code, out)
	}
	if out, code := verifyCLI(t, s, admin, "mciasctl"); code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify: exit %d\n%s", code, out)
	}
}

// TestAuditChainMultiNode: two nodes on one PostgreSQL database write
// audited events at once (both nodes create the same usernames, so half
// the creations fail, and fail logins); the chain they build together is
// linear and verifies from either node, over REST and gRPC.
func TestAuditChainMultiNode(t *testing.T) {
	cl := newCluster(t, 2, false)
	admins := []string{cl.login(0, "admin", adminPassword), cl.login(1, "admin", adminPassword)}
	var wg sync.WaitGroup
	for node := range 2 {
		wg.Go(func() {
			for i := range 15 {
				// Both nodes try every name: one wins.
				_, _, _ = call(cl.c, "POST", cl.url(node, "/v1/accounts"), admins[node],
					map[string]string{"username": fmt.Sprintf("svc-%d", i), "account_type": "system"})
				_, _, _ = call(cl.c, "POST", cl.url(node, "/v1/auth/login"), "",
					map[string]string{"username": "admin", "password": fmt.Sprintf("wrong-%d-%d", node, i)})
			}
		})
	}
	wg.Wait()
	for node := range 2 {
		waitGRPC(t, cl.nodes[node])
		for _, bin := range []string{"mciasctl", "mciasgrpcctl"} {
			out, code := verifyCLI(t, cl.nodes[node], admins[node], bin, "-page", "7")
			if code != 0 || !strings.Contains(out, "audit chain intact") {
				t.Fatalf("node %d: %s audit verify: exit %d\n%s", node, bin, code, out)
			}
			t.Logf("node %d, %s:\n%s", node, bin, out)
		}
	}
}

// waitGRPC sets s.grpc once the server logs its gRPC address (the
// cluster helpers wait for REST only).
func waitGRPC(t *testing.T, s *server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := grpcListenRE.FindStringSubmatch(s.log.String()); m != nil {
			s.grpc = m[1]
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no gRPC listener logged:\n%s", s.log.String())
}

// TestAuditCheckpointsCatchARewrite: the server signs checkpoints of the
// chain head through custody (audit.checkpoint_every); audit verify
// checks them. Someone with write access to the SQLite file then edits
// an event and recomputes every later hash, which the chain alone cannot
// show: the first checkpoint after the edit, whose signature covers the
// old head, is named as the broken link.
func TestAuditCheckpointsCatchARewrite(t *testing.T) {
	dir := newInstance(t)
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(raw), "[[audit.sinks]]", "[audit]\ncheckpoint_every = \"200ms\"\n\n[[audit.sinks]]", 1)
	if changed == string(raw) {
		t.Fatal("run/mcias.toml has no [[audit.sinks]] to put [audit] before")
	}
	if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	login := func() string {
		st, body := post(t, c, "https://"+s.addr+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
		if st != 200 {
			t.Fatalf("login: %d %v", st, body)
		}
		return body["token"].(string)
	}
	admin := login()
	for i := range 3 {
		post(t, c, "https://"+s.addr+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":"wrong-%d"}`, i))
		time.Sleep(300 * time.Millisecond) // a checkpoint between the failures
	}
	var rep struct {
		Intact      bool  `json:"intact"`
		Checkpoints int64 `json:"checkpoints"`
	}
	out, code := ctlCLI(t, s, admin, "-json", "audit", "verify")
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || !rep.Intact || rep.Checkpoints < 2 {
		t.Fatalf("audit verify with checkpoints: exit %d, %v\n%s", code, err, out)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// The rewrite: the first failed login gets another IP, and every
	// event from it on gets a fresh, consistent hash.
	db := openRunDB(t, dir)
	var target int64
	if err := db.QueryRow(`SELECT MIN(seq) FROM audit_events WHERE type = 'login_failure'`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT seq, id, time, type, actor_id, account_id, ip, request_id, outcome, details, prev_hash
		FROM audit_events WHERE seq >= ? ORDER BY seq`, target)
	if err != nil {
		t.Fatal(err)
	}
	var evs []audit.Event
	for rows.Next() {
		var ev audit.Event
		var ns int64
		var typ, outcome, details string
		if err := rows.Scan(&ev.Seq, &ev.ID, &ns, &typ, &ev.ActorID, &ev.AccountID, &ev.IP, &ev.RequestID, &outcome, &details, &ev.PrevHash); err != nil {
			t.Fatal(err)
		}
		ev.Time, ev.Type, ev.Outcome = time.Unix(0, ns).UTC(), audit.Type(typ), audit.Outcome(outcome)
		if err := json.Unmarshal([]byte(details), &ev.Details); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	evs[0].IP = "203.0.113.7"
	firstCheckpoint := int64(0)
	prev := evs[0].PrevHash
	for i := range evs {
		evs[i].PrevHash = prev
		evs[i].Hash = audit.ChainHash(prev, evs[i])
		prev = evs[i].Hash
		if _, err := db.Exec(`UPDATE audit_events SET ip = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
			evs[i].IP, evs[i].PrevHash, evs[i].Hash, evs[i].Seq); err != nil {
			t.Fatal(err)
		}
		// The first checkpoint that vouches for the edited event (one
		// that read the head just before it was stored names an earlier
		// seq, which the rewrite left alone).
		if named, _ := strconv.ParseInt(evs[i].Details["seq"], 10, 64); evs[i].Type == audit.Checkpoint && named >= target && firstCheckpoint == 0 {
			firstCheckpoint = evs[i].Seq
		}
	}
	if firstCheckpoint == 0 {
		t.Fatal("no checkpoint after the first failed login")
	}

	s = start(t, dir)
	admin = login()
	out, code = ctlCLI(t, s, admin, "audit", "verify")
	if code != 5 || !strings.Contains(out, fmt.Sprintf("audit chain broken at seq %d (event ", firstCheckpoint)) ||
		!strings.Contains(out, "but the chain has") {
		t.Fatalf("audit verify after a rewrite: exit %d, want 5 naming the checkpoint at seq %d\n%s", code, firstCheckpoint, out)
	}
}

// openRunDB opens the SQLite database of the layout in dir directly, as
// someone with write access to the file could; closed when t ends.
func openRunDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "run", "mcias.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
