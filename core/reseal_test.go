package core_test

import (
	"context"
	"encoding/base32"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/totp"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// TestReseal moves a deployment's secrets from one custodian to another:
// afterwards a service on the new custodian opens the TOTP secret and the
// Postgres password, the old custodian's seal no longer matters, a second
// run changes nothing, and no secret reaches an audit event.
func TestReseal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	enr, err := e.svc.EnrollTOTP(ctx, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	bob := e.user("bob", "")
	if err := e.svc.SetPGCreds(ctx, e.admin, bob.ID, core.PGCreds{Host: "db", Port: 5432, Database: "d", Username: "u", Password: "pg-secret-reseal"}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	key := filepath.Join(dir, "other.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	to, err := local.Open(ctx, "local://"+filepath.Join(dir, "keys")+"?key_file="+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = to.Close(context.Background()) })

	// Before: the new custodian cannot open what the old one sealed.
	e.deps.Custodian = to
	moved := e.open()
	if _, err := moved.GetPGCreds(ctx, e.admin, bob.ID); err == nil {
		t.Fatal("the new custodian opened a secret before the reseal")
	}

	rep, err := core.Reseal(ctx, e.store, e.cust, to, e.clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TOTP != 1 || rep.PGCreds != 1 || rep.Already != 0 {
		t.Fatalf("Reseal = %+v, want one TOTP secret and one Postgres password moved", rep)
	}
	if pc, err := moved.GetPGCreds(ctx, e.admin, bob.ID); err != nil || pc.Password != "pg-secret-reseal" {
		t.Fatalf("GetPGCreds on the new custodian = %+v, %v", pc, err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(enr.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := moved.ConfirmTOTP(ctx, e.admin, totp.Code(secret, totp.Step(e.clk.Now()))); err != nil {
		t.Fatalf("ConfirmTOTP on the new custodian: %v", err)
	}

	again, err := core.Reseal(ctx, e.store, e.cust, to, e.clk.Now)
	if err != nil || again.TOTP != 0 || again.PGCreds != 0 || again.Already != 2 {
		t.Fatalf("second Reseal = %+v, %v; want nothing moved, 2 already", again, err)
	}
	n := 0
	for _, ev := range e.events() {
		if strings.Contains(eventText(ev), "pg-secret-reseal") || strings.Contains(eventText(ev), enr.Secret) {
			t.Fatalf("a secret reached an audit event: %s", eventText(ev))
		}
		if ev.Details["resealed"] == "true" && (ev.Type == audit.AccountUpdate || ev.Type == audit.PGCredsWrite) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d resealed events, want 2", n)
	}

	// Local custody cannot import keys: the move would cut old tokens.
	if _, err := core.ImportKeys(ctx, e.cust, to, e.clk.Now); !errors.Is(err, sdk.ErrNotImplemented) {
		t.Fatalf("ImportKeys into local custody = %v, want ErrNotImplemented", err)
	}

	// A secret neither custodian opens stops the run with a clear error.
	third := filepath.Join(t.TempDir(), "third.key")
	if err := local.GenerateKeyFile(third); err != nil {
		t.Fatal(err)
	}
	stranger, err := local.Open(ctx, "local://"+filepath.Join(t.TempDir(), "keys")+"?key_file="+third, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stranger.Close(context.Background()) })
	if _, err := core.Reseal(ctx, e.store, e.cust, stranger, e.clk.Now); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "cannot open it either") {
		t.Fatalf("Reseal with the wrong old custodian = %v", err)
	}
}
