package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildExample builds the example plugin module examples/name, as its
// README says, and returns the binary's path and SHA-256.
func buildExample(t testing.TB, name string) (string, string) {
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

// spoolTypes reads the spool example's directory as its forwarder would
// (finished *.jsonl files) and counts the event types, each id once.
func spoolTypes(t *testing.T, dir string) map[string]int {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	types, ids := map[string]int{}, map[string]bool{}
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(raw)) {
			var e struct {
				ID   string `json:"id"`
				Type string `json:"type"`
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			if !ids[e.ID] {
				ids[e.ID] = true
				types[e.Type]++
			}
		}
	}
	return types
}

// TestExamplePlugins runs the server with every backend an out-of-tree
// example plugin (examples/jsonstore, seedkeys, spool), configured as
// examples/README.md says: the README quick start works verbatim, state
// and keys survive a restart, and audit events reach the spool.
func TestExamplePlugins(t *testing.T) {
	dir := newInstance(t)
	run := filepath.Join(dir, "run")
	var catalog strings.Builder
	for _, name := range []string{"jsonstore", "seedkeys", "spool"} {
		bin, sum := buildExample(t, name)
		fmt.Fprintf(&catalog, "\n[[plugins.catalog]]\nname = %q\npath = %q\nsha256 = %q\nenv = []\n", name, bin, sum)
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
		{`uri = "file:run/audit.jsonl"`, fmt.Sprintf("uri = \"plugin:spool\"\nconfig = %q", "spool://"+filepath.Join(run, "spool"))},
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
	for {
		types := spoolTypes(t, filepath.Join(run, "spool"))
		if types["account_create"] > 0 && types["login_success"] > 0 && types["token_revoke"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spool holds %v\nserver log:\n%s", types, s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
