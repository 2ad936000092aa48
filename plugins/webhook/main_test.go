package main

import (
	"strings"
	"testing"

	"github.com/metacircular/mcias/backends/audit/webhook"
	"github.com/metacircular/mcias/internal/webhooktest"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

const secret = "plugin-test-signing-secret-32by!"

// TestConformance runs the audit sink suite against the webhook sink and
// a verifying receiver three ways: in-process, through the gRPC shims
// in-process, and as this very plugin binary under go-plugin, with the
// secret in an environment variable the catalog would pass.
func TestConformance(t *testing.T) {
	t.Setenv("MCIAS_WEBHOOK_SECRET", secret)
	uri := func(r *webhooktest.Receiver) string {
		return "webhook+" + r.URL() + "/intake?secret_env=MCIAS_WEBHOOK_SECRET"
	}
	t.Run("way=direct", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			r := webhooktest.NewReceiver(t, secret)
			s, err := webhook.Open(t.Context(), uri(r), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s, r.Read
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			r := webhooktest.NewReceiver(t, secret)
			s, stop, err := plugin.AuditOverGRPC(t.Context(), webhook.Open, uri(r), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return s, r.Read
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "mcias-plugin-webhook")
		audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
			r := webhooktest.NewReceiver(t, secret)
			c, hostLog := plugintest.Start(t, plugin.KindAudit, "webhook", bin)
			s, err := plugin.OpenAudit(t.Context(), c, uri(r))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if strings.Contains(hostLog.String(), secret) {
					t.Error("the signing secret reached the log")
				}
			})
			return s, r.Read
		})
	})
}
