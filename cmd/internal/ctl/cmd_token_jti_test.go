package ctl

import (
	"encoding/base64"
	"testing"
)

func TestJTIOf(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"0f0e3c3a-1111-4222-8333-444455556666"}`))
	for _, tc := range []struct {
		name, arg, want string
		wantErr         bool
	}{
		{"case=jti", "0f0e3c3a-1111-4222-8333-444455556666", "0f0e3c3a-1111-4222-8333-444455556666", false},
		{"case=token", "eyJhbGciOiJFZERTQSJ9." + payload + ".sig", "0f0e3c3a-1111-4222-8333-444455556666", false},
		{"case=token without jti", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + ".b", "", true},
		{"case=bad payload", "a.!!!.b", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jtiOf(tc.arg)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("jtiOf(%q) = %q, %v", tc.arg, got, err)
			}
		})
	}
}
