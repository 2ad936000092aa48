package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/metacircular/mcias/examples/seedkeys/seedkeys"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/custody/custodytest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

func seedURI(t *testing.T) string { return "seedkeys://" + filepath.Join(t.TempDir(), "seed") }

// TestConformance runs the MCIAS custody suite against the custodian three
// ways: in-process, through the plugin's gRPC shims in-process, and as
// this very plugin binary, started the way the MCIAS server starts it.
func TestConformance(t *testing.T) {
	t.Run("way=direct", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			c, err := seedkeys.Open(t.Context(), seedURI(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			c, stop, err := plugin.CustodyOverGRPC(t.Context(), seedkeys.Open, seedURI(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return c
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "seedkeys-plugin")
		custodytest.Run(t, func(t *testing.T) custody.Custodian {
			pc, _ := plugintest.Start(t, plugin.KindCustody, "seedkeys", bin)
			c, err := plugin.OpenCustody(t.Context(), pc, seedURI(t))
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
}

// TestSameSeedSameKeys: a restart keeps the key and opens what was sealed.
func TestSameSeedSameKeys(t *testing.T) {
	uri := seedURI(t)
	a, err := seedkeys.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := a.Encrypt(t.Context(), []byte("totp secret"), []byte("mcias:totp:1"))
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := a.PublicKeys(t.Context())
	b, err := seedkeys.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := b.PublicKeys(t.Context())
	if ka[0].KID != kb[0].KID || !bytes.Equal(ka[0].Key, kb[0].Key) {
		t.Fatal("the same seed gave another key")
	}
	pt, err := b.Decrypt(t.Context(), sealed, []byte("mcias:totp:1"))
	if err != nil || string(pt) != "totp secret" {
		t.Fatalf("Decrypt after reopen = %q, %v", pt, err)
	}
	sig, err := b.Sign(t.Context(), kb[0].KID, []byte("m"))
	if err != nil || !ed25519.Verify(ka[0].Key, []byte("m"), sig) {
		t.Fatalf("signature after reopen does not verify: %v", err)
	}
}

func TestRefusesLooseSeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed")
	if err := os.WriteFile(path, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := seedkeys.Open(t.Context(), "seedkeys://"+path, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Open(seed mode 0644) = %v, want ErrInvalidArgument", err)
	}
}
