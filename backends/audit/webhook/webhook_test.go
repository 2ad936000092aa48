package webhook

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metacircular/mcias/internal/webhooktest"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
)

const testSecret = "test-signing-secret-of-32-bytes!"

func secretFile(t *testing.T, secret string) string {
	p := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func uri(t *testing.T, r *webhooktest.Receiver) string {
	return "webhook+" + r.URL() + "/intake?secret_file=" + secretFile(t, testSecret)
}

func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
		r := webhooktest.NewReceiver(t, testSecret)
		s, err := Open(t.Context(), uri(t, r), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, r.Read
	})
}

func TestFailures(t *testing.T) {
	ev := []audit.Event{audittest.Event(1)}
	for _, tt := range []struct {
		name   string
		status int
		want   error
	}{
		{"server error is transient", http.StatusInternalServerError, sdk.ErrUnavailable},
		{"unavailable is transient", http.StatusServiceUnavailable, sdk.ErrUnavailable},
		{"rate limited is transient", http.StatusTooManyRequests, sdk.ErrUnavailable},
		{"refusal is not", http.StatusForbidden, sdk.ErrPrecondition},
		{"not found is not", http.StatusNotFound, sdk.ErrPrecondition},
	} {
		t.Run("case="+tt.name, func(t *testing.T) {
			r := webhooktest.NewReceiver(t, testSecret)
			r.SetStatus(tt.status)
			s, err := Open(t.Context(), uri(t, r), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Deliver(t.Context(), ev); !errors.Is(err, tt.want) || errors.Is(err, sdk.ErrUnavailable) != (tt.want == sdk.ErrUnavailable) {
				t.Fatalf("Deliver = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("case=endpoint down", func(t *testing.T) {
		r := webhooktest.NewReceiver(t, testSecret)
		s, err := Open(t.Context(), uri(t, r), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		if err := s.Deliver(t.Context(), ev); !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Deliver = %v, want ErrUnavailable", err)
		}
	})
	t.Run("case=wrong secret", func(t *testing.T) {
		r := webhooktest.NewReceiver(t, testSecret)
		wrong := "another-secret-that-is-32-bytes!"
		t.Setenv("WEBHOOK_TEST_SECRET", wrong)
		s, err := Open(t.Context(), "webhook+"+r.URL()+"/?secret_env=WEBHOOK_TEST_SECRET", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Deliver(t.Context(), ev); !errors.Is(err, sdk.ErrPrecondition) || strings.Contains(err.Error(), wrong) {
			t.Fatalf("Deliver = %v, want ErrPrecondition without the secret", err)
		}
	})
	t.Run("case=stale clock", func(t *testing.T) {
		r := webhooktest.NewReceiver(t, testSecret)
		s, err := Open(t.Context(), uri(t, r), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.(*Sink).now = func() time.Time { return time.Now().Add(-time.Hour) }
		if err := s.Deliver(t.Context(), ev); !errors.Is(err, sdk.ErrPrecondition) {
			t.Fatalf("Deliver with a clock an hour slow = %v, want refused", err)
		}
	})
}

// TestRedirectIsARefusal: a redirect is not an acknowledgement. Go's
// client followed it by default: a 302 or 303 turned the POST into a GET
// without the events, and the 200 of the page redirected to counted as
// delivered (the batch was lost); a 307 or 308 sent the signed batch to
// whatever host the Location named.
func TestRedirectIsARefusal(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run("case="+strconv.Itoa(status), func(t *testing.T) {
			var elsewhere atomic.Int32
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				elsewhere.Add(1)
			}))
			defer other.Close()
			redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+"/login", status)
			}))
			defer redirector.Close()
			s, err := Open(t.Context(), "webhook+"+redirector.URL+"/intake?secret_file="+secretFile(t, testSecret), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Deliver(t.Context(), []audit.Event{audittest.Event(1)})
			if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), strconv.Itoa(status)) {
				t.Fatalf("Deliver answered by a %d redirect = %v, want a refusal naming the status", status, err)
			}
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the redirect was followed (%d requests to its target)", n)
			}
		})
	}
}

// TestAttackerText: each event is one JSON object in the body whatever
// its text holds; the receiver decodes the exact values.
func TestAttackerText(t *testing.T) {
	r := webhooktest.NewReceiver(t, testSecret)
	s, err := Open(t.Context(), uri(t, r), nil)
	if err != nil {
		t.Fatal(err)
	}
	nasty := "x\n{\"type\":\"login_success\"}]}\u2028\u2029\u0085\x00\"\\"
	e := audittest.Event(1)
	e.Details = map[string]string{"username": nasty}
	if err := s.Deliver(t.Context(), []audit.Event{e}); err != nil {
		t.Fatal(err)
	}
	got := r.Read()
	if len(got) != 1 || got[0].Details["username"] != nasty {
		t.Fatalf("received %+v", got)
	}
	if b := r.Bodies()[0]; strings.ContainsAny(b, "\n\x00\u2028\u2029\u0085") {
		t.Fatalf("raw control or separator characters in the body: %q", b)
	}
}

func TestBadURIs(t *testing.T) {
	t.Setenv("WEBHOOK_SHORT", "short")
	t.Setenv("WEBHOOK_OK", testSecret)
	f := secretFile(t, testSecret)
	for _, uri := range []string{
		"https://collector/intake?secret_env=WEBHOOK_OK",
		"webhook+ftp://collector/intake?secret_env=WEBHOOK_OK",
		"webhook+https:///intake?secret_env=WEBHOOK_OK",
		"webhook+https://user:pw@collector/intake?secret_env=WEBHOOK_OK",
		"webhook+https://collector/intake",
		"webhook+https://collector/intake?secret_env=WEBHOOK_UNSET_VARIABLE",
		"webhook+https://collector/intake?secret_env=WEBHOOK_SHORT",
		"webhook+https://collector/intake?secret_env=WEBHOOK_OK&secret_file=" + f,
		"webhook+https://collector/intake?secret_file=/nonexistent/key",
		"webhook+https://collector/intake?secret_env=WEBHOOK_OK&timeout=soon",
		"webhook+https://collector/intake?secret_env=WEBHOOK_OK&retries=3",
		"webhook+https://collector/intake?secret=" + testSecret,
		"webhook+http://collector/intake?secret_env=WEBHOOK_OK",
		"webhook+http://192.0.2.10:8080/intake?secret_env=WEBHOOK_OK",
		"webhook+http://localhost.collector.example/intake?secret_env=WEBHOOK_OK",
	} {
		if _, err := Open(t.Context(), uri, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Open(%q) = %v, want ErrInvalidArgument", uri, err)
		} else if strings.Contains(err.Error(), testSecret) {
			t.Errorf("Open(%q) error reveals the secret: %v", uri, err)
		}
	}
}

// Plain HTTP is accepted for a receiver on this host only.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	t.Setenv("WEBHOOK_OK", testSecret)
	for _, host := range []string{"127.0.0.1:9", "127.8.9.10:9", "[::1]:9", "localhost:9", "LOCALHOST"} {
		s, err := Open(t.Context(), "webhook+http://"+host+"/intake?secret_env=WEBHOOK_OK", nil)
		if err != nil {
			t.Errorf("webhook+http://%s refused: %v", host, err)
			continue
		}
		_ = s.Close(t.Context())
	}
}
