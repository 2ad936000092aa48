package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
	"github.com/metacircular/mcias/sdk/storage"
)

// BenchmarkCustody compares token issuance and login with the signing key
// in local custody (in-process and as a plugin) and in a SoftHSM2 token
// through the PKCS#11 example plugin, over the same core and SQLite.
// bench/README.md records the figures and where the time goes.
//
//	go test -run '^$' -bench Custody -benchtime 3s ./e2e/
func BenchmarkCustody(b *testing.B) {
	custodians := []struct {
		name string
		open func(b *testing.B) custody.Custodian
	}{
		{"local", func(b *testing.B) custody.Custodian {
			c, err := local.Open(b.Context(), localURI(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"local-plugin", func(b *testing.B) custody.Custodian {
			pc, _ := plugintest.Start(b, plugin.KindCustody, "local", filepath.Join(binDir, "plugins", "mcias-plugin-local"))
			c, err := plugin.OpenCustody(b.Context(), pc, localURI(b))
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"pkcs11-plugin", func(b *testing.B) custody.Custodian {
			conf, module, pin := softHSM(b, "bench")
			b.Setenv("SOFTHSM2_CONF", conf)
			bin, _ := buildExample(b, "pkcs11")
			pc, _ := plugintest.Start(b, plugin.KindCustody, "pkcs11", bin)
			c, err := plugin.OpenCustody(b.Context(), pc, fmt.Sprintf("pkcs11:token=bench?module-path=%s&pin-source=file:%s", module, pin))
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
	}
	for _, cu := range custodians {
		b.Run("custody="+cu.name, func(b *testing.B) {
			cust := cu.open(b)
			b.Cleanup(func() { _ = cust.Close(context.Background()) })
			svc, admin, sysID := benchService(b, cust)
			ctx := b.Context()
			b.Run("op=sign", func(b *testing.B) {
				keys, err := cust.PublicKeys(ctx)
				if err != nil {
					b.Fatal(err)
				}
				msg := []byte("eyJhbGciOiJFZERTQSIsImtpZCI6IngiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSJ9")
				for b.Loop() {
					if _, err := cust.Sign(ctx, keys[0].KID, msg); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("op=issue", func(b *testing.B) {
				for b.Loop() {
					if _, err := svc.IssueServiceToken(ctx, admin, sysID, time.Hour, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("op=login", func(b *testing.B) {
				for b.Loop() {
					if _, err := svc.Login(ctx, core.Caller{}, "admin", adminPassword, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func localURI(b *testing.B) string {
	dir := b.TempDir()
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		b.Fatal(err)
	}
	return "local://" + filepath.Join(dir, "keys") + "?key_file=" + key
}

// benchService is a core over a fresh SQLite database and cust, at the
// OWASP minimum Argon2id parameters (t=2, 19 MiB), with an admin and a
// system account.
func benchService(b *testing.B, cust custody.Custodian) (*core.Service, core.Caller, string) {
	ctx := b.Context()
	st, err := sqlite.Open(ctx, "sqlite://"+filepath.Join(b.TempDir(), "mcias.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close(context.Background()) })
	svc, err := core.New(ctx, core.Config{Issuer: "https://bench", Password: password.Params{Time: 2, MemoryKiB: 19456, Threads: 1}}, core.Deps{Store: st, Custodian: cust})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close(context.Background()) })
	if _, err := svc.Bootstrap(ctx, "admin", adminPassword); err != nil {
		b.Fatal(err)
	}
	it, err := svc.Login(ctx, core.Caller{}, "admin", adminPassword, "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := svc.Authenticate(ctx, it.Token)
	if err != nil {
		b.Fatal(err)
	}
	admin := core.Caller{Principal: p}
	sys, err := svc.CreateAccount(ctx, admin, core.NewAccount{Username: "billing", Type: storage.System})
	if err != nil {
		b.Fatal(err)
	}
	return svc, admin, sys.ID
}
