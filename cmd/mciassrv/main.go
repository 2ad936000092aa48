// Command mciassrv is the MCIAS server: it loads the configured storage,
// key custody and audit backends, builds the core, and serves the REST
// API and (with server.grpc_addr) the gRPC API over TLS, with one
// certificate, until SIGTERM or SIGINT.
//
//	mciassrv init [-dir run] [-listen addr] [-grpc addr] [-plugins bin/plugins]
//	                                                     lay out a development instance
//	mciassrv [serve] -config FILE                        run the server
//	mciassrv check-config -config FILE                   validate a config and exit
//	mciassrv reseal -from-config OLD -config NEW         move secrets at rest to NEW's custodian
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	grpcapi "github.com/metacircular/mcias/api/grpc"
	"github.com/metacircular/mcias/api/rest"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/pluginhost"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "init":
		fs := flag.NewFlagSet("init", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("dir", "run", "directory for the development instance")
		listen := fs.String("listen", "127.0.0.1:8443", "address the REST API will listen on")
		grpcAddr := fs.String("grpc", "127.0.0.1:9443", `address the gRPC API will listen on ("" for none)`)
		plugins := fs.String("plugins", filepath.Join("bin", "plugins"), "directory of the builtin plugin binaries (make build)")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		path, err := devInit(*dir, *listen, *grpcAddr, *plugins, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "mciassrv:", err)
			return 1
		}
		// os.Args[0] is how this binary was just run (bin/mciassrv under
		// make run), so the printed command works as is.
		fmt.Fprintf(stdout, "development instance ready; serve it with: %s serve -config %s\n", os.Args[0], path)
		return 0
	case "serve", "check-config":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		configPath := fs.String("config", "/etc/mcias/mcias.toml", "configuration file")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		cfg, err := loadConfig(*configPath, builtinSchemes())
		if err != nil {
			fmt.Fprintln(stderr, "mciassrv:", err)
			return 2
		}
		if cmd == "check-config" {
			fmt.Fprintln(stdout, "configuration is valid")
			return 0
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "mciassrv:", err)
			return 1
		}
		return 0
	case "reseal":
		return reseal(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: mciassrv init [-dir run] [-listen addr] [-grpc addr] | mciassrv [serve] -config FILE | mciassrv check-config -config FILE | mciassrv reseal -from-config OLD -config NEW")
		return 0
	default:
		fmt.Fprintf(stderr, "mciassrv: unknown command %q (init, serve, check-config, reseal)\n", cmd)
		return 2
	}
}

