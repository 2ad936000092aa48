package core_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditfile "github.com/metacircular/mcias/backends/audit/file"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/totp"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

func TestCreateAccount(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.user("alice", "alice password 1")
	tests := []struct {
		name    string
		na      core.NewAccount
		wantErr error
	}{
		{"human", core.NewAccount{Username: "Bob", Type: storage.Human, Password: "bob password 12"}, nil},
		{"system without password", core.NewAccount{Username: "ci-bot", Type: storage.System}, nil},
		{"human without password", core.NewAccount{Username: "carol", Type: storage.Human}, sdk.ErrInvalidArgument},
		{"short password", core.NewAccount{Username: "dave", Type: storage.Human, Password: "short"}, sdk.ErrInvalidArgument},
		{"bad type", core.NewAccount{Username: "erin", Type: "robot", Password: "erin password 1"}, sdk.ErrInvalidArgument},
		{"bad username", core.NewAccount{Username: "no spaces", Type: storage.System}, sdk.ErrInvalidArgument},
		{"taken", core.NewAccount{Username: "alice", Type: storage.System}, sdk.ErrConflict},
		{"taken in another case", core.NewAccount{Username: "ALICE", Type: storage.System}, sdk.ErrConflict},
		{"look-alike", core.NewAccount{Username: "a1ice", Type: storage.System}, sdk.ErrConflict},
	}
	for _, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			a, err := e.svc.CreateAccount(ctx, e.admin, tc.na)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (a.Status != storage.Active || a.ID == "" || a.Roles == nil || a.Username != strings.ToLower(tc.na.Username)) {
				t.Fatalf("account = %+v", a)
			}
		})
	}
	// A deleted account frees its name for a new account with a new id.
	old := e.user("frank", "frank password 1")
	if err := e.svc.DeleteAccount(ctx, e.admin, old.ID); err != nil {
		t.Fatal(err)
	}
	again := e.user("frank", "frank password 2")
	if again.ID == old.ID {
		t.Fatal("id reused")
	}
	got, err := e.svc.GetAccount(ctx, e.admin, old.ID)
	if err != nil || got.Status != storage.Deleted {
		t.Fatalf("deleted account = %+v, %v", got, err)
	}
	if err := e.svc.DeleteAccount(ctx, e.admin, old.ID); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestLastAdmin(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	adminID := e.admin.Principal.AccountID
	inactive := storage.Inactive

	guarded := []struct {
		name string
		act  func() error
	}{
		{"disable", func() error {
			_, err := e.svc.UpdateAccount(ctx, e.admin, adminID, core.AccountUpdate{Status: &inactive})
			return err
		}},
		{"delete", func() error { return e.svc.DeleteAccount(ctx, e.admin, adminID) }},
		{"demote", func() error {
			_, err := e.svc.SetRoles(ctx, e.admin, adminID, []string{"ops"})
			return err
		}},
	}
	for _, tc := range guarded {
		t.Run("case=last admin "+tc.name, func(t *testing.T) {
			err := tc.act()
			if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "last active admin") {
				t.Fatalf("err = %v, want conflict about the last admin", err)
			}
			if !e.valid(e.login(adminName, adminPW), "") {
				t.Fatal("admin no longer works")
			}
		})
	}

	// With a second admin each act is allowed once.
	second := e.user("second", "second password", core.RoleAdmin)
	if _, err := e.svc.SetRoles(ctx, e.admin, second.ID, []string{"ops"}); err != nil {
		t.Fatalf("demote a non-last admin: %v", err)
	}
	roles, err := e.svc.GetRoles(ctx, e.admin, second.ID)
	if err != nil || len(roles) != 1 || roles[0] != "ops" {
		t.Fatalf("roles = %v, %v", roles, err)
	}
	if _, err := e.svc.SetRoles(ctx, e.admin, second.ID, []string{"admin", "ops", "admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateAccount(ctx, e.admin, adminID, core.AccountUpdate{Status: &inactive}); err != nil {
		t.Fatalf("disable one of two admins: %v", err)
	}
	sc := e.caller(e.login("second", "second password"))
	if err := e.svc.DeleteAccount(ctx, sc, second.ID); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("delete the last active admin (the other is inactive): %v", err)
	}
	if _, err := e.svc.SetRoles(ctx, sc, second.ID, []string{"Bad Role"}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("bad role: %v", err)
	}
}

