package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildExample builds the example plugin module examples/name, as its
// README says, and returns the binary's path and SHA-256.
func buildExample(t *testing.T, name string) (string, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcias-plugin-"+name)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "examples", name)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building examples/%s: %v\n%s", name, err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return bin, hex.EncodeToString(sum[:])
}

// intake is the webhook example's receiver: it keeps the event types it
// was sent with the right bearer token.
type intake struct {
	mu    sync.Mutex
	types map[string]int
	ids   map[string]bool
	bad   int
}

func (in *intake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer e2e-intake-token" {
		in.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b struct {
		Events []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, e := range b.Events {
		if !in.ids[e.ID] { // at least once: drop repeats by id
			in.ids[e.ID] = true
			in.types[e.Type]++
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (in *intake) has(types ...string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, t := range types {
		if in.types[t] == 0 {
			return false
		}
	}
	return true
}

// TestExamplePlugins runs the server with every backend an out-of-tree
// example plugin (examples/jsonstore, seedkeys, webhook), configured as
// examples/README.md says: the README quick start works verbatim, state
// and keys survive a restart, and audit events reach the webhook.
func TestExamplePlugins(t *testing.T) {
	dir := newInstance(t)
	in := &intake{types: map[string]int{}, ids: map[string]bool{}}
	hook := httptest.NewServer(in)
	defer hook.Close()
	t.Setenv("MCIAS_WEBHOOK_TOKEN", "e2e-intake-token")

	run := filepath.Join(dir, "run")
	var catalog strings.Builder
	for _, name := range []string{"jsonstore", "seedkeys", "webhook"} {
		bin, sum := buildExample(t, name)
		env := ""
		if name == "webhook" {
			env = `"MCIAS_WEBHOOK_TOKEN"`
		}
		fmt.Fprintf(&catalog, "\n[[plugins.catalog]]\nname = %q\npath = %q\nsha256 = %q\nenv = [%s]\n", name, bin, sum, env)
	}
	cfgPath := filepath.Join(run, "mcias.toml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	for _, r := range []struct{ old, new string }{
		{`uri = "sqlite:run/mcias.db"`, fmt.Sprintf("uri = \"plugin:jsonstore\"\nconfig = %q", "jsonstore://"+filepath.Join(run, "state.json"))},
		{`uri = "local:run/keys?key_file=run/master.key"`, fmt.Sprintf("uri = \"plugin:seedkeys\"\nconfig = %q", "seedkeys://"+filepath.Join(run, "seed"))},
		{`uri = "file:run/audit.jsonl"`, fmt.Sprintf("uri = \"plugin:webhook\"\nconfig = %q", "webhook+"+hook.URL+"/intake?token_env=MCIAS_WEBHOOK_TOKEN")},
	} {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("run/mcias.toml lacks %s:\n%s", r.old, cfg)
		}
		cfg = strings.Replace(cfg, r.old, r.new, 1)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg+catalog.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	runQuickStart(t, dir)

	// Restarted, the server finds its accounts in the JSON file and signs
	// with the key from the same seed.
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	base := "https://" + s.addr
	code, v, err := ready(c, base)
	if err != nil || code != 200 {
		t.Fatalf("ready: %d %v\n%s", code, err, s.log.String())
	}
	for role, want := range map[string]string{"storage": "jsonstore", "custody": "seedkeys"} {
		if b := v.Backends[role]; b.Plugin == nil || b.Plugin.Name != want || b.Plugin.PID == 0 {
			t.Errorf("backend %s = %+v, want running plugin %s", role, b, want)
		}
	}
	st, body := post(t, c, base+"/v1/auth/login", "", `{"username":"alice","password":"alice-long-password"}`)
	tok, _ := body["token"].(string)
	if st != 200 || tok == "" {
		t.Fatalf("alice's login after restart: %d %v", st, body)
	}
	if st, body := post(t, c, base+"/v1/token/validate", "", fmt.Sprintf(`{"token":%q}`, tok)); st != 200 || body["valid"] != true {
		t.Fatalf("validate after restart: %d %v", st, body)
	}
	state, err := os.ReadFile(filepath.Join(run, "state.json"))
	if err != nil || !strings.Contains(string(state), `"alice"`) {
		t.Fatalf("jsonstore state file: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(run, "seed")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v %v", fi, err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for !in.has("account_create", "login_success", "token_revoke") {
		if time.Now().After(deadline) {
			in.mu.Lock()
			t.Fatalf("webhook received %v (%d unauthorised posts)\nserver log:\n%s", in.types, in.bad, s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(s.log.String(), "e2e-intake-token") {
		t.Error("the webhook token reached the server log")
	}
}
