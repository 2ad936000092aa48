package core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// TestPasswordControlCharacters: a password holding NUL or another control
// character is refused wherever one is set, and a login with one fails
// like any wrong password.
func TestPasswordControlCharacters(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const okPW = "alice password 1"
	alice := e.user("alice", okPW)
	self := e.caller(e.login("alice", okPW))
	bad := map[string]string{
		"case=twelve NULs":     strings.Repeat("\x00", 12),
		"case=NUL inside":      "alice pass\x00word 2",
		"case=newline":         "alice password\n2",
		"case=tab":             "alice\tpassword 2",
		"case=escape":          "alice password \x1b[2J",
		"case=DEL":             "alice password \x7f2",
		"case=C1 control char": "alice password \u00852",
	}
	for name, pw := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := e.svc.CreateAccount(ctx, e.admin, core.NewAccount{Username: "bob", Type: storage.Human, Password: pw})
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "control characters") {
				t.Errorf("create: err = %v, want invalid argument naming control characters", err)
			}
			if err := e.svc.SetPassword(ctx, e.admin, alice.ID, pw); !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("set: err = %v, want invalid argument", err)
			}
			if err := e.svc.ChangePassword(ctx, self, okPW, pw); !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("change: err = %v, want invalid argument", err)
			}
			if _, err := e.svc.Login(ctx, core.Caller{}, "alice", pw, ""); !errors.Is(err, core.ErrInvalidCredentials) {
				t.Errorf("login: err = %v, want invalid credentials", err)
			}
		})
	}
	// Nothing changed: the old password still logs in, and every refused
	// login left a failure event with its reason.
	e.login("alice", okPW)
	n := 0
	for _, ev := range e.events() {
		if ev.Type == audit.LoginFailure && ev.Details["reason"] == "password_control_characters" {
			n++
		}
	}
	if n != len(bad) {
		t.Fatalf("%d login failure events with reason password_control_characters, want %d", n, len(bad))
	}
	// Spaces and non-ASCII letters are not control characters.
	if err := e.svc.SetPassword(ctx, e.admin, alice.ID, "  pässwörd mit Leerzeichen  "); err != nil {
		t.Fatalf("a password with spaces and umlauts: %v", err)
	}
}

// TestIDsAnyCase: account ids and jtis are UUIDs, which compare without
// regard to case; an upper-cased one names the same account or token.
func TestIDsAnyCase(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	app := e.user("app", "")
	human := e.user("alice", "alice password 1")
	up := strings.ToUpper(app.ID)
	if up == app.ID {
		t.Fatal("test needs an id with letters")
	}

	if got, err := e.svc.GetAccount(ctx, e.admin, up); err != nil || got.ID != app.ID {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if got, err := e.svc.SetRoles(ctx, e.admin, up, []string{"ops"}); err != nil || len(got) != 1 {
		t.Fatalf("set roles: %v, %v", got, err)
	}
	if got, err := e.svc.GetRoles(ctx, e.admin, up); err != nil || len(got) != 1 || got[0] != "ops" {
		t.Fatalf("get roles: %v, %v", got, err)
	}
	pc := core.PGCreds{Host: "db", Port: 5432, Database: "app", Username: "app", Password: "pg-secret"}
	if err := e.svc.SetPGCreds(ctx, e.admin, up, pc); err != nil {
		t.Fatalf("set pgcreds: %v", err)
	}
	// Read back under the lowercase id: sealed for the canonical id.
	if got, err := e.svc.GetPGCreds(ctx, e.admin, app.ID); err != nil || got != pc {
		t.Fatalf("get pgcreds: %+v, %v", got, err)
	}
	if got, err := e.svc.GetPGCreds(ctx, e.admin, up); err != nil || got != pc {
		t.Fatalf("get pgcreds upper-case: %+v, %v", got, err)
	}
	it, err := e.svc.IssueServiceToken(ctx, e.admin, up, time.Hour, "")
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	v, err := e.svc.Validate(ctx, it.Token, "")
	if err != nil || !v.Valid {
		t.Fatalf("validate: %+v, %v", v, err)
	}
	if err := e.svc.RevokeToken(ctx, e.admin, strings.ToUpper(v.JTI)); err != nil {
		t.Fatalf("revoke upper-case jti: %v", err)
	}
	if e.valid(it.Token, "") {
		t.Fatal("token valid after revoking it by its upper-case jti")
	}
	page, err := e.svc.ListAudit(ctx, e.admin, core.AuditQuery{AccountID: up})
	if err != nil || len(page.Events) == 0 {
		t.Fatalf("audit by upper-case account id: %d events, %v", len(page.Events), err)
	}
	if err := e.svc.SetPassword(ctx, e.admin, strings.ToUpper(human.ID), "alice password 2"); err != nil {
		t.Fatalf("set password: %v", err)
	}
	e.login("alice", "alice password 2")
	if err := e.svc.RemoveTOTP(ctx, e.admin, strings.ToUpper(human.ID)); err != nil {
		t.Fatalf("remove totp: %v", err)
	}
	st := storage.Inactive
	if got, err := e.svc.UpdateAccount(ctx, e.admin, up, core.AccountUpdate{Status: &st}); err != nil || got.Status != st {
		t.Fatalf("update: %+v, %v", got, err)
	}
	if err := e.svc.DeleteAccount(ctx, e.admin, up); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// Other spellings that uuid.Parse would take are still not ids.
	for _, id := range []string{"{" + app.ID + "}", "urn:uuid:" + app.ID, strings.ReplaceAll(app.ID, "-", "")} {
		if _, err := e.svc.GetAccount(ctx, e.admin, id); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("get %q: err = %v, want not found", id, err)
		}
	}
}
