package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/auditv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// Kind is what a plugin provides: one of the three backend contracts.
type Kind string

const (
	KindStorage Kind = "storage" // a storage.Store
	KindCustody Kind = "custody" // a custody.Custodian
	KindAudit   Kind = "audit"   // an audit.Sink
)

// ProtocolVersion is the wire protocol version this package speaks for
// every kind (proto/mcias/plugin/<kind>/v1). A later version is added
// beside it in VersionedPlugins, so hosts and plugins negotiate.
const ProtocolVersion = 1

// maxMessage bounds one gRPC message each way. gRPC's 4 MiB default is
// too small for an unpaged ListTokens or a large Deliver batch; 64 MiB
// still refuses a runaway answer.
const maxMessage = 64 << 20

// Handshake returns the go-plugin handshake of a kind. Each kind has its
// own magic cookie, so a binary started as the wrong kind refuses to run
// and the host reports that it exited before connecting. The cookie is a
// guard against mistakes, not a security measure (that is the catalog's
// SHA-256 and AutoMTLS).
func Handshake(kind Kind) goplugin.HandshakeConfig {
	h := goplugin.HandshakeConfig{ProtocolVersion: ProtocolVersion}
	switch kind {
	case KindStorage:
		h.MagicCookieKey, h.MagicCookieValue = "MCIAS_STORAGE_PLUGIN", "6f1c4a0e-storage-b3a5e6d2c8f94b17"
	case KindCustody:
		h.MagicCookieKey, h.MagicCookieValue = "MCIAS_CUSTODY_PLUGIN", "9d27e3b1-custody-4e8a0c5f7b6d2a91"
	case KindAudit:
		h.MagicCookieKey, h.MagicCookieValue = "MCIAS_AUDIT_PLUGIN", "2b8f5d9c-audit-a61e3f0d4c7b8e25"
	}
	return h
}

// grpcPlugin is the go-plugin glue of one kind: register is set on the
// plugin side (it registers the server shim), client on the host side
// (it wraps the connection in the client shim).
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	register func(*grpc.Server)
	client   func(*grpc.ClientConn) any
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	if p.register == nil {
		return fmt.Errorf("mcias plugin: no server shim registered")
	}
	p.register(s)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	if p.client == nil {
		return nil, fmt.Errorf("mcias plugin: no client shim registered")
	}
	return p.client(c), nil
}

// pluginSets is the plugin map of a kind: one plugin, named after the
// kind, under every protocol version spoken.
func pluginSets(kind Kind, p *grpcPlugin) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		ProtocolVersion: {string(kind): p},
	}
}

// hostPlugin is the host side of a kind.
func hostPlugin(kind Kind) *grpcPlugin {
	switch kind {
	case KindStorage:
		return &grpcPlugin{client: func(c *grpc.ClientConn) any { return &storageClient{c: storagev1.NewStorageClient(c)} }}
	case KindCustody:
		return &grpcPlugin{client: func(c *grpc.ClientConn) any { return &custodyClient{c: custodyv1.NewCustodianClient(c)} }}
	case KindAudit:
		return &grpcPlugin{client: func(c *grpc.ClientConn) any { return &auditClient{c: auditv1.NewAuditSinkClient(c)} }}
	}
	return &grpcPlugin{}
}

// ClientConfig returns the go-plugin configuration that runs cmd as a
// plugin of kind. name is the plugin's name in the catalog: every log
// record the plugin writes, and every record go-plugin writes about it,
// reaches logger tagged plugin=name.
//
// The configuration turns AutoMTLS on, allows gRPC only, offers the
// versioned plugin sets, and leaves the client unmanaged (Managed=false):
// the caller owns the process and must Kill the client. The caller may set
// SecureConfig, StartTimeout and cmd.SysProcAttr (Pdeathsig) itself.
// ClientConfig appends MCIAS_PLUGIN_LOG_LEVEL to cmd.Env so the plugin
// does not format records the host would drop.
func ClientConfig(kind Kind, name string, cmd *exec.Cmd, logger *slog.Logger) *goplugin.ClientConfig {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hl := newHCLogAdapter(logger.With("plugin", name))
	if cmd != nil {
		cmd.Env = append(cmd.Env, envLogLevel+"="+hl.GetLevel().String())
	}
	return &goplugin.ClientConfig{
		HandshakeConfig:  Handshake(kind),
		VersionedPlugins: pluginSets(kind, hostPlugin(kind)),
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          false,
		Logger:           hl,
		SyncStdout:       &lineLogger{l: logger.With("plugin", name, "stream", "stdout")},
		SyncStderr:       &lineLogger{l: logger.With("plugin", name, "stream", "stderr")},
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		},
	}
}

// dispense starts the plugin process if it is not running and returns the
// client shim of kind.
func dispense(c *goplugin.Client, kind Kind) (any, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("%s plugin: start: %w: %w", kind, sdk.ErrUnavailable, err)
	}
	raw, err := rpc.Dispense(string(kind))
	if err != nil {
		return nil, fmt.Errorf("%s plugin: dispense: %w: %w", kind, sdk.ErrUnavailable, err)
	}
	return raw, nil
}

// OpenStorage starts the plugin behind c if needed, asks it to open the
// store at uri with its factory, and returns the client shim. c must come
// from ClientConfig(KindStorage, ...). Errors: the backend's own (for
// example sdk.ErrInvalidArgument for a bad URI), or sdk.ErrUnavailable
// when the plugin cannot be started or reached.
func OpenStorage(ctx context.Context, c *goplugin.Client, uri string) (storage.Store, error) {
	raw, err := dispense(c, KindStorage)
	if err != nil {
		return nil, err
	}
	s, ok := raw.(*storageClient)
	if !ok {
		return nil, fmt.Errorf("storage plugin: client is not configured for kind storage (got %T): %w", raw, sdk.ErrInvalidArgument)
	}
	if err := s.open(ctx, uri); err != nil {
		return nil, err
	}
	return s.store(), nil
}

// OpenCustody is OpenStorage for a custody plugin.
func OpenCustody(ctx context.Context, c *goplugin.Client, uri string) (custody.Custodian, error) {
	raw, err := dispense(c, KindCustody)
	if err != nil {
		return nil, err
	}
	cc, ok := raw.(*custodyClient)
	if !ok {
		return nil, fmt.Errorf("custody plugin: client is not configured for kind custody (got %T): %w", raw, sdk.ErrInvalidArgument)
	}
	if err := cc.open(ctx, uri); err != nil {
		return nil, err
	}
	return cc, nil
}

// OpenAudit is OpenStorage for an audit sink plugin.
func OpenAudit(ctx context.Context, c *goplugin.Client, uri string) (audit.Sink, error) {
	raw, err := dispense(c, KindAudit)
	if err != nil {
		return nil, err
	}
	a, ok := raw.(*auditClient)
	if !ok {
		return nil, fmt.Errorf("audit plugin: client is not configured for kind audit (got %T): %w", raw, sdk.ErrInvalidArgument)
	}
	if err := a.open(ctx, uri); err != nil {
		return nil, err
	}
	return a, nil
}
