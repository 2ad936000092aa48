package pluginhost

import (
	"context"
	"fmt"
	"syscall"

	"github.com/metacircular/mcias/sdk/audit"
	sdkplugin "github.com/metacircular/mcias/sdk/plugin"
)

// Sink starts plugin p, opens uri in it, and returns the supervised audit
// sink. Close on it stops the plugin.
func (h *Host) Sink(ctx context.Context, p Plugin, uri string) (audit.Sink, error) {
	s, err := start(ctx, h, p, uri, kindOps[audit.Sink]{
		kind: sdkplugin.KindAudit,
		open: sdkplugin.OpenAudit,
		probe: func(ctx context.Context, b audit.Sink) error {
			_, err := b.Info(ctx)
			return err
		},
		close: func(ctx context.Context, b audit.Sink) error { return b.Close(ctx) },
	})
	if err != nil {
		return nil, err
	}
	return &supervisedSink{s}, nil
}

type supervisedSink struct{ s *supervisor[audit.Sink] }

func (w *supervisedSink) PluginStatus() Status { return w.s.status() }

func (w *supervisedSink) Info(ctx context.Context) (audit.Info, error) {
	return call(w.s, ctx, func(ctx context.Context, b audit.Sink) (audit.Info, error) { return b.Info(ctx) })
}

func (w *supervisedSink) Deliver(ctx context.Context, events []audit.Event) error {
	return call0(w.s, ctx, func(ctx context.Context, b audit.Sink) error { return b.Deliver(ctx, events) })
}

// Reopen implements audit.Reopener by sending SIGHUP to the plugin
// process, which calls Reopen on its sink (sdk/plugin.ServeAudit). It
// returns once the signal is sent, not when the plugin has reopened. A
// plugin that is down opens its sink afresh when it is restarted, so
// there is nothing to signal.
func (w *supervisedSink) Reopen(ctx context.Context) error {
	if err := w.s.signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("plugin %s: send SIGHUP: %w", w.s.p.Name, err)
	}
	return nil
}

func (w *supervisedSink) Close(ctx context.Context) error {
	w.s.stop(ctx)
	return nil
}
