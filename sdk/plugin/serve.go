package plugin

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/auditv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// parentPoll is how often a plugin checks that the host still runs.
const parentPoll = 500 * time.Millisecond

// closeTimeout bounds closing the backend when the plugin shuts down.
const closeTimeout = 5 * time.Second

// ServeStorage serves the store f opens as a storage plugin. Call it from
// a plugin's main; it returns when the host stops the plugin (after
// closing the store), and exits the process when the host dies or sends
// SIGTERM. Run directly, outside a host, it prints that it is a plugin and
// exits with status 1.
func ServeStorage(f storage.Factory) {
	logger := pluginLogger()
	srv := newStorageServer(f, slog.New(newHCLogHandler(logger)))
	serve(KindStorage, logger, func(s *grpc.Server) { storagev1.RegisterStorageServer(s, srv) }, srv.store.close, nil)
}

// ServeCustody serves the custodian f opens as a custody plugin; see
// ServeStorage.
func ServeCustody(f custody.Factory) {
	logger := pluginLogger()
	srv := newCustodyServer(f, slog.New(newHCLogHandler(logger)))
	serve(KindCustody, logger, func(s *grpc.Server) { custodyv1.RegisterCustodianServer(s, srv) }, srv.cust.close, nil)
}

// ServeAudit serves the sink f opens as an audit sink plugin; see
// ServeStorage. On SIGHUP the plugin calls Reopen on its sink when the
// sink is an audit.Reopener (a file it writes, after log rotation); the
// host sends that signal when it receives SIGHUP itself.
func ServeAudit(f audit.Factory) {
	logger := pluginLogger()
	srv := newAuditServer(f, slog.New(newHCLogHandler(logger)))
	serve(KindAudit, logger, func(s *grpc.Server) { auditv1.RegisterAuditSinkServer(s, srv) }, srv.sink.close, srv.reopen)
}

// serve runs the plugin. reopen, when not nil, is called on SIGHUP; a
// plugin without one ignores SIGHUP rather than die of it (a signal sent
// to the whole process group or service reaches every plugin).
func serve(kind Kind, logger hclog.Logger, register func(*grpc.Server), closeBackend func(context.Context) error, reopen func(context.Context) error) {
	shutdown := func(why string) {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := closeBackend(ctx); err != nil {
			logger.Error("close backend", "kind", string(kind), "reason", why, "error", err)
		}
	}
	// Records a backend writes through slog's or log's default logger take
	// the same road to the host as those through the logger it was given.
	slog.SetDefault(slog.New(newHCLogHandler(logger)))
	go watchHost(logger, shutdown)
	go watchHangup(kind, logger, reopen)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake(kind),
		VersionedPlugins: pluginSets(kind, &grpcPlugin{register: register}),
		GRPCServer:       newGRPCServer,
		Logger:           logger,
	})
	// Serve returns when the host asked the plugin to stop (Kill).
	shutdown("host stopped the plugin")
}

// watchHost exits the process when the host is gone: when the parent
// process changes (the host died, even by SIGKILL, and the plugin was
// re-parented) or on SIGTERM. SIGINT is left to go-plugin, which ignores
// it: a terminal's Ctrl-C reaches the whole process group, and the host
// decides when its plugins stop. The host should also set Pdeathsig; this
// is the belt to that pair of braces, and works where Pdeathsig does not
// (a host thread ending, other operating systems).
func watchHost(logger hclog.Logger, shutdown func(string)) {
	ppid := os.Getppid()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	tick := time.NewTicker(parentPoll)
	defer tick.Stop()
	for {
		select {
		case <-term:
			logger.Info("plugin received SIGTERM; exiting")
			exit(logger, shutdown, "SIGTERM", 0)
		case <-tick.C:
			if p := os.Getppid(); p != ppid {
				logger.Warn("plugin host is gone; exiting", "host_pid", ppid, "new_parent_pid", p)
				exit(logger, shutdown, "host gone", 1)
			}
		}
	}
}

// watchHangup calls reopen on every SIGHUP.
func watchHangup(kind Kind, logger hclog.Logger, reopen func(context.Context) error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for range hup {
		if reopen == nil {
			logger.Debug("SIGHUP ignored: nothing to reopen", "kind", string(kind))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if err := reopen(ctx); err != nil {
			logger.Error("SIGHUP: reopen", "kind", string(kind), "error", err)
		}
		cancel()
	}
}

// exit closes the backend and ends the process, even when the backend's
// Close ignores its deadline: a plugin that outlived its host must not
// linger because its backend hangs.
func exit(logger hclog.Logger, shutdown func(string), why string, code int) {
	done := make(chan struct{})
	go func() {
		shutdown(why)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout + time.Second):
		logger.Error("backend did not close in time; exiting anyway", "reason", why)
	}
	os.Exit(code)
}

// newGRPCServer is the plugin's gRPC server: go-plugin's options (TLS)
// plus the message bound.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	return grpc.NewServer(opts...)
}
