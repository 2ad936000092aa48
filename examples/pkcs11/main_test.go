package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/metacircular/mcias/examples/pkcs11/hsm"
	"github.com/metacircular/mcias/examples/pkcs11/internal/softhsmtest"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/custody/custodytest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

var env *softhsmtest.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = softhsmtest.Setup(); err != nil {
		fmt.Fprintln(os.Stderr, "SoftHSM2 setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(env.Dir)
	os.Exit(code)
}

// TestConformance runs the MCIAS custody suite against the PKCS#11
// custodian on a real SoftHSM2 token three ways: in-process, through the
// plugin's gRPC shims in-process, and as this very plugin binary, started
// the way the MCIAS server starts it. Each subtest gets a fresh set of
// token objects.
func TestConformance(t *testing.T) {
	t.Run("way=direct", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			c, err := hsm.Open(t.Context(), env.URI(softhsmtest.Object()), nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			c, stop, err := plugin.CustodyOverGRPC(t.Context(), hsm.Open, env.URI(softhsmtest.Object()), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return c
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "mcias-plugin-pkcs11")
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			pc, _ := plugintest.Start(t, plugin.KindCustody, "pkcs11", bin)
			c, err := plugin.OpenCustody(t.Context(), pc, env.URI(softhsmtest.Object()))
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
}
