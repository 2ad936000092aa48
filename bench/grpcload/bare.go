package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/bench/internal/loadkit"
)

// bareFlag re-executes this program as the ceiling.
const (
	bareFlag  = "-bare"
	bareReady = "bare listening addr="
)

// startBare runs the ceiling with the instance's certificate and the key
// that signed its token, and returns its address.
func startBare(ctx context.Context, inst *instance, kids *loadkit.Children, log io.Writer) (string, error) {
	exe, err := loadkit.Self()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(exe, bareFlag, "-cert", inst.certFile, "-key", inst.keyFile, "-pub", inst.publicKeyX)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	p, err := kids.Start("bare gRPC server", cmd)
	if err != nil {
		return "", err
	}
	line, err := loadkit.ReadLine(ctx, p, stdout, bareReady, 30*time.Second)
	if err != nil {
		return "", err
	}
	addr := strings.TrimPrefix(line, bareReady)
	fmt.Fprintf(log, "bare gRPC server on %s\n", addr)
	return addr, nil
}

// bareServer is the ceiling's TokenService: one ed25519.Verify per call,
// nothing else (no interceptor, no claims, no revocation lookup).
type bareServer struct {
	pb.UnimplementedTokenServiceServer
	pub ed25519.PublicKey
}

func (b *bareServer) ValidateToken(_ context.Context, req *pb.ValidateTokenRequest) (*pb.ValidateTokenResponse, error) {
	tok := req.GetToken()
	dot := strings.LastIndexByte(tok, '.')
	if dot < 0 {
		return &pb.ValidateTokenResponse{}, nil
	}
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		return &pb.ValidateTokenResponse{}, nil
	}
	return &pb.ValidateTokenResponse{Valid: ed25519.Verify(b.pub, []byte(tok[:dot]), sig)}, nil
}

func bareMain(args []string) int {
	fs := flag.NewFlagSet("grpcload -bare", flag.ContinueOnError)
	certFile := fs.String("cert", "", "TLS certificate (PEM)")
	keyFile := fs.String("key", "", "TLS key (PEM)")
	pubX := fs.String("pub", "", "Ed25519 public key, base64url (the JWK x)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "grpcload -bare:", err)
		return 1
	}
	pub, err := base64.RawURLEncoding.DecodeString(*pubX)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fail(fmt.Errorf("bad -pub: %v", err))
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fail(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	pb.RegisterTokenServiceServer(srv, &bareServer{pub: pub})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	fmt.Println(bareReady + ln.Addr().String())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; srv.Stop() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fail(err)
	}
	return 0
}