func TestAdminOnly(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a := e.user("alice", "alice password 1", "ops")
	user := e.caller(e.login("alice", "alice password 1"))
	id := e.admin.Principal.AccountID
	active := storage.Active
	acts := map[string]func(c core.Caller) error{
		"ListAccounts": func(c core.Caller) error { _, err := e.svc.ListAccounts(ctx, c, core.AccountQuery{}); return err },
		"CreateAccount": func(c core.Caller) error {
			_, err := e.svc.CreateAccount(ctx, c, core.NewAccount{Username: "x", Type: storage.System})
			return err
		},
		"GetAccount": func(c core.Caller) error { _, err := e.svc.GetAccount(ctx, c, id); return err },
		"UpdateAccount": func(c core.Caller) error {
			_, err := e.svc.UpdateAccount(ctx, c, a.ID, core.AccountUpdate{Status: &active})
			return err
		},
		"DeleteAccount": func(c core.Caller) error { return e.svc.DeleteAccount(ctx, c, id) },
		"SetPassword":   func(c core.Caller) error { return e.svc.SetPassword(ctx, c, id, "stolen password!") },
		"GetRoles":      func(c core.Caller) error { _, err := e.svc.GetRoles(ctx, c, id); return err },
		"SetRoles": func(c core.Caller) error {
			_, err := e.svc.SetRoles(ctx, c, a.ID, []string{"admin"})
			return err
		},
		"RemoveTOTP": func(c core.Caller) error { return e.svc.RemoveTOTP(ctx, c, id) },
		"IssueServiceToken": func(c core.Caller) error {
			_, err := e.svc.IssueServiceToken(ctx, c, id, 0, "")
			return err
		},
		"RevokeToken": func(c core.Caller) error { return e.svc.RevokeToken(ctx, c, e.admin.Principal.JTI) },
		"GetPGCreds":  func(c core.Caller) error { _, err := e.svc.GetPGCreds(ctx, c, id); return err },
		"SetPGCreds": func(c core.Caller) error {
			return e.svc.SetPGCreds(ctx, c, id, core.PGCreds{Host: "h", Port: 5432, Database: "d", Username: "u", Password: "p"})
		},
		"ListAudit": func(c core.Caller) error { _, err := e.svc.ListAudit(ctx, c, core.AuditQuery{}); return err },
	}
	before := len(e.events())
	for name, act := range acts {
		t.Run("case="+name+" as user", func(t *testing.T) {
			if err := act(user); !errors.Is(err, core.ErrForbidden) {
				t.Fatalf("err = %v, want forbidden", err)
			}
		})
		t.Run("case="+name+" anonymous", func(t *testing.T) {
			if err := act(core.Caller{}); !errors.Is(err, core.ErrUnauthorized) {
				t.Fatalf("err = %v, want unauthorized", err)
			}
		})
	}
	if after := len(e.events()); after != before {
		t.Fatalf("refused acts changed the audit log: %d -> %d events", before, after)
	}
	if !e.valid(e.login(adminName, adminPW), "") {
		t.Fatal("admin harmed")
	}
	// Roles are read live: a demoted admin loses admin at once.
	b := e.user("bea", "bea password 12", core.RoleAdmin)
	btok := e.login("bea", "bea password 12")
	if _, err := e.svc.SetRoles(ctx, e.admin, b.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ListAccounts(ctx, e.caller(btok), core.AccountQuery{}); !errors.Is(err, core.ErrForbidden) {
		t.Fatalf("demoted admin: %v", err)
	}
}

func TestPGCreds(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a := e.user("app", "")
	const secret = "pg-Secret-Value-42"
	if _, err := e.svc.GetPGCreds(ctx, e.admin, a.ID); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("get before set: %v", err)
	}
	bad := []core.PGCreds{
		{Host: "", Port: 5432, Database: "d", Username: "u", Password: "p"},
		{Host: "h", Port: 0, Database: "d", Username: "u", Password: "p"},
		{Host: "h", Port: 70000, Database: "d", Username: "u", Password: "p"},
		{Host: "h", Port: 5432, Database: "d", Username: "u", Password: ""},
		{Host: "h\n", Port: 5432, Database: "d", Username: "u", Password: "p"},
	}
	for _, pc := range bad {
		if err := e.svc.SetPGCreds(ctx, e.admin, a.ID, pc); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("set %+v: %v", pc, err)
		}
	}
	for i, pw := range []string{secret, secret + "-rotated"} {
		want := core.PGCreds{Host: "db.internal", Port: 5432 + i, Database: "app", Username: "app_rw", Password: pw}
		if err := e.svc.SetPGCreds(ctx, e.admin, a.ID, want); err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.GetPGCreds(ctx, e.admin, a.ID)
		if err != nil || got != want {
			t.Fatalf("round trip = %+v, %v; want %+v", got, err, want)
		}
		raw, err := e.store.Store.Credentials().GetPGCreds(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw.Password, []byte(pw)) || len(raw.Password) < len(pw)+16 {
			t.Fatalf("stored password is not sealed: %q", raw.Password)
		}
		// Sealed for this account only: the aad binds the owner.
		if _, err := e.cust.Decrypt(ctx, raw.Password, []byte("mcias:pgcreds:"+e.admin.Principal.AccountID)); err == nil {
			t.Fatal("sealed password opens under another account's aad")
		}
	}
	if err := e.svc.SetPGCreds(ctx, e.admin, "8b7f2d4e-1111-4222-8333-444455556666",
		core.PGCreds{Host: "h", Port: 1, Database: "d", Username: "u", Password: "p"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("set for unknown account: %v", err)
	}
	n := map[audit.Type]int{}
	for _, ev := range e.events() {
		n[ev.Type]++
		if strings.Contains(eventText(ev), secret) {
			t.Fatalf("event leaks the pg password: %s", eventText(ev))
		}
	}
	if n[audit.PGCredsRead] != 2 || n[audit.PGCredsWrite] != 2 {
		t.Fatalf("pgcreds events = %v", n)
	}
}

