package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// softHSM sets up a SoftHSM2 token in a temporary directory (its own
// softhsm2.conf and token directory; never the system's) and returns the
// value for SOFTHSM2_CONF, the module path and a PIN file. Missing
// SoftHSM2 fails the test (scripts/test-deps.sh installs it).
func softHSM(t testing.TB, label string) (conf, module, pinFile string) {
	t.Helper()
	for _, m := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(m); err == nil {
			module = m
			break
		}
	}
	if module == "" {
		t.Fatal("libsofthsm2.so not found: install the Debian package softhsm2 (make test does)")
	}
	// Not t.TempDir: subtest names put '=' in its path, and softhsm2.conf
	// cannot hold a value with '=' in it.
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const pin = "e2e-hsm-user-pin"
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "e2e-hsm-so-pin")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile = filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, module, pinFile
}

// pyJWT verifies token with PyJWT (a third-party library, in the
// virtualenv scripts/test-deps.sh makes) from the server's JWKS alone, and
// returns the kid it verified with.
func pyJWT(t *testing.T, base, ca, issuer, token string) string {
	t.Helper()
	py, err := filepath.Abs("../.tools/venv/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("no PyJWT virtualenv at %s (scripts/test-deps.sh, run by make test, makes it): %v", py, err)
	}
	cmd := exec.Command(py, "testdata/verify_jwt.py", base+"/.well-known/jwks.json", ca, issuer)
	cmd.Stdin = strings.NewReader(token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("PyJWT does not verify the token: %v\n%s", err, out)
	}
	var v struct {
		KID    string         `json:"kid"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("verify_jwt.py output: %v\n%s", err, out)
	}
	if v.Claims["iss"] != issuer || v.Claims["sub"] == "" {
		t.Fatalf("PyJWT claims = %v", v.Claims)
	}
	return v.KID
}

func getJSON(t *testing.T, c *http.Client, url, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestPKCS11Custody runs the server with key custody in the PKCS#11
// example plugin on a real SoftHSM2 token, configured from its catalog
// entry as examples/pkcs11/README.md says: the README quick start works,
// a Postgres password is sealed and opened by the token, a restart signs
// with the same in-token key, no local keyring is ever written, and a
// token issued through the HSM verifies with PyJWT from the JWKS alone,
// before and after a rotation (mciasctl key rotate); after an emergency
// rotation the tokens of the retired key verify nowhere.
func TestPKCS11Custody(t *testing.T) {
	dir := newInstance(t)
	run := filepath.Join(dir, "run")
	conf, module, pinFile := softHSM(t, "mcias")
	t.Setenv("SOFTHSM2_CONF", conf)
	bin, sum := buildExample(t, "pkcs11")

	cfgPath := filepath.Join(run, "mcias.toml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	old := `uri = "local:run/keys?key_file=run/master.key"`
	if !strings.Contains(cfg, old) {
		t.Fatalf("run/mcias.toml lacks %s:\n%s", old, cfg)
	}
	uri := fmt.Sprintf("pkcs11:token=mcias;object=mcias?module-path=%s&pin-source=file:%s", module, pinFile)
	cfg = strings.Replace(cfg, old, fmt.Sprintf("uri = \"plugin:pkcs11\"\nconfig = %q", uri), 1)
	cfg += fmt.Sprintf("\n[[plugins.catalog]]\nname = \"pkcs11\"\npath = %q\nsha256 = %q\nenv = [\"SOFTHSM2_CONF\"]\n", bin, sum)
	// A short lead so the test sees a rotation complete; production keeps
	// the default (2m) or more.
	cfg += "\n[keys]\npublish_ahead = \"2s\"\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`issuer = "([^"]+)"`).FindStringSubmatch(cfg)
	if m == nil {
		t.Fatalf("no issuer in config:\n%s", cfg)
	}
	issuer := m[1]

	runQuickStart(t, dir)

	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	base := "https://" + s.addr
	code, v, err := ready(c, base)
	if err != nil || code != 200 {
		t.Fatalf("ready: %d %v\n%s", code, err, s.log.String())
	}
	if b := v.Backends["custody"]; b.Plugin == nil || b.Plugin.Name != "pkcs11" || b.Plugin.PID == 0 {
		t.Fatalf("custody backend = %+v, want the running pkcs11 plugin", b)
	}
	st, body := post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
	admin, _ := body["token"].(string)
	if st != 200 || admin == "" {
		t.Fatalf("admin login: %d %v", st, body)
	}
	st, body = post(t, c, base+"/v1/auth/login", "", `{"username":"alice","password":"alice-long-password"}`)
	alice, _ := body["token"].(string)
	if st != 200 || alice == "" {
		t.Fatalf("alice's login after restart: %d %v", st, body)
	}

	// Sealing and opening a secret goes through the token's AES key.
	_, me := getJSON(t, c, base+"/v1/auth/me", alice)
	id, _ := me["id"].(string)
	req, _ := http.NewRequest("PUT", base+"/v1/accounts/"+id+"/pgcreds", strings.NewReader(`{"host":"db.internal","port":5432,"database":"app","username":"app","password":"pg-secret-e2e"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT pgcreds: %d", resp.StatusCode)
	}
	if st, creds := getJSON(t, c, base+"/v1/accounts/"+id+"/pgcreds", admin); st != 200 || creds["password"] != "pg-secret-e2e" {
		t.Fatalf("GET pgcreds: %d %v", st, creds)
	}

	// The token verifies offline with a third-party library from the JWKS
	// alone, with the key the server lists as current.
	ca := filepath.Join(run, "tls", "ca.pem")
	kid := pyJWT(t, base, ca, issuer, alice)
	if _, pub := getJSON(t, c, base+"/v1/keys/public", ""); pub["kid"] != kid {
		t.Fatalf("PyJWT verified with kid %s, the current key is %v", kid, pub["kid"])
	}
	if _, err := os.Stat(filepath.Join(run, "keys", "keyring.json")); !os.IsNotExist(err) {
		t.Fatalf("a local keyring exists (%v): custody was not the HSM", err)
	}

	// Rotation with the keys in the HSM, driven by mciasctl. A normal
	// rotation publishes the next key first; once it signs, the old
	// token still verifies offline (its key is retiring, still in the
	// JWKS) and so does a new one, with the new key.
	ctl := func(args ...string) string {
		t.Helper()
		out, err := runIn(dir, []string{"MCIAS_SERVER=" + base, "MCIAS_TOKEN=" + admin, "MCIAS_CA=run/tls/ca.pem"}, "", "bin/mciasctl", args...)
		if err != nil {
			t.Fatalf("mciasctl %v: %v\n%s\nserver log:\n%s", args, err, out, s.log.String())
		}
		return out
	}
	out := ctl("key", "rotate")
	if !strings.Contains(out, "next") || !strings.Contains(out, "signs from") {
		t.Fatalf("mciasctl key rotate:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, pub := getJSON(t, c, base+"/v1/keys/public", ""); pub["kid"] != kid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the next key never became active\n%s", s.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := pyJWT(t, base, ca, issuer, alice); got != kid {
		t.Fatalf("PyJWT verified alice's old token with %s, want the retiring key %s", got, kid)
	}
	st, body = post(t, c, base+"/v1/auth/login", "", `{"username":"alice","password":"alice-long-password"}`)
	alice2, _ := body["token"].(string)
	if st != 200 {
		t.Fatalf("login after rotation: %d %v", st, body)
	}
	newKID := pyJWT(t, base, ca, issuer, alice2)
	if newKID == kid {
		t.Fatal("a token issued after the rotation is signed by the old key")
	}

	// An emergency rotation retires the new key at once: its tokens no
	// longer verify offline (the key left the JWKS) nor online.
	out = ctl("key", "rotate", "-emergency")
	if !strings.Contains(out, "revoked tokens:") {
		t.Fatalf("mciasctl key rotate -emergency:\n%s", out)
	}
	py, _ := filepath.Abs("../.tools/venv/bin/python")
	cmd := exec.Command(py, "testdata/verify_jwt.py", base+"/.well-known/jwks.json", ca, issuer)
	cmd.Stdin = strings.NewReader(alice2)
	if pout, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(pout), "is not in the JWKS") {
		t.Fatalf("PyJWT after the emergency rotation: %v\n%s", err, pout)
	}
	if st, body := post(t, c, base+"/v1/token/validate", "", fmt.Sprintf(`{"token":%q}`, alice2)); st != 200 || body["valid"] != false {
		t.Fatalf("validate after the emergency rotation: %d %v", st, body)
	}
	if strings.Contains(s.log.String(), "e2e-hsm-user-pin") {
		t.Fatal("the HSM PIN reached the server log")
	}
}
