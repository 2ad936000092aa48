package plugin

import (
	"context"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/auditv1"
)

// auditClient is the host-side shim: an audit.Sink whose every method is
// one RPC to the plugin.
type auditClient struct {
	c auditv1.AuditSinkClient
}

var _ audit.Sink = (*auditClient)(nil)

func (a *auditClient) open(ctx context.Context, uri string) error {
	_, err := a.c.Open(ctx, &auditv1.OpenRequest{Uri: uri})
	return fromStatus("audit plugin: open", err)
}

func (a *auditClient) Info(ctx context.Context) (audit.Info, error) {
	resp, err := a.c.Info(ctx, &auditv1.InfoRequest{})
	if err != nil {
		return audit.Info{}, fromStatus("audit plugin: info", err)
	}
	return audit.Info{Name: resp.GetName()}, nil
}

func (a *auditClient) Deliver(ctx context.Context, events []audit.Event) error {
	_, err := a.c.Deliver(ctx, &auditv1.DeliverRequest{Events: eventsToPB(events)})
	return fromStatus("audit plugin: deliver", err)
}

func (a *auditClient) Close(ctx context.Context) error {
	_, err := a.c.Close(ctx, &auditv1.CloseRequest{})
	return fromStatus("audit plugin: close", err)
}