// TestAuditTrail runs every act once and checks each left its event,
// attributed, and that no secret reached the log or the sink.
func TestAuditTrail(t *testing.T) {
	sinkPath := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := auditfile.Open(t.Context(), "file://"+sinkPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	e := newEnv(t, core.SinkConfig{Sink: sink})
	ctx := t.Context()
	secrets := []string{adminPW}
	const alicePW, alicePW2, sysPW = "alice password 1", "alice password 2", "system password"
	secrets = append(secrets, alicePW, alicePW2, sysPW)

	alice := e.user("alice", alicePW)
	bot := e.user("bot", "")
	if _, err := e.svc.Login(ctx, core.Caller{}, "alice", "wrong password!", ""); !errors.Is(err, core.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	atok := e.login("alice", alicePW)
	secrets = append(secrets, atok)
	ac := e.caller(atok)
	en, err := e.svc.EnrollTOTP(ctx, ac)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, en.Secret)
	raw, _ := b32.DecodeString(en.Secret)
	if err := e.svc.ConfirmTOTP(ctx, ac, totp.Code(raw, totp.Step(e.clk.Now()))); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	if _, err := e.svc.Login(ctx, core.Caller{}, "alice", alicePW, totp.Code(raw, totp.Step(e.clk.Now()))); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ChangePassword(ctx, ac, alicePW, alicePW2); err != nil {
		t.Fatal(err)
	}
	rn, err := e.svc.Renew(ctx, ac)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, rn.Token)
	if err := e.svc.Logout(ctx, e.caller(rn.Token)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPassword(ctx, e.admin, bot.ID, sysPW); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetRoles(ctx, e.admin, bot.ID, []string{"deployer"}); err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.IssueServiceToken(ctx, e.admin, bot.ID, time.Hour, "ci")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, st.Token)
	if err := e.svc.RevokeToken(ctx, e.admin, st.JTI); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RemoveTOTP(ctx, e.admin, alice.ID); err != nil {
		t.Fatal(err)
	}
	inactive := storage.Inactive
	if _, err := e.svc.UpdateAccount(ctx, e.admin, alice.ID, core.AccountUpdate{Status: &inactive}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPGCreds(ctx, e.admin, bot.ID, core.PGCreds{Host: "h", Port: 5432, Database: "d", Username: "u", Password: "pg secret 77"}); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, "pg secret 77")
	if _, err := e.svc.GetPGCreds(ctx, e.admin, bot.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteAccount(ctx, e.admin, alice.ID); err != nil {
		t.Fatal(err)
	}

	evs := e.events()
	seen := map[audit.Type]int{}
	for _, ev := range evs {
		seen[ev.Type]++
		if ev.ID == "" || ev.Time.IsZero() || ev.Outcome == "" {
			t.Fatalf("incomplete event %+v", ev)
		}
		txt := eventText(ev)
		for _, s := range secrets {
			if strings.Contains(txt, s) {
				t.Fatalf("event %s leaks a secret: %s", ev.Type, txt)
			}
		}
	}
	for _, typ := range []audit.Type{
		audit.LoginSuccess, audit.LoginFailure, audit.Logout, audit.TokenRenew, audit.TokenIssue,
		audit.TokenRevoke, audit.AccountCreate, audit.AccountUpdate, audit.AccountDelete,
		audit.PasswordChange, audit.RoleChange, audit.TOTPEnroll, audit.TOTPConfirm, audit.TOTPRemove,
		audit.PGCredsRead, audit.PGCredsWrite,
	} {
		if seen[typ] == 0 {
			t.Errorf("no %s event", typ)
		}
	}
	// Admin acts name the admin as actor and come with the request data.
	for _, ev := range evs {
		if ev.Type == audit.RoleChange && ev.AccountID == bot.ID {
			if ev.ActorID != e.admin.Principal.AccountID || ev.RequestID != e.admin.RequestID || ev.IP != e.admin.IP {
				t.Fatalf("role change event = %+v", ev)
			}
		}
	}

	// ListAudit pages newest first and filters.
	page, err := e.svc.ListAudit(ctx, e.admin, core.AuditQuery{Limit: 3})
	if err != nil || len(page.Events) != 3 || page.NextCursor == "" {
		t.Fatalf("first page: %d events, cursor %q, %v", len(page.Events), page.NextCursor, err)
	}
	var all []audit.Event
	all = append(all, page.Events...)
	for page.NextCursor != "" {
		if page, err = e.svc.ListAudit(ctx, e.admin, core.AuditQuery{Limit: 3, Cursor: page.NextCursor}); err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Events...)
	}
	if len(all) != len(evs) || all[0].Seq != evs[len(evs)-1].Seq {
		t.Fatalf("paged %d events, stored %d", len(all), len(evs))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq >= all[i-1].Seq {
			t.Fatal("audit page not newest first")
		}
	}
	f, err := e.svc.ListAudit(ctx, e.admin, core.AuditQuery{Type: audit.PGCredsRead})
	if err != nil || len(f.Events) != 1 {
		t.Fatalf("filter by type: %v %v", f.Events, err)
	}
	for _, q := range []core.AuditQuery{{Limit: 501}, {Limit: -1}, {Cursor: "!!"}} {
		if _, err := e.svc.ListAudit(ctx, e.admin, q); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("query %+v: %v", q, err)
		}
	}

	// The sink gets every event, in storage order, without secrets.
	var lines []auditfile.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(lines) < len(evs) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		lines = readSink(t, sinkPath)
	}
	// A sink new to storage starts at the beginning of the log.
	lines = readSink(t, sinkPath)
	if len(lines) != len(evs) {
		t.Fatalf("sink holds %d events, storage %d", len(lines), len(evs))
	}
	for i, l := range lines {
		if l.ID != evs[i].ID {
			t.Fatalf("sink line %d is %s, want %s", i, l.ID, evs[i].ID)
		}
	}
	data, _ := os.ReadFile(sinkPath)
	for _, s := range secrets {
		if bytes.Contains(data, []byte(s)) {
			t.Fatal("sink file holds a secret")
		}
	}
	r := e.svc.Ready(ctx)
	if !r.Ready || !r.Backends["audit:file"].Up || r.Backends["storage"].Name != "sqlite" {
		t.Fatalf("readiness = %+v", r)
	}
}

