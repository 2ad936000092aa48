// Command grpcload measures what MCIAS's gRPC frontend costs on top of the
// cryptography it cannot avoid, and prints a Markdown table for
// bench/README.md.
//
//	make build && go run ./bench/grpcload -bin bin
//
// It lays out a throwaway instance with `mciassrv init`, serves it, logs
// in over gRPC, and compares mcias.v1.TokenService/ValidateToken against a
// ceiling: a bare gRPC server, in a separate process, with the same
// certificate and the same generated service, whose ValidateToken handler
// splits the JWS and does one ed25519.Verify, with no interceptor. Same
// clients (one HTTP/2 connection each), same token, rounds alternating
// bare / MCIAS so that noise on a shared machine falls on both sides.
//
// The load is closed-loop: each client sends its next call when the
// previous answer arrived. Progress goes to stderr, the table to stdout;
// any failed or unexpected answer exits non-zero. Child processes are
// stopped on every exit path (and killed by the kernel if this process
// dies first, on Linux).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/bench/internal/loadkit"
)

type options struct {
	bin      string
	clients  int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	keep     bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == bareFlag {
		os.Exit(bareMain(os.Args[2:]))
	}
	os.Exit(driverMain(os.Args[1:], os.Stdout, os.Stderr))
}

func driverMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grpcload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.bin, "bin", "bin", "directory holding the mciassrv binary (make build)")
	fs.IntVar(&o.clients, "c", 16, "concurrent clients, one HTTP/2 connection each")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each round")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds per target (bare and mcias alternate)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary instance directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.clients < 1 || o.rounds < 1 || o.duration <= 0 || o.warmup < 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kids := &loadkit.Children{Log: stderr}
	defer kids.StopAll()
	res, err := run(ctx, o, kids, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "grpcload:", err)
		kids.DumpLogs(stderr)
		return 1
	}
	writeReport(stdout, o, res)
	return 0
}

type results struct {
	bare, mcias []loadkit.Result
}

func run(ctx context.Context, o options, kids *loadkit.Children, log io.Writer) (*results, error) {
	inst, err := startInstance(ctx, o, kids, log)
	if err != nil {
		return nil, err
	}
	bareAddr, err := startBare(ctx, inst, kids, log)
	if err != nil {
		return nil, err
	}
	res := &results{}
	for r := 1; r <= o.rounds; r++ {
		for _, t := range []struct {
			name, addr string
			dst        *[]loadkit.Result
		}{{"bare", bareAddr, &res.bare}, {"mcias", inst.grpcAddr, &res.mcias}} {
			fmt.Fprintf(log, "validate round %d/%d: %s, %d clients, %s warm-up + %s ...\n", r, o.rounds, t.name, o.clients, o.warmup, o.duration)
			lr, err := drive(ctx, t.addr, inst.tls, inst.token, o)
			if err != nil {
				return nil, fmt.Errorf("validate (%s, round %d): %w", t.name, r, err)
			}
			fmt.Fprintf(log, "  %.0f calls/s, p50 %s, p99 %s\n", lr.Rate(), loadkit.FmtDur(lr.Pct(0.50)), loadkit.FmtDur(lr.Pct(0.99)))
			*t.dst = append(*t.dst, lr)
		}
	}
	return res, nil
}

// instance is a running mciassrv with a session token.
type instance struct {
	grpcAddr          string
	certFile, keyFile string
	tls               *tls.Config // trusts the instance's development CA
	token, publicKeyX string
}

func startInstance(ctx context.Context, o options, kids *loadkit.Children, log io.Writer) (*instance, error) {
	bin, dir, err := loadkit.Workdir(kids, o.bin, "grpcload-", o.keep, log)
	if err != nil {
		return nil, err
	}
	// The server's listen log lines are off at level warn, so pick the
	// ports here; if another process takes one meanwhile, serve fails.
	restAddr, err := loadkit.FreeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := loadkit.FreeAddr()
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "init", "-dir", dir, "-listen", restAddr, "-grpc", grpcAddr).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mciassrv init: %w\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "mcias.toml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	// One access-log line per call would be part of what is measured;
	// the REST benchmark turns it off too.
	cfg := strings.Replace(string(raw), "[log]\n", "[log]\nlevel = \"warn\"\n", 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	password := randomPassword()
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Env = append(os.Environ(), "MCIAS_ADMIN_USERNAME=benchadmin", "MCIAS_ADMIN_PASSWORD="+password)
	if _, err := kids.Start("mciassrv", cmd); err != nil {
		return nil, err
	}
	inst := &instance{
		grpcAddr: grpcAddr,
		certFile: filepath.Join(dir, "tls", "cert.pem"), keyFile: filepath.Join(dir, "tls", "key.pem"),
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tls/ca.pem holds no certificate")
	}
	inst.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(inst.tls.Clone())))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := waitServing(ctx, conn, kids); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := pb.NewAuthServiceClient(conn).Login(cctx, &pb.LoginRequest{Username: "benchadmin", Password: password})
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	key, err := pb.NewAdminServiceClient(conn).GetPublicKey(cctx, &pb.GetPublicKeyRequest{})
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	inst.token, inst.publicKeyX = tok.Token, key.X
	fmt.Fprintf(log, "mciassrv gRPC on %s\n", grpcAddr)
	return inst, nil
}

// waitServing polls grpc.health.v1 until the server reports SERVING.
func waitServing(ctx context.Context, conn *grpc.ClientConn, kids *loadkit.Children) error {
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err := kids.Exited(); err != nil {
			return fmt.Errorf("before serving: %w", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("mciassrv not serving after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomPassword() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
