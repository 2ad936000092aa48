package core_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

func TestRotationConfig(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		mod     func(c *core.Config)
		wantErr string
	}{
		{"defaults", func(c *core.Config) {}, ""},
		{"retire_after covers the longest token", func(c *core.Config) { c.RetireAfter = 90*24*time.Hour + 30*time.Second }, ""},
		{"retire_after shorter than the service token cap", func(c *core.Config) { c.RetireAfter = 24 * time.Hour }, "would drop a key before the tokens it signed expire"},
		{"retire_after forgets the leeway", func(c *core.Config) { c.RetireAfter = 90 * 24 * time.Hour }, "would drop a key"},
		{"rotate_every not longer than publish_ahead", func(c *core.Config) { c.RotateEvery, c.PublishAhead = time.Minute, time.Minute }, "rotate_every"},
		{"negative publish_ahead", func(c *core.Config) { c.PublishAhead = -time.Second }, "publish_ahead"},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			cfg := e.cfg
			tt.mod(&cfg)
			svc, err := core.New(context.Background(), cfg, e.deps)
			if svc != nil {
				_ = svc.Close(context.Background())
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("New = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// kids returns the published keys by state.
func kids(t *testing.T, svc *core.Service) map[custody.KeyState][]string {
	t.Helper()
	keys, err := svc.PublicKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[custody.KeyState][]string{}
	for _, k := range keys {
		m[k.State] = append(m[k.State], k.KID)
	}
	return m
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _ := tokenParts(t, tok)
	kid, _ := h["kid"].(string)
	return kid
}

func rotationEvents(e *env, action string) int {
	n := 0
	for _, ev := range e.events() {
		if ev.Type == audit.KeyRotation && ev.Details["action"] == action {
			n++
		}
	}
	return n
}

// TestScheduledRotation walks a key through its life on the schedule: the
// next key is published before it signs, the old key keeps verifying its
// tokens while retiring, and it is retired only after retire_after.
func TestScheduledRotation(t *testing.T) {
	e := newEnv(t)
	e.cfg.RotateEvery, e.cfg.PublishAhead, e.cfg.TokenTTL, e.cfg.ServiceTokenTTL, e.cfg.MaxServiceTokenTTL = 24*time.Hour, 10*time.Minute, time.Hour, time.Hour, 2*time.Hour
	e.svc = e.open()
	ctx := context.Background()
	step := func() {
		t.Helper()
		if err := e.svc.RotationStep(ctx); err != nil {
			t.Fatalf("RotationStep: %v", err)
		}
	}
	old := kids(t, e.svc)[custody.StateActive][0]
	valid := func(tok string) bool {
		t.Helper()
		v, err := e.svc.Validate(ctx, tok, "")
		if err != nil {
			t.Fatal(err)
		}
		return v.Valid
	}

	step() // not due yet
	if k := kids(t, e.svc); len(k[custody.StateNext]) != 0 {
		t.Fatalf("a next key before the schedule: %v", k)
	}
	e.clk.Advance(24*time.Hour - 10*time.Minute)
	step()
	k := kids(t, e.svc)
	if len(k[custody.StateNext]) != 1 || k[custody.StateActive][0] != old {
		t.Fatalf("at rotate_every - publish_ahead: %v, want a published next key and %s still active", k, old)
	}
	next := k[custody.StateNext][0]
	before := e.login(adminName, adminPW)
	if got := kidOf(t, before); got != old {
		t.Fatalf("a token was signed with %s while the next key was only published", got)
	}

	e.clk.Advance(10 * time.Minute)
	step()
	k = kids(t, e.svc)
	if k[custody.StateActive][0] != next || len(k[custody.StateRetiring]) != 1 || k[custody.StateRetiring][0] != old {
		t.Fatalf("after publish_ahead: %v, want %s active and %s retiring", k, next, old)
	}
	after := e.login(adminName, adminPW)
	if kidOf(t, after) != next {
		t.Fatal("new tokens are not signed by the new active key")
	}
	if !valid(before) {
		t.Fatal("a token of the retiring key is no longer valid")
	}

	// retire_after defaults to the longest token life plus leeway (2h30s).
	e.clk.Advance(2 * time.Hour)
	step()
	if k := kids(t, e.svc); len(k[custody.StateRetiring]) != 1 {
		t.Fatalf("retired before retire_after: %v", k)
	}
	e.clk.Advance(31 * time.Second)
	step()
	if k := kids(t, e.svc); len(k[custody.StateRetiring]) != 0 || len(k[custody.StateActive]) != 1 {
		t.Fatalf("after retire_after: %v, want the old key gone", k)
	}
	for _, action := range []string{"create_next", "activate", "retire"} {
		if rotationEvents(e, action) != 1 {
			t.Errorf("%d key_rotation events with action %s, want 1", rotationEvents(e, action), action)
		}
	}
}

// TestRotateOnDemand: an admin rotation publishes a next key that signs
// only after publish_ahead; tokens of the old key stay valid.
func TestRotateOnDemand(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := kids(t, e.svc)[custody.StateActive][0]
	tok := e.login(adminName, adminPW)
	res, err := e.svc.RotateKeys(ctx, e.admin, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keys) != 2 || res.Keys[0].KID != old || res.Keys[1].State != custody.StateNext || res.ActivatesAt.IsZero() {
		t.Fatalf("RotateKeys = %+v", res)
	}
	again, err := e.svc.RotateKeys(ctx, e.admin, false)
	if err != nil || len(again.Keys) != 2 {
		t.Fatalf("second RotateKeys = %+v, %v; want the same next key", again, err)
	}
	e.clk.Advance(core.DefaultPublishAhead)
	if err := e.svc.RotationStep(ctx); err != nil {
		t.Fatal(err)
	}
	if k := kids(t, e.svc); k[custody.StateActive][0] != res.Keys[1].KID || k[custody.StateRetiring][0] != old {
		t.Fatalf("after publish_ahead: %v", k)
	}
	if !e.valid(tok, "") {
		t.Fatal("a token signed by the retiring key is no longer valid")
	}
	if _, err := e.svc.RotateKeys(ctx, core.Caller{}, false); !errors.Is(err, core.ErrUnauthorized) && !errors.Is(err, core.ErrForbidden) {
		t.Fatalf("RotateKeys without admin = %v", err)
	}
	bob := e.user("bob", "bob-long-password")
	if _, err := e.svc.RotateKeys(ctx, e.caller(e.login(bob.Username, "bob-long-password")), false); !errors.Is(err, core.ErrForbidden) {
		t.Fatalf("RotateKeys by a non-admin = %v, want ErrForbidden", err)
	}
}

// TestEmergencyRotation: the compromised key is retired at once and
// every token it signed is dead; a new key signs from now on.
func TestEmergencyRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := kids(t, e.svc)[custody.StateActive][0]
	carolAcct := e.user("carol", "carol-long-password")
	carol := e.login("carol", "carol-long-password")
	// A live token record of another key: emergency rotation spares it.
	now := e.clk.Now()
	other := storage.Token{JTI: "other-kid-token", AccountID: carolAcct.ID, Kind: storage.Session, KID: "other-kid",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.store.Store.Tokens().CreateToken(ctx, other, "",
		audit.Event{ID: "other-kid-token-issue", Time: now, Type: audit.TokenIssue, Outcome: audit.Success}); err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.RotateKeys(ctx, e.admin, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revoked < 2 { // the admin's token and carol's
		t.Fatalf("emergency rotation revoked %d tokens, want at least 2", res.Revoked)
	}
	k := kids(t, e.svc)
	if len(k[custody.StateActive]) != 1 || k[custody.StateActive][0] == old || len(k[custody.StateRetiring]) != 0 {
		t.Fatalf("after emergency rotation: %v, want a new active key and %s gone", k, old)
	}
	if e.valid(carol, "") {
		t.Fatal("a token signed by the compromised key is still valid")
	}
	if rec, err := e.store.Store.Tokens().GetToken(ctx, other.JTI); err != nil || !rec.RevokedAt.IsZero() {
		t.Fatalf("token of another key: %+v, %v; want it left unrevoked", rec, err)
	}
	// A restarted service (or another node) sees the revocations too.
	if v, err := e.open().Validate(ctx, carol, ""); err != nil || v.Valid {
		t.Fatalf("after a restart: Validate = %+v, %v; want invalid", v, err)
	}
	fresh := e.login("carol", "carol-long-password")
	if !e.valid(fresh, "") || kidOf(t, fresh) != k[custody.StateActive][0] {
		t.Fatal("a new token is not signed by the new key")
	}
	revoked := 0
	for _, ev := range e.events() {
		if ev.Type == audit.TokenRevoke && ev.Details["reason"] == "key_compromised" {
			revoked++
		}
	}
	if revoked != res.Revoked || rotationEvents(e, "emergency") != 1 {
		t.Fatalf("%d token_revoke events for %d revoked tokens, %d emergency events", revoked, res.Revoked, rotationEvents(e, "emergency"))
	}
}

// noRotation is a custodian without the rotation capability.
type noRotation struct{ custody.Custodian }

func (n noRotation) Info(ctx context.Context) (custody.Info, error) {
	return custody.Info{Name: "fixed"}, nil
}

func TestRotateWithoutCapability(t *testing.T) {
	e := newEnv(t)
	e.deps.Custodian = noRotation{e.cust}
	e.svc = e.open()
	if _, err := e.svc.RotateKeys(context.Background(), e.admin, false); !errors.Is(err, sdk.ErrNotImplemented) {
		t.Fatalf("RotateKeys = %v, want ErrNotImplemented", err)
	}
}
