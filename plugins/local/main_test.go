package main

import (
	"path/filepath"
	"testing"

	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/custody/custodytest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

// TestConformance runs the custody suite against the local custodian
// three ways: in-process, through the gRPC shims in-process, and as this
// very plugin binary under go-plugin.
func TestConformance(t *testing.T) {
	uri := func(t *testing.T) string {
		key := filepath.Join(t.TempDir(), "master.key")
		if err := local.GenerateKeyFile(key); err != nil {
			t.Fatal(err)
		}
		return "local://" + filepath.Join(t.TempDir(), "keys") + "?key_file=" + key
	}
	t.Run("way=direct", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			c, err := local.Open(t.Context(), uri(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			c, stop, err := plugin.CustodyOverGRPC(t.Context(), local.Open, uri(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return c
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "mcias-plugin-local")
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			pc, _ := plugintest.Start(t, plugin.KindCustody, "local", bin)
			c, err := plugin.OpenCustody(t.Context(), pc, uri(t))
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
}
