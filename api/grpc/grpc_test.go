package grpc_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	grpcapi "github.com/metacircular/mcias/api/grpc"
	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
)

// The transport rules parity cannot show (it sends well-formed calls):
// request IDs, size caps, rate-limit details, token schemes, shutdown.
// Behaviour shared with REST is api/parity's.

const adminPass = "correct horse battery staple"

func newServer(t testing.TB, cfg grpcapi.Config, sinks ...core.SinkConfig) (*grpcapi.Server, *grpc.ClientConn) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(ctx, "sqlite:"+filepath.Join(dir, "mcias.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cust, err := local.Open(ctx, "local:"+filepath.Join(dir, "keys")+"?key_file="+keyFile, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cust.Close(context.Background()) })
	svc, err := core.New(ctx, core.Config{Issuer: "https://mcias.test", Password: password.Params{Time: 2, MemoryKiB: 19456, Threads: 1}},
		core.Deps{Store: store, Custodian: cust, Logger: logger, Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	if _, err := svc.Bootstrap(ctx, "admin", adminPass); err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	srv, err := grpcapi.New(svc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return srv, conn
}

func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

func TestRequestID(t *testing.T) {
	_, conn := newServer(t, grpcapi.Config{})
	admin := pb.NewAdminServiceClient(conn)
	for _, tc := range []struct{ name, sent, want string }{
		{"case=safe id echoed", "client-id-1", "^client-id-1$"},
		{"case=unsafe id replaced", "bad id, with spaces; and more", "^[0-9a-f]{32}$"},
		{"case=none sent", "", "^[0-9a-f]{32}$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.sent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", tc.sent)
			}
			var header metadata.MD
			if _, err := admin.Health(ctx, &pb.HealthRequest{}, grpc.Header(&header)); err != nil {
				t.Fatal(err)
			}
			got := header.Get("x-request-id")
			if len(got) != 1 || !regexp.MustCompile(tc.want).MatchString(got[0]) {
				t.Errorf("x-request-id %q, want %s", got, tc.want)
			}
		})
	}
}

func TestMessageTooLarge(t *testing.T) {
	_, conn := newServer(t, grpcapi.Config{MaxRecvBytes: 1024})
	auth := pb.NewAuthServiceClient(conn)
	_, err := auth.Login(t.Context(), &pb.LoginRequest{Username: "admin", Password: strings.Repeat("x", 4096)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized login: %v, want ResourceExhausted", err)
	}
	if _, err := auth.Login(t.Context(), &pb.LoginRequest{Username: "admin", Password: adminPass}); err != nil {
		t.Fatalf("the server did not survive: %v", err)
	}
}

func TestRateLimitDetails(t *testing.T) {
	_, conn := newServer(t, grpcapi.Config{LoginPerMinute: 1, LoginBurst: 1})
	auth := pb.NewAuthServiceClient(conn)
	if _, err := auth.Login(t.Context(), &pb.LoginRequest{Username: "admin", Password: "wrong password"}); reason(err) != "invalid_credentials" {
		t.Fatalf("first attempt: %v", err)
	}
	var header metadata.MD
	_, err := auth.Login(t.Context(), &pb.LoginRequest{Username: "admin", Password: adminPass}, grpc.Header(&header))
	if status.Code(err) != codes.ResourceExhausted || reason(err) != "rate_limited" {
		t.Fatalf("second attempt: %v, want RESOURCE_EXHAUSTED rate_limited", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() < time.Second {
		t.Errorf("RetryInfo %v, want a delay of at least 1s", retry)
	}
	if got := header.Get("retry-after"); len(got) != 1 || got[0] == "0" {
		t.Errorf("retry-after header %q", got)
	}
}

func TestBearerSchemes(t *testing.T) {
	_, conn := newServer(t, grpcapi.Config{})
	tok, err := pb.NewAuthServiceClient(conn).Login(t.Context(), &pb.LoginRequest{Username: "admin", Password: adminPass})
	if err != nil {
		t.Fatal(err)
	}
	me := pb.NewAuthServiceClient(conn).Me
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{
		{"case=Bearer", "Bearer " + tok.Token, true},
		{"case=scheme case-insensitive", "bearer " + tok.Token, true},
		{"case=Basic", "Basic " + tok.Token, false},
		{"case=no token", "Bearer ", false},
		{"case=bare token", tok.Token, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", tc.header)
			_, err := me(ctx, &pb.MeRequest{})
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && (status.Code(err) != codes.Unauthenticated || reason(err) != "unauthorized") {
				t.Errorf("err = %v, want UNAUTHENTICATED unauthorized", err)
			}
		})
	}
}

// TestShutdown: an open health Watch does not hold shutdown for the
// grace period, and no call is served afterwards.
func TestShutdown(t *testing.T) {
	srv, conn := newServer(t, grpcapi.Config{})
	watch, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch update: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v (after %s)", err, time.Since(start))
	}
	for {
		resp, err := watch.Recv()
		if err != nil {
			break // the stream ended
		}
		if resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("watch update during shutdown: %s", resp.Status)
		}
	}
	if _, err := pb.NewAdminServiceClient(conn).Health(t.Context(), &pb.HealthRequest{}); err == nil {
		t.Error("a call after shutdown succeeded")
	}
}
