package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// grpcurl runs the pinned grpcurl (scripts/tools.sh) against the
// instance's gRPC listener, trusting its development CA and reading the
// schema through server reflection only: no .proto file is given.
func grpcurl(t *testing.T, s *server, args ...string) (string, error) {
	t.Helper()
	bin, err := filepath.Abs("../.tools/bin/grpcurl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("grpcurl is missing (%v): run scripts/tools.sh (make test does)", err)
	}
	full := append([]string{"-cacert", "run/tls/ca.pem"}, args...)
	// The address goes before the method, after the flags.
	for i, a := range full {
		if strings.HasPrefix(a, "mcias.") || strings.HasPrefix(a, "grpc.") || a == "list" || a == "describe" {
			full = append(full[:i], append([]string{s.grpc}, full[i:]...)...)
			break
		}
	}
	return runIn(s.dir, nil, "", bin, full...)
}

// grpcurl prints protojson, which varies its whitespace on purpose, so
// answers are parsed or matched loosely, never compared as text.

func reasonRE(code string) *regexp.Regexp {
	return regexp.MustCompile(`"reason":\s+"` + code + `"`)
}

// field returns one top-level field of a JSON answer.
func field(t *testing.T, out, name string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Errorf("answer is not one JSON object: %v\n%s", err, out)
	}
	return m[name]
}

// TestGRPCurl drives the gRPC API of the real binary with grpcurl: the
// services are listed and described by reflection, health reports
// SERVING, and a login, an authenticated call, an admin call and a
// failing call behave as the contract says.
func TestGRPCurl(t *testing.T) {
	dir := newInstance(t)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)

	out, err := grpcurl(t, s, "list")
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	for _, svc := range []string{"mcias.v1.AdminService", "mcias.v1.AuthService", "mcias.v1.TokenService",
		"mcias.v1.AccountService", "mcias.v1.CredentialService", "mcias.v1.AuditService", "grpc.health.v1.Health"} {
		if !strings.Contains(out, svc+"\n") {
			t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
		}
	}
	if out, err := grpcurl(t, s, "describe", "mcias.v1.AuthService"); err != nil || !strings.Contains(out, "rpc Login ( .mcias.v1.LoginRequest )") {
		t.Errorf("describe AuthService: %v\n%s", err, out)
	}
	if out, err := grpcurl(t, s, "grpc.health.v1.Health/Check"); err != nil || field(t, out, "status") != "SERVING" {
		t.Errorf("health check: %v\n%s", err, out)
	}

	out, err = grpcurl(t, s, "-d", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword), "mcias.v1.AuthService/Login")
	if err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	var login struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expiresAt"`
	}
	if err := json.Unmarshal([]byte(out), &login); err != nil || login.Token == "" || login.ExpiresAt == "" {
		t.Fatalf("login answer %q: %v", out, err)
	}
	auth := "authorization: Bearer " + login.Token

	if out, err := grpcurl(t, s, "-H", auth, "mcias.v1.AuthService/Me"); err != nil || field(t, out, "username") != "admin" {
		t.Errorf("Me: %v\n%s", err, out)
	}
	out, err = grpcurl(t, s, "-H", auth, "-d", `{"username":"deploy","account_type":"system"}`, "mcias.v1.AccountService/Create")
	if err != nil || field(t, out, "accountType") != "system" {
		t.Fatalf("Create: %v\n%s", err, out)
	}
	if out, err := grpcurl(t, s, "-H", auth, "-d", `{"type":"system"}`, "mcias.v1.AccountService/List"); err != nil || !regexp.MustCompile(`"username":\s+"deploy"`).MatchString(out) {
		t.Errorf("List: %v\n%s", err, out)
	}
	if out, err := grpcurl(t, s, "-d", fmt.Sprintf(`{"token":%q}`, login.Token), "mcias.v1.TokenService/ValidateToken"); err != nil || field(t, out, "valid") != true {
		t.Errorf("ValidateToken: %v\n%s", err, out)
	}
	if out, err := grpcurl(t, s, "-H", auth, "-d", `{"type":"account_create"}`, "mcias.v1.AuditService/ListEvents"); err != nil || !regexp.MustCompile(`"type":\s+"account_create"`).MatchString(out) {
		t.Errorf("ListEvents: %v\n%s", err, out)
	}

	// Failures: a status code, a sentence, and the contract code as the
	// ErrorInfo reason.
	out, err = grpcurl(t, s, "-d", `{"username":"admin","password":"wrong password"}`, "mcias.v1.AuthService/Login")
	if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(out, "Code: Unauthenticated") || !reasonRE("invalid_credentials").MatchString(out) {
		t.Errorf("wrong password: %v\n%s", err, out)
	}
	out, err = grpcurl(t, s, "mcias.v1.AccountService/List")
	if _, ok := err.(*exec.ExitError); !ok || !reasonRE("unauthorized").MatchString(out) {
		t.Errorf("List without token: %v\n%s", err, out)
	}

	logs := s.log.String()
	if !strings.Contains(logs, "method=/mcias.v1.AuthService/Login") {
		t.Errorf("the server did not log the gRPC calls:\n%s", logs)
	}
	if strings.Contains(logs, adminPassword) || strings.Contains(logs, login.Token) {
		t.Error("a password or token reached the server log")
	}
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: unclean exit: %v\n%s", err, s.log.String())
	}
}

// TestSharedLoginLimit: REST and gRPC draw on one per-IP budget of
// password checks, so a second transport is no way around the limit.
func TestSharedLoginLimit(t *testing.T) {
	dir := newInstance(t)
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(raw, "\n[login]\nrate_per_minute = 1\nburst = 2\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	for i := range 2 {
		if st, body := post(t, c, "https://"+s.addr+"/v1/auth/login", "", `{"username":"admin","password":"wrong password"}`); st != 401 {
			t.Fatalf("REST attempt %d: %d %v", i+1, st, body)
		}
	}
	out, err := grpcurl(t, s, "-d", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword), "mcias.v1.AuthService/Login")
	if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(out, "Code: ResourceExhausted") || !reasonRE("rate_limited").MatchString(out) {
		t.Fatalf("gRPC login after the REST budget was spent: %v\n%s", err, out)
	}
	if st, body := post(t, c, "https://"+s.addr+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword)); st != 429 {
		t.Errorf("REST login after the budget was spent: %d %v", st, body)
	}
}
