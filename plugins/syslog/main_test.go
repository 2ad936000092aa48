package main

import (
	"testing"

	"github.com/metacircular/mcias/backends/audit/syslog"
	"github.com/metacircular/mcias/internal/rsyslogtest"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
)

// TestConformance runs the audit sink suite against the syslog sink and
// a real rsyslog, both transports, three ways: in-process, through the
// gRPC shims in-process, and as this very plugin binary under go-plugin.
func TestConformance(t *testing.T) {
	uris := map[string]func(d *rsyslogtest.Daemon) string{
		"tcp":  func(d *rsyslogtest.Daemon) string { return "syslog+tcp://" + d.TCPAddr },
		"unix": func(d *rsyslogtest.Daemon) string { return "syslog+unix://" + d.Socket },
	}
	bin := plugintest.Build(t, ".", ".", "mcias-plugin-syslog")
	for tr, uri := range uris {
		read := func(t *testing.T, d *rsyslogtest.Daemon) func() []audit.Event {
			return func() []audit.Event { return rsyslogtest.Events(t, d.SettledLines()) }
		}
		t.Run("transport="+tr+"/way=direct", func(t *testing.T) {
			audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
				d := rsyslogtest.Start(t)
				s, err := syslog.Open(t.Context(), uri(d), nil)
				if err != nil {
					t.Fatal(err)
				}
				return s, read(t, d)
			})
		})
		t.Run("transport="+tr+"/way=grpc", func(t *testing.T) {
			audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
				d := rsyslogtest.Start(t)
				s, stop, err := plugin.AuditOverGRPC(t.Context(), syslog.Open, uri(d), nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
				return s, read(t, d)
			})
		})
		t.Run("transport="+tr+"/way=plugin", func(t *testing.T) {
			audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
				d := rsyslogtest.Start(t)
				c, _ := plugintest.Start(t, plugin.KindAudit, "syslog", bin)
				s, err := plugin.OpenAudit(t.Context(), c, uri(d))
				if err != nil {
					t.Fatal(err)
				}
				return s, read(t, d)
			})
		})
	}
}
