package grpc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/metacircular/mcias/api/frontend"
	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/core"
)

// Config tunes the transport.
type Config struct {
	// TrustedProxies are the CIDRs or IPs whose x-forwarded-for metadata
	// is believed, with the rule REST applies to X-Forwarded-For.
	TrustedProxies []string
	// MaxRecvBytes caps request messages; 0 means 64 KiB (REST's body cap).
	MaxRecvBytes int
	// Limiter is the per-IP limit on calls that check a password. Nil:
	// one is built from LoginPerMinute and LoginBurst (0: 30/min, burst
	// 10). mciassrv passes the REST frontend's, so both share a budget.
	Limiter        *frontend.Limiter
	LoginPerMinute float64
	LoginBurst     int
	// HealthInterval is how often readiness is pushed to health Watch
	// streams; Check always reads it fresh. 0 means 5s.
	HealthInterval time.Duration
	// CallTimeout bounds every unary call, whatever deadline the client
	// set (REST's read and write timeouts do the same); 0 means 30s.
	CallTimeout time.Duration
	Logger      *slog.Logger
}

// Server is the gRPC frontend.
type Server struct {
	svc    *core.Service
	grpc   *grpc.Server
	health *healthServer
	ips    *frontend.ClientIP
	limit  *frontend.Limiter
	log    *slog.Logger

	callTimeout time.Duration

	stopHealth context.CancelFunc
	healthDone chan struct{}
	stopOnce   sync.Once
}

// New builds the gRPC frontend over svc. opts are added to the server's
// options; mciassrv passes the TLS credentials that way.
func New(svc *core.Service, cfg Config, opts ...grpc.ServerOption) (*Server, error) {
	if cfg.MaxRecvBytes <= 0 {
		cfg.MaxRecvBytes = 64 << 10
	}
	if cfg.Limiter == nil {
		if cfg.LoginPerMinute <= 0 {
			cfg.LoginPerMinute = 30
		}
		if cfg.LoginBurst <= 0 {
			cfg.LoginBurst = 10
		}
		cfg.Limiter = frontend.NewLimiter(cfg.LoginPerMinute, cfg.LoginBurst)
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ips, err := frontend.NewClientIP(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("grpc: %w", err)
	}
	s := &Server{svc: svc, ips: ips, limit: cfg.Limiter, log: cfg.Logger, callTimeout: cfg.CallTimeout}
	s.health = &healthServer{Server: health.NewServer(), svc: svc, stopping: make(chan struct{})}

	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		// REST caps headers at 64 KiB and a client holds one request per
		// connection; bound metadata and streams per connection likewise.
		grpc.MaxHeaderListSize(64 << 10),
		grpc.MaxConcurrentStreams(128),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	}, opts...)
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterAdminServiceServer(s.grpc, adminServer{Server: s})
	pb.RegisterAuthServiceServer(s.grpc, authServer{Server: s})
	pb.RegisterTokenServiceServer(s.grpc, tokenServer{Server: s})
	pb.RegisterAccountServiceServer(s.grpc, accountServer{Server: s})
	pb.RegisterCredentialServiceServer(s.grpc, credentialServer{Server: s})
	pb.RegisterAuditServiceServer(s.grpc, auditServer{Server: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	// Every method served must have an access rule; a method without one
	// would be refused at call time, so refuse to start instead.
	for name, info := range s.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			if _, ok := methodRules[full]; !ok {
				return nil, fmt.Errorf("grpc: method %s has no access rule", full)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.stopHealth, s.healthDone = cancel, make(chan struct{})
	go s.health.poll(ctx, cfg.HealthInterval, s.healthDone)
	return s, nil
}

// Serve accepts connections on ln until Stop or GracefulStop.
func (s *Server) Serve(ln net.Listener) error { return s.grpc.Serve(ln) }

// Shutdown stops accepting calls, marks health NOT_SERVING, and waits for
// running calls until ctx ends; then it cuts the rest off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopHealth()
	<-s.healthDone
	s.stopOnce.Do(s.health.shutdown)
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return fmt.Errorf("grpc: shutdown: %w", ctx.Err())
	}
}

// Stop cuts every connection at once.
func (s *Server) Stop() {
	s.stopHealth()
	<-s.healthDone
	s.grpc.Stop()
}
