package core_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	auditfile "github.com/metacircular/mcias/backends/audit/file"
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

// BenchmarkIssueSinks issues service tokens (a signature, one write
// transaction with its event) from many goroutines, with no audit sink
// and with two JSON-lines file sinks, to show what delivery costs the
// requests; each run ends once both sinks hold every event.
func BenchmarkIssueSinks(b *testing.B) {
	for _, n := range []int{0, 2} {
		b.Run(fmt.Sprintf("sinks=%d", n), func(b *testing.B) {
			var sinks []core.SinkConfig
			var paths []string
			for i := range n {
				path := filepath.Join(b.TempDir(), "audit.jsonl")
				sk, err := auditfile.Open(b.Context(), "file://"+path, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = sk.Close(context.Background()) })
				sinks = append(sinks, core.SinkConfig{Name: fmt.Sprintf("file%d", i), Sink: sk})
				paths = append(paths, path)
			}
			e := newEnvWith(b, nil, sinks...)
			admin := e.caller(e.login(adminName, adminPW))
			svc := e.user("bench-service", "")
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.svc.IssueServiceToken(ctx, admin, svc.ID, time.Hour, ""); err != nil {
						b.Errorf("issue: %v", err)
						return
					}
				}
			})
			want := len(e.events())
			for _, p := range paths {
				eventually(b, "sink caught up", func() bool { return len(readSink(b, p)) >= want })
			}
		})
	}
}
