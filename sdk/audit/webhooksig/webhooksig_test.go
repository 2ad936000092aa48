package webhooksig

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"events":[]}`)
	now := time.Unix(1_800_000_000, 0)
	h := Sign(secret, now, body)
	// Pinned vector, computed independently:
	// printf '1800000000.{"events":[]}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
	if want := "t=1800000000,v1=" + pinned; h != want {
		t.Fatalf("Sign = %s, want %s", h, want)
	}
	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"valid", secret, h, body, now, nil},
		{"valid within tolerance", secret, h, body, now.Add(4 * time.Minute), nil},
		{"rotation: second v1 matches", secret, h[:strings.Index(h, ",")] + ",v1=" + strings.Repeat("00", 32) + h[strings.Index(h, ","):], body, now, nil},
		{"stale", secret, h, body, now.Add(6 * time.Minute), ErrStale},
		{"from the future", secret, h, body, now.Add(-6 * time.Minute), ErrStale},
		{"other body", secret, h, []byte(`{"events":[{}]}`), now, ErrMismatch},
		{"other secret", []byte("another secret of thirty-two b.."), h, body, now, ErrMismatch},
		{"timestamp changed", secret, strings.Replace(h, "t=1800000000", "t=1800000001", 1), body, now, ErrMismatch},
		{"no v1", secret, "t=1800000000", body, now, ErrMalformed},
		{"no t", secret, h[strings.Index(h, ",")+1:], body, now, ErrMalformed},
		{"two t", secret, "t=1800000000," + h, body, now, ErrMalformed},
		{"short v1", secret, "t=1800000000,v1=abcd", body, now, ErrMalformed},
		{"empty", secret, "", body, now, ErrMalformed},
		// Before, an empty secret verified what anyone signed with one.
		{"empty secret", nil, Sign(nil, now, body), body, now, ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			if err := Verify(tt.secret, tt.header, tt.body, tt.at, DefaultTolerance); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

const pinned = "9b3aca312874ac173c8e1e6045687f25b5cba439754d0784a683a95aa355fc8e"
