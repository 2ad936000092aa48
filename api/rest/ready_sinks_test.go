package rest_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/metacircular/mcias/api/rest"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// downSink refuses every batch, as a sink whose destination is
// unreachable does.
type downSink struct{ name string }

func (s downSink) Info(context.Context) (audit.Info, error) { return audit.Info{Name: s.name}, nil }
func (s downSink) Close(context.Context) error              { return nil }
func (s downSink) Deliver(context.Context, []audit.Event) error {
	return fmt.Errorf("%s: connection refused to 127.0.0.1:9: %w", s.name, sdk.ErrUnavailable)
}

// TestReadySinks: /v1/ready reports each sink's delivery; a failing sink
// holds readiness down only when it is required and beyond its bound.
func TestReadySinks(t *testing.T) {
	sinkOf := func(t *testing.T, body map[string]any, role string) map[string]any {
		t.Helper()
		b, _ := body["backends"].(map[string]any)[role].(map[string]any)
		sk, _ := b["sink"].(map[string]any)
		if b["status"] != "down" || sk == nil {
			t.Fatalf("%s: %v", role, b)
		}
		return sk
	}
	t.Run("case=optional sink down", func(t *testing.T) {
		e := newEnvSinks(t, rest.Config{}, core.SinkConfig{Name: "archive", Sink: downSink{"file"}})
		var r response
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if r = e.do("GET", "/v1/ready", "", nil); strings.Contains(string(r.body), `"last_error":"unavailable"`) {
				break
			}
		}
		mustStatus(t, "ready", r, 200, "")
		sk := sinkOf(t, r.json(t), "audit:archive")
		if sk["state"] == "ok" || sk["required"] != false || sk["lag_events"].(float64) < 1 || sk["failures"].(float64) < 1 {
			t.Fatalf("sink %v", sk)
		}
		if strings.Contains(string(r.body), "refused") || strings.Contains(string(r.body), "127.0.0.1") {
			t.Fatalf("the sink's own error text reached the report: %s", r.body)
		}
		// Every field the schema lists, and no other.
		raw, err := os.ReadFile("../openapi.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Components struct {
				Schemas map[string]struct {
					Properties map[string]struct {
						Properties map[string]any `yaml:"properties"`
					} `yaml:"properties"`
				} `yaml:"schemas"`
			} `yaml:"components"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		var documented, sent []string
		for k := range doc.Components.Schemas["BackendState"].Properties["sink"].Properties {
			documented = append(documented, k)
		}
		for k := range sk {
			sent = append(sent, k)
		}
		slices.Sort(documented)
		slices.Sort(sent)
		if !slices.Equal(documented, sent) {
			t.Fatalf("sink fields %v, openapi.yaml documents %v", sent, documented)
		}
	})
	t.Run("case=required sink beyond its bound", func(t *testing.T) {
		e := newEnvSinks(t, rest.Config{},
			core.SinkConfig{Name: "archive", Sink: downSink{"file"}},
			core.SinkConfig{Name: "siem", Sink: downSink{"webhook"}, Required: true, MaxLagEvents: 1})
		for range 2 { // failed logins are stored events too
			e.do("POST", "/v1/auth/login", "", map[string]string{"username": adminUser, "password": "wrong password here"})
		}
		r := e.do("GET", "/v1/ready", "", nil)
		mustStatus(t, "ready", r, 503, "unavailable")
		m := r.json(t)
		if msg := fmt.Sprint(m["error"]); !strings.Contains(msg, "audit:siem") || strings.Contains(msg, "audit:archive") {
			t.Fatalf("error %q must name the required sink only", msg)
		}
		if sk := sinkOf(t, m, "audit:siem"); sk["lag_exceeded"] != true || sk["required"] != true {
			t.Fatalf("siem %v", sk)
		}
		// Requests are still served.
		mustStatus(t, "login", e.do("POST", "/v1/auth/login", "", map[string]string{"username": adminUser, "password": adminPass}), 200, "")
	})
}
