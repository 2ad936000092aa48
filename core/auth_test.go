package core_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/totp"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

func TestBootstrap(t *testing.T) {
	e := newEnv(t)
	created, err := e.svc.Bootstrap(t.Context(), "other", adminPW)
	if err != nil || created {
		t.Fatalf("second bootstrap: created=%v err=%v, want false, nil", created, err)
	}
	me, err := e.svc.Me(t.Context(), e.admin)
	if err != nil {
		t.Fatal(err)
	}
	if me.Username != adminName || !e.admin.Principal.IsAdmin() || me.Type != storage.Human {
		t.Fatalf("bootstrapped account = %+v", me)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	const pw = "alice password 1"
	alice := e.user("alice", pw)
	inactive := storage.Inactive
	bob := e.user("bob", "bob password 12")
	if _, err := e.svc.UpdateAccount(t.Context(), e.admin, bob.ID, core.AccountUpdate{Status: &inactive}); err != nil {
		t.Fatal(err)
	}
	carol := e.user("carol", "carol password 1")
	if err := e.svc.DeleteAccount(t.Context(), e.admin, carol.ID); err != nil {
		t.Fatal(err)
	}
	e.user("svc-nopw", "")

	tests := []struct {
		name, user, pw string
		wantErr        error
	}{
		{"success", "alice", pw, nil},
		{"success with other case", "ALICE", pw, nil},
		{"unknown user", "mallory", pw, core.ErrInvalidCredentials},
		{"malformed username", "!!", pw, core.ErrInvalidCredentials},
		{"wrong password", "alice", pw + "x", core.ErrInvalidCredentials},
		{"empty password", "alice", "", core.ErrInvalidCredentials},
		{"inactive with right password", "bob", "bob password 12", core.ErrInvalidCredentials},
		{"deleted with right password", "carol", "carol password 1", core.ErrInvalidCredentials},
		{"system account without password", "svc-nopw", "", core.ErrInvalidCredentials},
		{"huge password", "alice", strings.Repeat("x", 1<<20), core.ErrInvalidCredentials},
	}
	var msgs []string
	for _, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			it, err := e.svc.Login(t.Context(), core.Caller{IP: "198.51.100.7"}, tc.user, tc.pw, "")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				var ce *core.Error
				if !errors.As(err, &ce) {
					t.Fatalf("err %v is not a client-safe *core.Error", err)
				}
				msgs = append(msgs, err.Error())
				return
			}
			if !e.valid(it.Token, "") {
				t.Fatal("fresh token is not valid")
			}
			if got := it.ExpiresAt.Sub(e.clk.Now()); got != time.Hour {
				t.Fatalf("session ttl = %s, want 1h", got)
			}
			_ = alice
		})
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Fatalf("failure messages differ: %q vs %q", m, msgs[0])
		}
	}
	for _, ev := range e.events() {
		txt := eventText(ev)
		if strings.Contains(txt, pw) || strings.Contains(txt, "mallory") {
			t.Fatalf("event leaks a secret or an unknown username: %s", txt)
		}
	}
}

