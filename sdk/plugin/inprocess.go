package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/auditv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// The OverGRPC helpers run a backend behind the very server and client
// shims a plugin process uses, over a real gRPC connection on a Unix
// socket in a private temporary directory (mode 0700, as go-plugin does),
// inside this process. Tests use them to hold a backend to its contract
// across the wire without building a binary. The connection is plaintext:
// only this user can reach the socket, and it is removed on stop.
//
// Each returns the client shim, already opened on uri, and a stop
// function that tears the connection and server down and closes the
// backend if the caller did not.

// StorageOverGRPC serves the store f opens from uri and returns the client
// shim.
func StorageOverGRPC(ctx context.Context, f storage.Factory, uri string, logger *slog.Logger) (storage.Store, func(), error) {
	srv := newStorageServer(f, orDiscard(logger))
	cli := &storageClient{}
	stop, err := overGRPC(ctx, func(s *grpc.Server) { storagev1.RegisterStorageServer(s, srv) },
		func(c *grpc.ClientConn) { cli.c = storagev1.NewStorageClient(c) }, srv.store.close,
		func(ctx context.Context) error { return cli.open(ctx, uri) })
	if err != nil {
		return nil, nil, err
	}
	return cli.store(), stop, nil
}

// CustodyOverGRPC serves the custodian f opens from uri and returns the
// client shim.
func CustodyOverGRPC(ctx context.Context, f custody.Factory, uri string, logger *slog.Logger) (custody.Custodian, func(), error) {
	srv := newCustodyServer(f, orDiscard(logger))
	cli := &custodyClient{}
	stop, err := overGRPC(ctx, func(s *grpc.Server) { custodyv1.RegisterCustodianServer(s, srv) },
		func(c *grpc.ClientConn) { cli.c = custodyv1.NewCustodianClient(c) }, srv.cust.close,
		func(ctx context.Context) error { return cli.open(ctx, uri) })
	if err != nil {
		return nil, nil, err
	}
	return cli, stop, nil
}

// AuditOverGRPC serves the sink f opens from uri and returns the client
// shim.
func AuditOverGRPC(ctx context.Context, f audit.Factory, uri string, logger *slog.Logger) (audit.Sink, func(), error) {
	srv := newAuditServer(f, orDiscard(logger))
	cli := &auditClient{}
	stop, err := overGRPC(ctx, func(s *grpc.Server) { auditv1.RegisterAuditSinkServer(s, srv) },
		func(c *grpc.ClientConn) { cli.c = auditv1.NewAuditSinkClient(c) }, srv.sink.close,
		func(ctx context.Context) error { return cli.open(ctx, uri) })
	if err != nil {
		return nil, nil, err
	}
	return cli, stop, nil
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// overGRPC starts a gRPC server with register on a private Unix socket,
// connects a client to it, and opens the backend through the client shim
// with open; if that fails, everything is torn down again.
func overGRPC(ctx context.Context, register func(*grpc.Server), connect func(*grpc.ClientConn),
	closeBackend func(context.Context) error, open func(context.Context) error) (func(), error) {
	stop, err := serveOverGRPC(register, connect, closeBackend)
	if err != nil {
		return nil, err
	}
	if err := open(ctx); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// serveOverGRPC starts a gRPC server with register on a private Unix
// socket and connects a client to it.
func serveOverGRPC(register func(*grpc.Server), connect func(*grpc.ClientConn), closeBackend func(context.Context) error) (func(), error) {
	dir, err := os.MkdirTemp("", "mcias-plugin-")
	if err != nil {
		return nil, fmt.Errorf("plugin over grpc: socket directory: %w: %w", sdk.ErrUnavailable, err)
	}
	sock := filepath.Join(dir, "grpc.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("plugin over grpc: listen: %w: %w", sdk.ErrUnavailable, err)
	}
	srv := newGRPCServer(nil)
	register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis) // returns when Stop closes the listener
	}()
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
	)
	if err != nil {
		srv.Stop()
		<-served
		os.RemoveAll(dir)
		return nil, fmt.Errorf("plugin over grpc: connect: %w: %w", sdk.ErrUnavailable, err)
	}
	connect(conn)
	return func() {
		_ = conn.Close()
		srv.Stop()
		<-served
		_ = closeBackend(context.Background())
		os.RemoveAll(dir)
	}, nil
}