func readSink(t testing.TB, path string) []auditfile.Record {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditfile.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditfile.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("sink line: %v", err)
		}
		out = append(out, r)
	}
	return out
}

func TestListAccounts(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, n := range []string{"u1", "u2", "u3", "u4"} {
		e.clk.Advance(time.Second) // pages are in creation order
		e.user(n, "user password 12", "ops")
	}
	bot := e.user("bot", "")
	if err := e.svc.DeleteAccount(ctx, e.admin, bot.ID); err != nil {
		t.Fatal(err)
	}
	var names []string
	q := core.AccountQuery{Limit: 2}
	for {
		p, err := e.svc.ListAccounts(ctx, e.admin, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p.Accounts {
			names = append(names, a.Username)
		}
		if p.NextCursor == "" {
			break
		}
		q.Cursor = p.NextCursor
	}
	if strings.Join(names, ",") != "root,u1,u2,u3,u4" {
		t.Fatalf("accounts = %v", names)
	}
	tests := []struct {
		q       core.AccountQuery
		want    int
		wantErr error
	}{
		{core.AccountQuery{Role: "ops"}, 4, nil},
		{core.AccountQuery{Status: storage.Deleted}, 1, nil},
		{core.AccountQuery{Type: storage.System, Status: storage.Deleted}, 1, nil},
		{core.AccountQuery{Type: storage.System}, 0, nil},
		{core.AccountQuery{Type: "robot"}, 0, sdk.ErrInvalidArgument},
		{core.AccountQuery{Status: "gone"}, 0, sdk.ErrInvalidArgument},
		{core.AccountQuery{Limit: 501}, 0, sdk.ErrInvalidArgument},
		{core.AccountQuery{Cursor: "%%%"}, 0, sdk.ErrInvalidArgument},
	}
	for _, tc := range tests {
		p, err := e.svc.ListAccounts(ctx, e.admin, tc.q)
		if !errors.Is(err, tc.wantErr) || (err == nil && len(p.Accounts) != tc.want) {
			t.Fatalf("query %+v: %d accounts, err %v", tc.q, len(p.Accounts), err)
		}
	}
}

// TestValidateOffStorage: once a token has been seen, validating it again
// makes no storage call at all; neither does a token this process issued.
func TestValidateOffStorage(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.user("alice", "alice password 1")
	tok := e.login("alice", "alice password 1")

	check := func(svc *core.Service) {
		t.Helper()
		before := e.store.n.Load()
		for range 100 {
			v, err := svc.Validate(ctx, tok, "")
			if err != nil || !v.Valid {
				t.Fatalf("validate: %v %v", v.Valid, err)
			}
			if _, err := svc.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if v, _ := svc.Validate(ctx, "bogus.token.here", ""); v.Valid {
				t.Fatal("bogus token valid")
			}
		}
		if n := e.store.n.Load() - before; n != 0 {
			t.Fatalf("validate made %d storage calls", n)
		}
	}
	check(e.svc)
	// After a restart, the first sight of the account costs one read;
	// then nothing.
	fresh := e.open()
	if v, err := fresh.Validate(ctx, tok, ""); err != nil || !v.Valid {
		t.Fatalf("after restart: %v %v", v.Valid, err)
	}
	check(fresh)
}

func TestReadyAndKeys(t *testing.T) {
	e := newEnv(t)
	r := e.svc.Ready(t.Context())
	if !r.Ready || r.Backends["storage"].Name != "sqlite" || !r.Backends["custody"].Up {
		t.Fatalf("ready = %+v", r)
	}
	k, err := e.svc.ActiveKey(t.Context())
	if err != nil || len(k.Key) != 32 || k.Alg != "EdDSA" {
		t.Fatalf("active key = %+v %v", k, err)
	}
	if _, err := core.New(t.Context(), core.Config{}, e.deps); err == nil {
		t.Fatal("New without issuer succeeded")
	}
	weak := e.cfg
	weak.Password.MemoryKiB = 1024
	if _, err := core.New(t.Context(), weak, e.deps); err == nil {
		t.Fatal("New with weak password params succeeded")
	}
}
