package grpc

import (
	"context"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/core"
)

// healthServer is the standard health service fed by core readiness, the
// same report REST's /v1/ready shows: SERVING when every backend is up.
// The overall service ("") and each MCIAS service carry the same state,
// since every one of them needs every backend.
type healthServer struct {
	*health.Server
	svc      *core.Service
	stopping chan struct{} // closed by Shutdown
}

var healthServices = []string{
	"",
	pb.AdminService_ServiceDesc.ServiceName,
	pb.AuthService_ServiceDesc.ServiceName,
	pb.TokenService_ServiceDesc.ServiceName,
	pb.AccountService_ServiceDesc.ServiceName,
	pb.CredentialService_ServiceDesc.ServiceName,
	pb.AuditService_ServiceDesc.ServiceName,
}

// refresh reads readiness now and publishes it.
func (h *healthServer) refresh(ctx context.Context) {
	st := healthpb.HealthCheckResponse_SERVING
	if !h.svc.Ready(ctx).Ready {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, name := range healthServices {
		h.SetServingStatus(name, st)
	}
}

// Check answers from a fresh readiness read, so a probe never sees a
// state older than the call.
func (h *healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.refresh(ctx)
	return h.Server.Check(ctx, req)
}

// Watch is the standard Watch, ended when the server shuts down: a
// watcher (a load balancer) must not hold graceful shutdown open for the
// whole grace period.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return h.Server.Watch(req, &watchStream{Health_WatchServer: stream, ctx: ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }

// shutdown reports NOT_SERVING to every watcher and then ends the
// Watch streams.
func (h *healthServer) shutdown() {
	h.Server.Shutdown()
	close(h.stopping)
}

// poll publishes readiness every interval for Watch streams, until ctx
// ends.
func (h *healthServer) poll(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, every)
		h.refresh(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
