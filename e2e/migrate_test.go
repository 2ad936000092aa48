package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateLocalToPKCS11 moves a deployment from local custody to the
// PKCS#11 plugin as docs say (README, "Moving to an HSM"): stop the
// server, write the new [custody], `mciassrv reseal` the secrets at rest,
// start with the new configuration. Accounts and Postgres passwords come
// along; new tokens are signed with a key generated in the token, and
// tokens of the old local key keep verifying (online and with PyJWT from
// the JWKS) because the move published that key as retiring in the HSM.
func TestMigrateLocalToPKCS11(t *testing.T) {
	dir := newInstance(t)
	run := filepath.Join(dir, "run")
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	base := "https://" + s.addr
	_, body := post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
	oldAdmin, _ := body["token"].(string)
	st, acct := post(t, c, base+"/v1/accounts", oldAdmin, `{"username":"billing","account_type":"system"}`)
	id, _ := acct["id"].(string)
	if st != 201 || id == "" {
		t.Fatalf("create account: %d %v", st, acct)
	}
	putPG := func(token string) int {
		req, _ := http.NewRequest("PUT", base+"/v1/accounts/"+id+"/pgcreds", strings.NewReader(`{"host":"db","port":5432,"database":"billing","username":"billing","password":"pg-migrate-secret"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := putPG(oldAdmin); st/100 != 2 {
		t.Fatalf("PUT pgcreds: %d", st)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	conf, module, pinFile := softHSM(t, "mcias")
	t.Setenv("SOFTHSM2_CONF", conf)
	bin, sum := buildExample(t, "pkcs11")
	cfgPath := filepath.Join(run, "mcias.toml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "mcias-local.toml"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	old := `uri = "local:run/keys?key_file=run/master.key"`
	if !strings.Contains(string(raw), old) {
		t.Fatalf("run/mcias.toml lacks %s", old)
	}
	uri := fmt.Sprintf("pkcs11:token=mcias?module-path=%s&pin-source=file:%s", module, pinFile)
	cfg := strings.Replace(string(raw), old, fmt.Sprintf("uri = \"plugin:pkcs11\"\nconfig = %q", uri), 1)
	cfg += fmt.Sprintf("\n[[plugins.catalog]]\nname = \"pkcs11\"\npath = %q\nsha256 = %q\nenv = [\"SOFTHSM2_CONF\"]\n", bin, sum)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := runIn(dir, nil, "", "bin/mciassrv", "reseal", "-from-config", "run/mcias-local.toml", "-config", "run/mcias.toml")
	if err != nil || !strings.Contains(out, "resealed 0 TOTP secrets and 1 Postgres passwords") || !strings.Contains(out, "published 1 old signing keys as retiring") {
		t.Fatalf("mciassrv reseal: %v\n%s", err, out)
	}
	if strings.Contains(out, "pg-migrate-secret") {
		t.Fatal("reseal printed a secret")
	}
	// Repeating it is harmless.
	if out, err := runIn(dir, nil, "", "bin/mciassrv", "reseal", "-from-config", "run/mcias-local.toml", "-config", "run/mcias.toml"); err != nil || !strings.Contains(out, "resealed 0 TOTP secrets and 0 Postgres passwords (1 were already") {
		t.Fatalf("second reseal: %v\n%s", err, out)
	}

	s = start(t, dir)
	base = "https://" + s.addr
	if code, v, err := ready(c, base); err != nil || code != 200 || v.Backends["custody"].Plugin == nil || v.Backends["custody"].Plugin.Name != "pkcs11" {
		t.Fatalf("ready after migration: %d %v %+v", code, err, v)
	}
	// The local key is published as retiring: its tokens keep verifying,
	// online and offline, while the HSM's own key signs new ones.
	if st, v := post(t, c, base+"/v1/token/validate", "", fmt.Sprintf(`{"token":%q}`, oldAdmin)); st != 200 || v["valid"] != true {
		t.Fatalf("a token of the local key after migration: %d %v", st, v)
	}
	_, body = post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
	admin, _ := body["token"].(string)
	if admin == "" {
		t.Fatalf("login after migration: %v\n%s", body, s.log.String())
	}
	if st, pc := getJSON(t, c, base+"/v1/accounts/"+id+"/pgcreds", admin); st != 200 || pc["password"] != "pg-migrate-secret" {
		t.Fatalf("pgcreds after migration: %d %v", st, pc)
	}
	m := strings.SplitN(strings.SplitN(cfg, `issuer = "`, 2)[1], `"`, 2)
	ca := filepath.Join(run, "tls", "ca.pem")
	oldKID, newKID := pyJWT(t, base, ca, m[0], oldAdmin), pyJWT(t, base, ca, m[0], admin)
	if oldKID == newKID {
		t.Fatal("the HSM signs with the old local key")
	}
	if _, pub := getJSON(t, c, base+"/v1/keys/public", ""); pub["kid"] != newKID {
		t.Fatalf("current key %v, want the HSM's %s", pub["kid"], newKID)
	}
}
