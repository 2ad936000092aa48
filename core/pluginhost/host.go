package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// ErrChecksum: the plugin binary does not have the SHA-256 its catalog
// entry names.
var ErrChecksum = errors.New("plugin checksum mismatch")

// Plugin is one entry of the plugin catalog.
type Plugin struct {
	Name   string // used as plugin:NAME in backend URIs
	Path   string // the binary
	SHA256 string // hex SHA-256 of the binary; checked on the bytes executed
	// Env names the environment variables passed through to the plugin
	// (for example a custody passphrase variable). Nothing else of the
	// server's environment reaches it.
	Env []string
}

// Options tune supervision. Zero fields take the defaults below.
type Options struct {
	CallTimeout    time.Duration // bound on every backend call; default 5s
	StartTimeout   time.Duration // bound on start, handshake and Open; default 10s
	HealthInterval time.Duration // how often a plugin is probed; default 500ms
	HealthTimeout  time.Duration // bound on one probe; default 1s
	FailThreshold  int           // failed probes in a row that mean "hung"; default 3
	BackoffMin     time.Duration // first restart delay; default 100ms
	BackoffMax     time.Duration // restart delay cap; default 5s
}

func (o *Options) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.CallTimeout, 5*time.Second)
	def(&o.StartTimeout, 10*time.Second)
	def(&o.HealthInterval, 500*time.Millisecond)
	def(&o.HealthTimeout, time.Second)
	def(&o.BackoffMin, 100*time.Millisecond)
	def(&o.BackoffMax, 5*time.Second)
	if o.FailThreshold <= 0 {
		o.FailThreshold = 3
	}
}

// RecoveryBound is the longest a crashed plugin stays down when it starts
// cleanly again: detection, the capped backoff, and a start.
func (o Options) RecoveryBound() time.Duration {
	o.applyDefaults()
	return time.Duration(o.FailThreshold)*(o.HealthInterval+o.HealthTimeout) + o.BackoffMax + o.StartTimeout
}

// EventRecorder stores an audit event (storage.AuditStore.AppendEvent).
type EventRecorder func(ctx context.Context, ev audit.Event) error

// Host starts and supervises plugins. It is safe for concurrent use.
type Host struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	sups     []stopper
	record   EventRecorder
	pending  []audit.Event
	flushing bool
	closed   bool
}

type stopper interface {
	status() Status
	stop(ctx context.Context)
}

// New returns a host with no plugins running.
func New(opts Options, logger *slog.Logger) *Host {
	opts.applyDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Host{opts: opts, log: logger}
}

// Status is one plugin's state, for readiness and logs.
type Status struct {
	Name     string // catalog name
	Kind     string // storage, custody, audit
	Up       bool
	PID      int // 0 while down
	Restarts int // restarts since the server started
	// LastError is a short, client-safe reason for the last crash.
	LastError string
}

// Statuses reports every plugin the host runs, in start order.
func (h *Host) Statuses() []Status {
	h.mu.Lock()
	sups := slices.Clone(h.sups)
	h.mu.Unlock()
	out := make([]Status, 0, len(sups))
	for _, s := range sups {
		out = append(out, s.status())
	}
	return out
}

// RecordTo makes the host store its plugin_start and plugin_crash events
// with rec from now on, starting with those raised before it was set.
func (h *Host) RecordTo(rec EventRecorder) {
	h.mu.Lock()
	h.record = rec
	h.mu.Unlock()
	h.flush()
}

// Close stops every plugin: the backend is closed, then the process is
// ended (killed after a short grace). It waits for all of them.
func (h *Host) Close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	sups := slices.Clone(h.sups)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range sups {
		wg.Go(func() { s.stop(ctx) })
	}
	wg.Wait()
	h.flushOnce(ctx)
}

func (h *Host) add(s stopper) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sups = append(h.sups, s)
}

// emit queues an audit event and stores it as soon as a recorder can.
func (h *Host) emit(typ audit.Type, outcome audit.Outcome, details map[string]string) {
	ev := audit.Event{
		ID:      uuid.NewString(),
		Time:    time.Now().UTC(),
		Type:    typ,
		Outcome: outcome,
		Details: details,
	}
	if host, err := os.Hostname(); err == nil {
		ev.Details["node"] = host
	}
	h.mu.Lock()
	h.pending = append(h.pending, ev)
	h.mu.Unlock()
	h.flush()
}

// flush stores pending events in the background, retrying until the
// recorder takes them (storage may be the plugin that just crashed).
func (h *Host) flush() {
	h.mu.Lock()
	if h.flushing || h.record == nil || len(h.pending) == 0 {
		h.mu.Unlock()
		return
	}
	h.flushing = true
	h.mu.Unlock()
	go func() {
		delay := h.opts.BackoffMin
		for {
			ctx, cancel := context.WithTimeout(context.Background(), h.opts.CallTimeout)
			left := h.flushOnce(ctx)
			cancel()
			h.mu.Lock()
			if left == 0 || h.closed {
				h.flushing = false
				h.mu.Unlock()
				return
			}
			h.mu.Unlock()
			time.Sleep(delay)
			delay = min(2*delay, h.opts.BackoffMax)
		}
	}()
}

// flushOnce stores pending events in order until one fails; it returns
// how many are left.
func (h *Host) flushOnce(ctx context.Context) int {
	for {
		h.mu.Lock()
		if h.record == nil || len(h.pending) == 0 {
			n := len(h.pending)
			h.mu.Unlock()
			return n
		}
		ev, rec := h.pending[0], h.record
		h.mu.Unlock()
		// A conflict means an earlier attempt that timed out did store it.
		if err := rec(ctx, ev); err != nil && !errors.Is(err, sdk.ErrConflict) {
			h.log.Debug("plugin host: audit event not stored yet", "type", ev.Type, "err", err)
			h.mu.Lock()
			n := len(h.pending)
			h.mu.Unlock()
			return n
		}
		h.mu.Lock()
		h.pending = h.pending[1:]
		h.mu.Unlock()
	}
}

func kindErr(name string, err error) error {
	return fmt.Errorf("plugin %s: %w", name, err)
}

// passEnv returns the named variables of the server's environment that
// are set, as NAME=value pairs.
func passEnv(names []string) []string {
	env := []string{}
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			env = append(env, n+"="+v)
		}
	}
	return env
}
