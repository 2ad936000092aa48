package grpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	grpcapi "github.com/metacircular/mcias/api/grpc"
	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// downSink refuses every batch, as a sink whose destination is
// unreachable does.
type downSink struct{}

func (downSink) Info(context.Context) (audit.Info, error) { return audit.Info{Name: "webhook"}, nil }
func (downSink) Close(context.Context) error              { return nil }
func (downSink) Deliver(context.Context, []audit.Event) error {
	return fmt.Errorf("connection refused: %w", sdk.ErrUnavailable)
}

// TestReadySinkStatus: Ready carries each sink's delivery status, and a
// required sink beyond its lag bound makes it Unavailable, named in the
// message, with the report in the details (as REST's 503 body).
func TestReadySinkStatus(t *testing.T) {
	_, conn := newServer(t, grpcapi.Config{}, core.SinkConfig{Name: "siem", Sink: downSink{}, Required: true, MaxLagEvents: 1})
	for range 2 { // failed logins are stored events
		_, _ = pb.NewAuthServiceClient(conn).Login(t.Context(), &pb.LoginRequest{Username: "admin", Password: "wrong password here"})
	}
	_, err := pb.NewAdminServiceClient(conn).Ready(t.Context(), &pb.ReadyRequest{})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "audit:siem") {
		t.Fatalf("ready: %v", err)
	}
	var rep *pb.ReadyResponse
	for _, d := range st.Details() {
		if r, ok := d.(*pb.ReadyResponse); ok {
			rep = r
		}
	}
	b := rep.GetBackends()["audit:siem"]
	if sk := b.GetSink(); b.GetStatus() != "down" || sk == nil || !sk.LagExceeded || !sk.Required || sk.LagEvents < 2 || sk.Cursor != 0 {
		t.Fatalf("siem: %v", b)
	}
}
