package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/metacircular/mcias/examples/webhook/webhook"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

// collector is a webhook receiver on the loopback interface that keeps
// what it accepted, in arrival order.
type collector struct {
	srv    *httptest.Server
	token  string
	mu     sync.Mutex
	events []audit.Event
	status int // answer instead of accepting, when non-zero
}

func newCollector(t *testing.T, token string) *collector {
	c := &collector{token: token}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if c.token != "" && r.Header.Get("Authorization") != "Bearer "+c.token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.status != 0 {
			w.WriteHeader(c.status)
			return
		}
		var b webhook.Batch
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rec := range b.Events {
			c.events = append(c.events, rec.Event())
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) uri() string { return "webhook+" + c.srv.URL + "/intake" }

func (c *collector) read() []audit.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]audit.Event(nil), c.events...)
}

// TestConformance runs the MCIAS audit sink suite against the sink three
// ways: in-process, through the plugin's gRPC shims in-process, and as
// this very plugin binary, started the way the MCIAS server starts it.
func TestConformance(t *testing.T) {
	t.Run("way=direct", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			c := newCollector(t, "")
			s, err := webhook.Open(t.Context(), c.uri(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s, c.read
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			c := newCollector(t, "")
			s, stop, err := plugin.AuditOverGRPC(t.Context(), webhook.Open, c.uri(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return s, c.read
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "webhook-plugin")
		t.Setenv("WEBHOOK_TEST_TOKEN", "s3cret-intake-token")
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			c := newCollector(t, "s3cret-intake-token")
			pc, hostLog := plugintest.Start(t, plugin.KindAudit, "webhook", bin)
			s, err := plugin.OpenAudit(t.Context(), pc, c.uri()+"?token_env=WEBHOOK_TEST_TOKEN")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if strings.Contains(hostLog.String(), "s3cret-intake-token") {
					t.Error("the bearer token reached the log")
				}
			})
			return s, c.read
		})
	})
}

func TestFailures(t *testing.T) {
	ev := []audit.Event{audittest.Event(1)}
	tests := []struct {
		name   string
		status int
		want   error
	}{
		{"server error is transient", http.StatusServiceUnavailable, sdk.ErrUnavailable},
		{"rate limited is transient", http.StatusTooManyRequests, sdk.ErrUnavailable},
		{"refusal is not", http.StatusForbidden, sdk.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			c := newCollector(t, "")
			c.status = tt.status
			s, err := webhook.Open(t.Context(), c.uri(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Deliver(t.Context(), ev); !errors.Is(err, tt.want) {
				t.Fatalf("Deliver = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("case=endpoint down", func(t *testing.T) {
		c := newCollector(t, "")
		s, err := webhook.Open(t.Context(), c.uri(), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.srv.Close()
		if err := s.Deliver(t.Context(), ev); !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Deliver = %v, want ErrUnavailable", err)
		}
	})
	t.Run("case=wrong token", func(t *testing.T) {
		c := newCollector(t, "right")
		t.Setenv("WEBHOOK_TEST_TOKEN", "wrong")
		s, err := webhook.Open(t.Context(), c.uri()+"?token_env=WEBHOOK_TEST_TOKEN", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Deliver(t.Context(), ev); !errors.Is(err, sdk.ErrInvalidArgument) || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("Deliver = %v, want ErrInvalidArgument without the token", err)
		}
	})
}

func TestBadURIs(t *testing.T) {
	for _, uri := range []string{
		"https://collector/intake",
		"webhook+ftp://collector/intake",
		"webhook+https:///intake",
		"webhook+https://user:pw@collector/intake",
		"webhook+https://collector/intake?token_env=WEBHOOK_UNSET_VARIABLE",
		"webhook+https://collector/intake?timeout=soon",
		"webhook+https://collector/intake?retries=3",
	} {
		if _, err := webhook.Open(t.Context(), uri, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Open(%q) = %v, want ErrInvalidArgument", uri, err)
		}
	}
}
