package hsm_test

import "testing"

// BenchmarkToken measures the PKCS#11 operations in-process, on SoftHSM2,
// without the plugin wire (e2e's BenchmarkCustody has the plugin and the
// whole token issuance).
func BenchmarkToken(b *testing.B) {
	c, err := openB(b)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := c.PublicKeys(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("eyJhbGciOiJFZERTQSIsImtpZCI6IngiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSJ9")
	b.Run("op=sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Sign(b.Context(), keys[0].KID, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=sign-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Sign(b.Context(), keys[0].KID, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	sealed, err := c.Encrypt(b.Context(), []byte("JBSWY3DPEHPK3PXP"), []byte("mcias:totp:1"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=decrypt", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Decrypt(b.Context(), sealed, []byte("mcias:totp:1")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=info", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Info(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
