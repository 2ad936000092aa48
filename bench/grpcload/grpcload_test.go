package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"testing"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
)

// TestBareVerifies: the ceiling does the one verification it claims to,
// so it cannot be fast by accepting anything.
func TestBareVerifies(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signing := "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0"
	token := signing + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(signing)))
	b := &bareServer{pub: pub}
	for _, tc := range []struct {
		name, token string
		valid       bool
	}{
		{"case=signed", token, true},
		{"case=payload changed", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ5In0" + token[len(signing):], false},
		{"case=no signature", signing, false},
		{"case=garbage", "x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := b.ValidateToken(t.Context(), &pb.ValidateTokenRequest{Token: tc.token})
			if err != nil || resp.Valid != tc.valid {
				t.Errorf("valid=%v err=%v, want valid=%v", resp.GetValid(), err, tc.valid)
			}
		})
	}
}