// totpEnv enrolls alice in TOTP and returns her secret.
func totpEnv(t *testing.T) (*env, []byte) {
	e := newEnv(t)
	e.user("alice", "alice password 1")
	alice := e.caller(e.login("alice", "alice password 1"))
	en, err := e.svc.EnrollTOTP(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := b32.DecodeString(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(en.OTPAuthURI, "otpauth://totp/") {
		t.Fatalf("uri = %q", en.OTPAuthURI)
	}
	if _, err := e.svc.EnrollTOTP(t.Context(), alice); err != nil {
		// A pending enrollment may be restarted; the first secret dies.
		t.Fatalf("re-enroll while pending: %v", err)
	}
	if err := e.svc.ConfirmTOTP(t.Context(), alice, totp.Code(secret, totp.Step(e.clk.Now()))); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("confirm with the replaced secret: err = %v, want invalid argument", err)
	}
	en, err = e.svc.EnrollTOTP(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if secret, err = b32.DecodeString(en.Secret); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ConfirmTOTP(t.Context(), alice, totp.Code(secret, totp.Step(e.clk.Now()))); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if _, err := e.svc.EnrollTOTP(t.Context(), alice); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("enroll while enabled: err = %v, want conflict", err)
	}
	// The confirming code's step is used; move on so the login tests
	// start from a fresh step.
	e.clk.Advance(3 * totp.Period)
	return e, secret
}

func TestLoginTOTP(t *testing.T) {
	e, secret := totpEnv(t)
	ctx := t.Context()
	login := func(code string) error {
		_, err := e.svc.Login(ctx, core.Caller{}, "alice", "alice password 1", code)
		return err
	}
	now := totp.Step(e.clk.Now())
	steps := []struct {
		name    string
		pw      string
		code    string
		wantErr error
	}{
		{"code missing", "alice password 1", "", core.ErrTOTPRequired},
		{"code missing and wrong password", "wrong password!", "", core.ErrInvalidCredentials},
		{"wrong code", "alice password 1", "000000x", core.ErrInvalidCredentials},
		{"two steps back", "alice password 1", totp.Code(secret, now-2), core.ErrInvalidCredentials},
		{"two steps ahead", "alice password 1", totp.Code(secret, now+2), core.ErrInvalidCredentials},
		{"right code, wrong password", "wrong password!", totp.Code(secret, now), core.ErrInvalidCredentials},
		{"one step back", "alice password 1", totp.Code(secret, now-1), nil},
		{"replay of that step", "alice password 1", totp.Code(secret, now-1), core.ErrInvalidCredentials},
		{"current step", "alice password 1", totp.Code(secret, now), nil},
		{"replay of the current step", "alice password 1", totp.Code(secret, now), core.ErrInvalidCredentials},
		{"earlier step after a later one", "alice password 1", totp.Code(secret, now-1), core.ErrInvalidCredentials},
		{"one step ahead", "alice password 1", totp.Code(secret, now+1), nil},
	}
	// Sequential on purpose: each case depends on the step the previous
	// ones consumed.
	for _, tc := range steps {
		_, err := e.svc.Login(ctx, core.Caller{}, "alice", tc.pw, tc.code)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("case=%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}

	t.Run("case=concurrent replay", func(t *testing.T) {
		e.clk.Advance(5 * totp.Period)
		code := totp.Code(secret, totp.Step(e.clk.Now()))
		const n = 4
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = login(code) })
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, core.ErrInvalidCredentials):
				t.Fatalf("loser err = %v, want invalid credentials", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d logins won with one code, want exactly 1", wins)
		}
	})

	t.Run("case=removed by admin", func(t *testing.T) {
		acct, err := e.svc.ListAccounts(ctx, e.admin, core.AccountQuery{})
		if err != nil {
			t.Fatal(err)
		}
		var id string
		for _, a := range acct.Accounts {
			if a.Username == "alice" {
				id = a.ID
				if !a.TOTPEnabled {
					t.Fatal("alice shows totp disabled")
				}
			}
		}
		if err := e.svc.RemoveTOTP(ctx, e.admin, id); err != nil {
			t.Fatal(err)
		}
		if err := login(""); err != nil {
			t.Fatalf("login after totp removal: %v", err)
		}
	})

	for _, ev := range e.events() {
		if strings.Contains(eventText(ev), b32.EncodeToString(secret)) {
			t.Fatalf("event leaks the TOTP secret: %s", eventText(ev))
		}
	}
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const oldPW, newPW = "alice password 1", "alice password 2"
	e.user("alice", oldPW)
	tokA := e.login("alice", oldPW)
	tokB := e.login("alice", oldPW)
	callerA := e.caller(tokA)

	tests := []struct {
		name, cur, next string
		wantErr         error
	}{
		{"wrong current", "nope nope nope", newPW, core.ErrInvalidCredentials},
		{"too short", oldPW, "short", sdk.ErrInvalidArgument},
		{"too long", oldPW, strings.Repeat("p", core.MaxPasswordBytes+1), sdk.ErrInvalidArgument},
		{"ok", oldPW, newPW, nil},
	}
	for _, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			err := e.svc.ChangePassword(ctx, callerA, tc.cur, tc.next)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if !e.valid(tokA, "") {
		t.Fatal("the caller's own token died")
	}
	if e.valid(tokB, "") {
		t.Fatal("another token survived the password change")
	}
	if _, err := e.svc.Login(ctx, core.Caller{}, "alice", oldPW, ""); !errors.Is(err, core.ErrInvalidCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
	e.login("alice", newPW)
	// Restart: the revocation is durable.
	e.svc = e.open()
	if e.valid(tokB, "") || !e.valid(tokA, "") {
		t.Fatal("after restart: revoked token valid or kept token dead")
	}
	for _, ev := range e.events() {
		if txt := eventText(ev); strings.Contains(txt, oldPW) || strings.Contains(txt, newPW) {
			t.Fatalf("event leaks a password: %s", txt)
		}
	}
}

func TestLogoutRenew(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.user("alice", "alice password 1")
	tok := e.login("alice", "alice password 1")
	c := e.caller(tok)

	e.clk.Advance(10 * time.Minute)
	it, err := e.svc.Renew(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if e.valid(tok, "") {
		t.Fatal("renewed token is still valid")
	}
	if !e.valid(it.Token, "") {
		t.Fatal("new token is not valid")
	}
	if got := it.ExpiresAt.Sub(e.clk.Now()); got != time.Hour {
		t.Fatalf("renewed ttl = %s", got)
	}
	if _, err := e.svc.Renew(ctx, c); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("second renew of the old token: err = %v, want unauthorized", err)
	}

	c2 := e.caller(it.Token)
	if err := e.svc.Logout(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if e.valid(it.Token, "") {
		t.Fatal("token valid after logout")
	}
	if _, err := e.svc.Authenticate(ctx, it.Token); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("authenticate after logout: %v", err)
	}
	if err := e.svc.Logout(ctx, core.Caller{}); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("anonymous logout: %v", err)
	}
	types := map[audit.Type]int{}
	for _, ev := range e.events() {
		types[ev.Type]++
		if strings.Contains(eventText(ev), tok) || strings.Contains(eventText(ev), it.Token) {
			t.Fatal("event holds a token")
		}
	}
	if types[audit.TokenRenew] != 1 || types[audit.Logout] != 1 {
		t.Fatalf("event counts = %v", types)
	}
}
