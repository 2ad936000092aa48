package frontend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
)

func TestClientIP(t *testing.T) {
	c, err := NewClientIP([]string{"10.0.0.0/8", "192.0.2.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"case=untrusted peer, header ignored", "203.0.113.9:5000", []string{"198.51.100.7"}, "203.0.113.9"},
		{"case=trusted peer, no header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"case=trusted peer, one hop", "10.1.2.3:5000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"case=rightmost untrusted wins", "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.7, 10.9.9.9"}, "198.51.100.7"},
		{"case=several header values", "192.0.2.1:1", []string{"6.6.6.6", "198.51.100.7"}, "198.51.100.7"},
		{"case=all trusted: leftmost", "10.1.2.3:5000", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"case=malformed hop: peer", "10.1.2.3:5000", []string{"6.6.6.6, nonsense"}, "10.1.2.3"},
		{"case=ipv6 trusted peer", "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"case=no port", "203.0.113.9", nil, "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Resolve(tt.peer, tt.xff); got != tt.want {
				t.Errorf("Resolve(%q, %q) = %q, want %q", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
	if _, err := NewClientIP([]string{"not-an-ip"}); err == nil {
		t.Error("a bad trusted proxy was accepted")
	}
	none, _ := NewClientIP(nil)
	if got := none.Resolve("10.1.2.3:1", []string{"6.6.6.6"}); got != "10.1.2.3" {
		t.Errorf("no trusted proxies: %q", got)
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(60, 2) // one per second, burst 2
	now := time.Now()
	for i := range 2 {
		if ok, _, _ := l.Allow(t.Context(), "a", now); !ok {
			t.Fatalf("call %d refused within the burst", i)
		}
	}
	ok, wait, _ := l.Allow(t.Context(), "a", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over the burst: ok=%v wait=%v", ok, wait)
	}
	if ok, _, _ := l.Allow(t.Context(), "b", now); !ok {
		t.Error("another IP shares the bucket")
	}
	if ok, _, _ := l.Allow(t.Context(), "a", now.Add(time.Second)); !ok {
		t.Error("no token after the refill interval")
	}
}

func TestRequestID(t *testing.T) {
	if got := RequestID("abc-123_x.y"); got != "abc-123_x.y" {
		t.Errorf("a safe ID was replaced: %q", got)
	}
	for _, bad := range []string{"", "has space", "new\nline", string(make([]byte, 65))} {
		got := RequestID(bad)
		if got == bad || len(got) != 32 || !ValidRequestID(got) {
			t.Errorf("RequestID(%q) = %q, want a fresh 32-hex ID", bad, got)
		}
	}
	if RequestID("") == RequestID("") {
		t.Error("generated IDs repeat")
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		http    int
		grpc    codes.Code
		code    string
		wantMsg string
	}{
		{"case=core message kept", &core.Error{Kind: sdk.ErrNotFound, Msg: "account not found"}, http.StatusNotFound, codes.NotFound, "not_found", "account not found"},
		{"case=wrapped kind", fmt.Errorf("x: %w", core.ErrInvalidCredentials), http.StatusUnauthorized, codes.Unauthenticated, "invalid_credentials", "invalid username, password or TOTP code"},
		{"case=conflict retries", sdk.ErrConflict, http.StatusConflict, codes.Aborted, "conflict", "the request conflicts with the current state; retry"},
		{"case=precondition", sdk.ErrPrecondition, http.StatusConflict, codes.FailedPrecondition, "conflict", "the request conflicts with the current state"},
		{"case=deadline", context.DeadlineExceeded, http.StatusServiceUnavailable, codes.DeadlineExceeded, "unavailable", "a backend did not answer in time; retry later"},
		{"case=unknown is internal, text hidden", errors.New("sql: no such table: accounts"), http.StatusInternalServerError, codes.Internal, "internal", "internal error"},
		{"case=5xx hides a core message", &core.Error{Kind: sdk.ErrUnavailable, Msg: "disk /var/lib full"}, http.StatusServiceUnavailable, codes.Unavailable, "unavailable", "a backend is unavailable; retry later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, msg := Classify(tt.err)
			if row.HTTP != tt.http || row.GRPC != tt.grpc || row.Code != tt.code || msg != tt.wantMsg {
				t.Errorf("got %d %s %s %q, want %d %s %s %q", row.HTTP, row.GRPC, row.Code, msg, tt.http, tt.grpc, tt.code, tt.wantMsg)
			}
		})
	}
}
