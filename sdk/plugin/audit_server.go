package plugin

import (
	"context"
	"log/slog"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/auditv1"
)

// auditServer is the plugin-side shim of the AuditSink service.
type auditServer struct {
	auditv1.UnimplementedAuditSinkServer
	factory audit.Factory
	logger  *slog.Logger
	sink    opened[audit.Sink]
}

func newAuditServer(f audit.Factory, logger *slog.Logger) *auditServer {
	return &auditServer{factory: f, logger: logger, sink: opened[audit.Sink]{kind: KindAudit}}
}

func (s *auditServer) Open(ctx context.Context, req *auditv1.OpenRequest) (*auditv1.OpenResponse, error) {
	if err := s.sink.open(ctx, req.GetUri(), s.logger, s.factory); err != nil {
		return nil, toStatus(err)
	}
	return &auditv1.OpenResponse{}, nil
}

// reopen calls Reopen on the open sink if it has one (SIGHUP).
func (s *auditServer) reopen(ctx context.Context) error {
	sk, err := s.sink.get()
	if err != nil {
		return err
	}
	if r, ok := sk.(audit.Reopener); ok {
		return r.Reopen(ctx)
	}
	return nil
}

func (s *auditServer) Close(ctx context.Context, _ *auditv1.CloseRequest) (*auditv1.CloseResponse, error) {
	if err := s.sink.close(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &auditv1.CloseResponse{}, nil
}

func (s *auditServer) Info(ctx context.Context, _ *auditv1.InfoRequest) (*auditv1.InfoResponse, error) {
	sk, err := s.sink.get()
	if err != nil {
		return nil, toStatus(err)
	}
	info, err := sk.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &auditv1.InfoResponse{Name: info.Name}, nil
}

func (s *auditServer) Deliver(ctx context.Context, req *auditv1.DeliverRequest) (*auditv1.DeliverResponse, error) {
	sk, err := s.sink.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := sk.Deliver(ctx, eventsFromPB(req.GetEvents())); err != nil {
		return nil, toStatus(err)
	}
	return &auditv1.DeliverResponse{}, nil
}
