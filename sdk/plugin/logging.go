package plugin

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// How plugin logs reach the host's log:
//
//	plugin backend --slog--> hclogHandler --hclog JSON--> plugin stderr
//	  --> go-plugin (host) parses each line --> hclogAdapter --> host slog
//
// go-plugin speaks hclog on both ends; the host and the backends speak
// slog. The two adapters below are the only bridges.

// envLogLevel names the variable through which the host tells the plugin
// the lowest level it keeps (an hclog level name).
const envLogLevel = "MCIAS_PLUGIN_LOG_LEVEL"

// levelTrace is hclog's Trace in slog terms.
const levelTrace = slog.LevelDebug - 4

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

// hclogAdapter is an hclog.Logger that writes to a slog.Logger: the host
// side, given to go-plugin as ClientConfig.Logger. go-plugin names the
// logger of a plugin's stderr after the binary; that name is kept as the
// attribute "logger".
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger) *hclogAdapter { return &hclogAdapter{l: l} }

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level == hclog.NoLevel {
		return
	}
	lvl := slogLevel(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, lvl) {
		return
	}
	r := slog.NewRecord(time.Now(), lvl, msg, 0)
	if a.name != "" {
		r.AddAttrs(slog.String("logger", a.name))
	}
	r.Add(renameKeys(args)...)
	_ = a.l.Handler().Handle(ctx, r)
}

// renamed maps keys go-plugin uses to names that do not collide with the
// host's: "plugin" (go-plugin's binary path) would shadow plugin=NAME, and
// "timestamp" (the plugin's own clock, in ms) sits beside the record time.
var renamed = map[string]string{"plugin": "plugin_path", "timestamp": "plugin_time"}

func renameKeys(args []any) []any {
	var out []any // a copy, made only when a key is renamed
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		if n, ok := renamed[k]; ok {
			if out == nil {
				out = slices.Clone(args)
			}
			out[i] = n
		}
	}
	if out == nil {
		return args
	}
	return out
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.l.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l.With(args...), name: a.name, implied: append(a.implied[:len(a.implied):len(a.implied)], args...)}
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l, name: name, implied: a.implied}
}

// SetLevel is a no-op: the level belongs to the host's slog handler
// (hclog allows this for loggers that cannot change level).
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the host's handler keeps.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	lvl := slog.LevelInfo
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		lvl = slogLevel(opts.ForceLevel)
	}
	h := a.l.Handler()
	if a.name != "" {
		h = h.WithAttrs([]slog.Attr{slog.String("logger", a.name)})
	}
	return slog.NewLogLogger(h, lvl)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(opts).Writer()
}

// lineLogger turns what a plugin writes to its os.Stdout or os.Stderr
// (which go-plugin carries over its stdio stream) into one warning per
// line, so stray output is seen rather than dropped.
type lineLogger struct {
	l   *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(line) > 0 {
			w.l.Warn("plugin wrote outside its logger", "line", string(line))
		}
		w.buf = w.buf[i+1:]
	}
	// A line without an end must not grow the buffer without bound.
	if len(w.buf) > 64<<10 {
		w.l.Warn("plugin wrote outside its logger", "line", string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// hclogHandler is a slog.Handler that writes to an hclog.Logger: the
// plugin side, so a backend's slog records leave through the same hclog
// JSON stream go-plugin parses on the host. Groups flatten into dotted
// keys.
type hclogHandler struct {
	l      hclog.Logger
	attrs  []any // flattened key, value pairs from WithAttrs
	prefix string
}

func newHCLogHandler(l hclog.Logger) *hclogHandler { return &hclogHandler{l: l} }

func (h *hclogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return hclogLevel(l) >= h.l.GetLevel()
}

func (h *hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = appendAttr(args, h.prefix, a)
		return true
	})
	h.l.Log(hclogLevel(r.Level), r.Message, args...)
	return nil
}

func (h *hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]any(nil), h.attrs...)
	for _, a := range attrs {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *hclogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

// appendAttr appends a's key and value, flattening groups.
func appendAttr(args []any, prefix string, a slog.Attr) []any {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			args = appendAttr(args, p, g)
		}
		return args
	}
	if a.Key == "" {
		return args
	}
	return append(args, prefix+a.Key, v.Any())
}

// pluginLogger is the hclog logger of a plugin process: JSON on the
// process's real stderr (captured before go-plugin redirects os.Stderr),
// which the host reads and re-logs, at the level the host asked for.
func pluginLogger() hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(envLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}
