package core_test

import (
	"testing"
	"time"
)

// TestRenewKeepsServiceTTL: renewing a service token gives a token of the
// lifetime the admin chose for it, not the default service lifetime: a
// 1-minute token must not turn itself into a 24-hour one (nor a 60-day
// one into 24 hours).
func TestRenewKeepsServiceTTL(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sys := e.user("deployer", "")
	for _, ttl := range []time.Duration{time.Minute, 60 * 24 * time.Hour} {
		t.Run("case=ttl "+ttl.String(), func(t *testing.T) {
			it, err := e.svc.IssueServiceToken(ctx, e.admin, sys.ID, ttl, "")
			if err != nil {
				t.Fatal(err)
			}
			e.clk.Advance(10 * time.Second)
			renewed, err := e.svc.Renew(ctx, e.caller(it.Token))
			if err != nil {
				t.Fatal(err)
			}
			if got := renewed.ExpiresAt.Sub(e.clk.Now()); got != ttl {
				t.Fatalf("renewed service token ttl = %s, want %s", got, ttl)
			}
		})
	}
}