func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs the server until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, cfg Config, stderr io.Writer) (err error) {
	logger := newLogger(cfg.Log, stderr)

	cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	host := pluginhost.New(hostOptions(cfg.Plugins), logger)
	// Registered first, so it runs last: every backend's own Close has
	// already stopped its plugin; this catches any a failed start left.
	defer host.Close(context.Background())
	store, err := open(ctx, storageBackends, cfg.Storage, cfg.Plugins, host.Storage, logger.With("backend", "storage"))
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer closeLogged(logger, "storage", store.Close)
	custodian, err := open(ctx, custodyBackends, cfg.Custody, cfg.Plugins, host.Custodian, logger.With("backend", "custody"))
	if err != nil {
		return fmt.Errorf("custody: %w", err)
	}
	defer closeLogged(logger, "custody", custodian.Close)
	var sinks []core.SinkConfig
	for _, sc := range cfg.Audit.Sinks {
		sink, err := open(ctx, auditSinks, sc.Backend(), cfg.Plugins, host.Sink, logger.With("backend", "audit", "sink", sc.Name))
		if err != nil {
			return fmt.Errorf("audit sink %s: %w", sc.Name, err)
		}
		defer closeLogged(logger, "audit sink", sink.Close)
		sinks = append(sinks, core.SinkConfig{
			Name: sc.Name, Sink: sink, Start: sc.Start,
			Required: sc.Required, MaxLagAge: sc.MaxLag.Duration, MaxLagEvents: sc.MaxLagEvents,
		})
	}

	svc, err := core.New(ctx, core.Config{
		Issuer:              cfg.Tokens.Issuer,
		TokenTTL:            cfg.Tokens.TTL.Duration,
		ServiceTokenTTL:     cfg.Tokens.ServiceTTL.Duration,
		MaxServiceTokenTTL:  cfg.Tokens.MaxServiceTTL.Duration,
		Leeway:              cfg.Tokens.Leeway.Duration,
		Password:            cfg.passwordParams(),
		MaxConcurrentHashes: cfg.Password.MaxConcurrentHashes,
		MinPasswordLength:   cfg.Password.MinLength,
		RotateEvery:         cfg.Keys.RotateEvery.Duration,
		PublishAhead:        cfg.Keys.PublishAhead.Duration,
		RetireAfter:         cfg.Keys.RetireAfter.Duration,
		Audit:               cfg.Audit.coreDelivery(),
		LeaseTTL:            cfg.Audit.LeaseTTL.Duration,
	}, core.Deps{Store: store, Custodian: custodian, Sinks: sinks, Logger: logger})
	if err != nil {
		return fmt.Errorf("core: %w", err)
	}
	defer closeLogged(logger, "core", svc.Close)
	// Plugin events are queued until now: stored after core has read the
	// audit feed's position, the sinks get them too.
	host.RecordTo(store.Audit().AppendEvent)

	if err := bootstrapAdmin(ctx, svc, logger, stderr); err != nil {
		return err
	}

	limiter := loginLimiter(cfg.Login, store)
	api, err := rest.New(svc, rest.Config{
		TrustedProxies: cfg.Server.TrustedProxies,
		MaxBodyBytes:   cfg.Server.MaxBodyBytes,
		Limiter:        limiter,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// TLS 1.3 is preferred by the Go stack; for 1.2 allow only
		// forward-secret AEAD suites.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		TLSConfig:         tlsConf.Clone(),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.Duration,
		ReadTimeout:       cfg.Server.ReadTimeout.Duration,
		WriteTimeout:      cfg.Server.WriteTimeout.Duration,
		IdleTimeout:       cfg.Server.IdleTimeout.Duration,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	var gsrv *grpcapi.Server
	if cfg.Server.GRPCAddr != "" {
		gsrv, err = grpcapi.New(svc, grpcapi.Config{
			TrustedProxies: cfg.Server.TrustedProxies,
			MaxRecvBytes:   int(cfg.Server.MaxBodyBytes),
			Limiter:        limiter,
			CallTimeout:    cfg.Server.WriteTimeout.Duration,
			Logger:         logger,
		},
			grpc.Creds(credentials.NewTLS(tlsConf.Clone())),
			// A TLS handshake must finish in the time REST allows for
			// request headers.
			grpc.ConnectionTimeout(cfg.Server.ReadHeaderTimeout.Duration),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.Server.IdleTimeout.Duration}),
		)
		if err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var gln net.Listener
	if gsrv != nil {
		if gln, err = net.Listen("tcp", cfg.Server.GRPCAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen grpc: %w", err)
		}
	}
	logger.Info("mciassrv listening", "addr", ln.Addr().String(), "storage", cfg.Storage.URI)

	// Each listener reports once, when it stops: ErrServerClosed (REST)
	// or nil (gRPC) after a shutdown, anything else is a failure.
	errc := make(chan error, 2)
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			errc <- wrapIf("serve", err)
			return
		}
		errc <- nil
	}()
	running := 1
	if gsrv != nil {
		logger.Info("mciassrv gRPC listening", "addr", gln.Addr().String())
		go func() { errc <- wrapIf("serve grpc", gsrv.Serve(gln)) }()
		running++
	}
	var serveErr error
	select {
	case serveErr = <-errc: // one listener stopped by itself: stop the other too
		running--
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", cfg.Server.ShutdownTimeout.Duration.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.Duration)
	defer cancel()
	// Both drain at once, within one grace period.
	var wg sync.WaitGroup
	var restErr, grpcErr error
	wg.Go(func() { restErr = srv.Shutdown(sctx) })
	if gsrv != nil {
		wg.Go(func() { grpcErr = gsrv.Shutdown(sctx) })
	}
	wg.Wait()
	for ; running > 0; running-- {
		if err := <-errc; serveErr == nil {
			serveErr = err
		}
	}
	return errors.Join(serveErr, wrapIf("shutdown", restErr), wrapIf("shutdown grpc", grpcErr))
}

func wrapIf(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// bootstrapAdmin creates the first admin on an empty database, from
// MCIAS_ADMIN_USERNAME / MCIAS_ADMIN_PASSWORD or with a generated
// password that is printed once, to the terminal, never to the log. On a
// database that already has accounts nothing is created; when the
// variables were set anyway, one log line says they were ignored.
func bootstrapAdmin(ctx context.Context, svc *core.Service, logger *slog.Logger, stderr io.Writer) error {
	username := os.Getenv("MCIAS_ADMIN_USERNAME")
	if username == "" {
		username = "admin"
	}
	password := os.Getenv("MCIAS_ADMIN_PASSWORD")
	generated := password == ""
	if generated {
		var b [18]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		password = base64.RawURLEncoding.EncodeToString(b[:])
	}
	created, err := svc.Bootstrap(ctx, username, password)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if created && generated {
		fmt.Fprintf(stderr, "\n"+
			"  MCIAS created the bootstrap admin account. This password is shown once:\n\n"+
			"    username: %s\n    password: %s\n\n"+
			"  Change it after logging in (mciasctl auth password).\n\n", username, password)
	} else if created {
		fmt.Fprintf(stderr, "\n  MCIAS created the bootstrap admin account %q with the password from MCIAS_ADMIN_PASSWORD.\n\n", username)
	} else if os.Getenv("MCIAS_ADMIN_USERNAME") != "" || !generated {
		logger.Info("bootstrap admin not created: the database already has accounts; MCIAS_ADMIN_USERNAME and MCIAS_ADMIN_PASSWORD are ignored")
	}
	return nil
}

func closeLogged(logger *slog.Logger, what string, closeFn func(context.Context) error) {
	if err := closeFn(context.Background()); err != nil {
		logger.Warn("close failed", "what", what, "error", err)
	}
}
