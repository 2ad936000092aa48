// Package plugin runs MCIAS backends as hashicorp/go-plugin subprocesses
// over gRPC: storage (storage.Store), key custody (custody.Custodian) and
// audit sinks (audit.Sink). The same Factory a builtin registers serves
// in-process and, through this package, from a plugin binary; the host
// sees the same interface either way.
//
// # Writing a plugin
//
// A plugin is a main package that hands its factory to one Serve function:
//
//	package main
//
//	import (
//		"github.com/metacircular/mcias/sdk/plugin"
//		"example.com/mystore"
//	)
//
//	func main() { plugin.ServeStorage(mystore.Open) }
//
// ServeStorage, ServeCustody and ServeAudit block while the host uses the
// plugin. The host starts the binary, calls Open(uri) once with the URI
// from its configuration (the factory's URI), then the contract's methods,
// then Close. A plugin author checks a backend with the sdk conformance
// suites (storagetest, custodytest, audittest), directly, through
// StorageOverGRPC / CustodyOverGRPC / AuditOverGRPC, and as the built
// binary through ClientConfig and OpenStorage / OpenCustody / OpenAudit;
// package plugintest builds the binary and starts it as the server would.
//
// Logs: the logger the factory receives writes hclog JSON lines to the
// process's stderr; the host parses them and re-logs each record in its
// own structured log, at the same level, with the attribute plugin=NAME
// (the catalog name) and logger=<binary name>. The host passes the lowest
// level it keeps in MCIAS_PLUGIN_LOG_LEVEL. Anything the plugin writes to
// os.Stdout or os.Stderr directly arrives as a warning, one per line, with
// stream=stdout or stream=stderr. Never log secrets: the host's log is
// the operator's.
//
// Logs written through slog's or log's default logger take the same road.
//
// Lifetime: the plugin exits on its own when its parent process changes
// (the host died, even by SIGKILL; checked every 500ms) and on SIGTERM,
// closing its backend first (waiting at most about 6s). SIGINT is
// ignored, as go-plugin does: the host decides when its plugins stop.
// go-plugin hands the plugin the host's stdin, so stdin EOF says nothing
// about the host and is not watched.
//
// # Host API
//
// The supervisor in core uses:
//
//	type Kind string // KindStorage, KindCustody, KindAudit
//	func Handshake(kind Kind) goplugin.HandshakeConfig
//	func ClientConfig(kind Kind, name string, cmd *exec.Cmd, logger *slog.Logger) *goplugin.ClientConfig
//	func OpenStorage(ctx context.Context, c *goplugin.Client, uri string) (storage.Store, error)
//	func OpenCustody(ctx context.Context, c *goplugin.Client, uri string) (custody.Custodian, error)
//	func OpenAudit(ctx context.Context, c *goplugin.Client, uri string) (audit.Sink, error)
//
// ClientConfig turns on AutoMTLS, allows only gRPC, offers
// VersionedPlugins (protocol ProtocolVersion = 1) and leaves the client
// unmanaged: the caller runs goplugin.NewClient(cfg), owns the process and
// calls Kill. It may set SecureConfig, StartTimeout and
// cmd.SysProcAttr.Pdeathsig first. Open* start the process if needed,
// dispense the kind, call Open(uri) in the plugin and return the client
// shim. A host that needs liveness calls the backend's own Ping (storage)
// or the client's goplugin.ClientProtocol Ping.
//
// In-process, for tests: StorageOverGRPC, CustodyOverGRPC and
// AuditOverGRPC(ctx, factory, uri, logger) serve a backend over a real
// gRPC connection on a private Unix socket and return the client shim and
// a stop function.
//
// # The wire
//
// proto/mcias/plugin/{storage,custody,audit}/v1 define one RPC per method
// of the contract plus Open and Close. Only plain values cross; times as
// seconds and nanoseconds, returned in UTC; an empty byte slice may come
// back nil. Messages are bounded at 64 MiB each way.
//
// Errors cross as gRPC status codes, one per sdk kind, and come back as
// errors that errors.Is matches against that kind, with the backend's
// message kept:
//
//	sdk.ErrNotFound          NOT_FOUND
//	sdk.ErrConflict          ABORTED
//	sdk.ErrPrecondition      FAILED_PRECONDITION
//	sdk.ErrInvalidArgument   INVALID_ARGUMENT
//	sdk.ErrUnavailable       UNAVAILABLE
//	sdk.ErrNotImplemented    UNIMPLEMENTED
//	sdk.ErrInternal          INTERNAL (also any error wrapping no kind)
//
// A context deadline or cancellation crosses as gRPC carries it: the
// plugin's ctx ends when the host's does. On the host the error is both
// context.DeadlineExceeded (or context.Canceled) and sdk.ErrUnavailable,
// so a caller can tell its own deadline apart and the REST layer still
// answers 503. A transport failure (the plugin died: UNAVAILABLE or any
// error that is not a status, or a code outside the table) is
// sdk.ErrUnavailable. An answer that does not carry the record asked for
// (a buggy plugin) is sdk.ErrInternal, never a zero value. A call before
// Open or after Close is sdk.ErrUnavailable; a second Open is
// sdk.ErrPrecondition.
package plugin
