package core_test

import (
	"testing"

	"github.com/metacircular/mcias/core"
)

// BenchmarkValidate measures the hot path: a cached token validated from
// many goroutines at once.
func BenchmarkValidate(b *testing.B) {
	e := newEnv(b)
	tok := e.login(adminName, adminPW)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v, err := e.svc.Validate(ctx, tok, "")
			if err != nil || !v.Valid {
				b.Errorf("validate: %v %v", v.Valid, err)
				return
			}
		}
	})
}

// BenchmarkLogin measures a full login: one Argon2id at the OWASP
// minimum parameters, a token signed and recorded, an event stored.
func BenchmarkLogin(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.svc.Login(ctx, core.Caller{}, adminName, adminPW, ""); err != nil {
			b.Fatal(err)
		}
	}
}
