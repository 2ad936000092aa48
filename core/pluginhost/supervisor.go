package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	sdkplugin "github.com/metacircular/mcias/sdk/plugin"
)

// kindOps is what supervision needs to know about one kind of backend.
type kindOps[T any] struct {
	kind sdkplugin.Kind
	// open dispenses the backend from a started client and opens uri.
	open func(ctx context.Context, c *goplugin.Client, uri string) (T, error)
	// probe is a cheap call that proves the plugin answers.
	probe func(ctx context.Context, b T) error
	// close releases the backend inside the plugin.
	close func(ctx context.Context, b T) error
}

// supervisor keeps one plugin process running and hands out its backend.
type supervisor[T any] struct {
	host *Host
	p    Plugin
	uri  string
	ops  kindOps[T]
	log  *slog.Logger

	poke chan struct{}
	quit chan struct{}
	done chan struct{}

	mu       sync.RWMutex
	up       bool
	cur      T
	client   *goplugin.Client
	cmd      *exec.Cmd
	restarts int
	lastErr  string
	stopped  bool
}

// start launches the plugin and opens its backend; the first start must
// succeed, so a broken catalog entry stops the server at start-up.
func start[T any](ctx context.Context, h *Host, p Plugin, uri string, ops kindOps[T]) (*supervisor[T], error) {
	s := &supervisor[T]{
		host: h, p: p, uri: uri, ops: ops,
		log:  h.log.With("plugin", p.Name, "kind", string(ops.kind)),
		poke: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	h.add(s)
	go s.run()
	return s, nil
}

// launch starts one process, opens the backend and marks it up.
func (s *supervisor[T]) launch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.host.opts.StartTimeout)
	defer cancel()
	cmd, release, err := verifiedCommand(s.p)
	if err != nil {
		return err
	}
	defer release()
	cmd.Env = passEnv(s.p.Env)
	// ClientConfig tags the records with plugin=NAME itself.
	cfg := sdkplugin.ClientConfig(s.ops.kind, s.p.Name, cmd, s.host.log.With("kind", string(s.ops.kind)))
	cfg.SkipHostEnv = true
	cfg.StartTimeout = s.host.opts.StartTimeout
	client := goplugin.NewClient(cfg)
	if _, err := client.Start(); err != nil {
		client.Kill()
		return kindErr(s.p.Name, fmt.Errorf("start: %w", err))
	}
	b, err := s.ops.open(ctx, client, s.uri)
	if err != nil {
		client.Kill()
		return kindErr(s.p.Name, fmt.Errorf("open backend: %w", err))
	}
	s.mu.Lock()
	s.up, s.cur, s.client, s.cmd = true, b, client, cmd
	restarts := s.restarts
	s.mu.Unlock()
	pid := 0
	if cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	s.log.Info("plugin started", "pid", pid, "restarts", restarts)
	s.host.emit(audit.PluginStart, audit.Success, map[string]string{
		"plugin": s.p.Name, "kind": string(s.ops.kind),
		"pid": strconv.Itoa(pid), "restarts": strconv.Itoa(restarts),
	})
	return nil
}

// get returns the backend and a context bounded by CallTimeout, or
// sdk.ErrUnavailable at once while the plugin is down.
func (s *supervisor[T]) get(ctx context.Context) (T, context.Context, context.CancelFunc, error) {
	s.mu.RLock()
	up, b := s.up, s.cur
	s.mu.RUnlock()
	if !up {
		var zero T
		return zero, nil, nil, fmt.Errorf("plugin %s is down: %w", s.p.Name, sdk.ErrUnavailable)
	}
	cctx, cancel := context.WithTimeout(ctx, s.host.opts.CallTimeout)
	return b, cctx, cancel, nil
}

// observe looks at a call's error: an unavailable plugin is probed now
// rather than at the next tick.
func (s *supervisor[T]) observe(err error) {
	if err != nil && errors.Is(err, sdk.ErrUnavailable) {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// run watches the plugin and restarts it when it dies or hangs.
func (s *supervisor[T]) run() {
	defer close(s.done)
	backoff := s.host.opts.BackoffMin
	for {
		startedAt := time.Now()
		reason := s.watch()
		if reason == "" {
			return // stopping
		}
		s.down(reason)
		// A plugin that ran well for a while starts from the shortest
		// delay again; one that keeps crashing backs off.
		if time.Since(startedAt) > 10*s.host.opts.BackoffMax {
			backoff = s.host.opts.BackoffMin
		}
		for {
			select {
			case <-s.quit:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.host.opts.BackoffMax)
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-s.quit:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := s.launch(ctx)
			cancel()
			if err == nil {
				break
			}
			s.log.Error("plugin restart failed", "err", err, "retry_in", backoff)
		}
	}
}

// watch returns why the plugin is gone ("exited", "unresponsive"), or ""
// when the supervisor is stopping.
func (s *supervisor[T]) watch() string {
	t := time.NewTicker(s.host.opts.HealthInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-s.quit:
			return ""
		case <-t.C:
		case <-s.poke:
		}
		s.mu.RLock()
		client, b := s.client, s.cur
		s.mu.RUnlock()
		if client.Exited() {
			return "exited"
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.host.opts.HealthTimeout)
		err := s.ops.probe(ctx, b)
		cancel()
		if err == nil {
			failures = 0
			continue
		}
		if client.Exited() {
			return "exited"
		}
		failures++
		s.log.Warn("plugin health check failed", "err", err, "failures", failures)
		if failures >= s.host.opts.FailThreshold {
			// Calls to a process that just died fail before go-plugin
			// has reaped it; give that a moment so the reason is right.
			if exitedWithin(client, s.host.opts.HealthTimeout) {
				return "exited"
			}
			return "unresponsive"
		}
	}
}

// down marks the plugin unavailable, makes sure its process is gone, and
// records the crash.
func (s *supervisor[T]) down(reason string) {
	s.mu.Lock()
	var zero T
	client, cmd := s.client, s.cmd
	s.up, s.cur, s.client, s.cmd = false, zero, nil, nil
	s.lastErr = reason
	restarts := s.restarts
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		// A hung plugin is killed outright; Kill below then only
		// collects the process and its goroutines.
		_ = cmd.Process.Kill()
	}
	client.Kill()
	s.log.Error("plugin crashed", "reason", reason, "restarts", restarts)
	s.host.emit(audit.PluginCrash, audit.Failure, map[string]string{
		"plugin": s.p.Name, "kind": string(s.ops.kind), "reason": reason,
		"restarts": strconv.Itoa(restarts),
	})
}

func (s *supervisor[T]) status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{Name: s.p.Name, Kind: string(s.ops.kind), Up: s.up, Restarts: s.restarts, LastError: s.lastErr}
	if s.up && s.cmd != nil && s.cmd.Process != nil {
		st.PID = s.cmd.Process.Pid
	}
	return st
}

// signal sends sig to the running plugin process; it does nothing while
// the plugin is down.
func (s *supervisor[T]) signal(sig os.Signal) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.up || s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	return s.cmd.Process.Signal(sig)
}

// stop ends supervision, closes the backend (bounded by ctx) and ends the
// process. It is idempotent.
func (s *supervisor[T]) stop(ctx context.Context) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.stopped = true
	s.mu.Unlock()
	close(s.quit)
	<-s.done
	s.mu.Lock()
	up, b, client := s.up, s.cur, s.client
	var zero T
	s.up, s.cur, s.client, s.cmd = false, zero, nil, nil
	s.mu.Unlock()
	if up {
		cctx, cancel := context.WithTimeout(ctx, s.host.opts.CallTimeout)
		if err := s.ops.close(cctx, b); err != nil {
			s.log.Warn("plugin close failed", "err", err)
		}
		cancel()
	}
	if client != nil {
		client.Kill()
	}
	s.log.Info("plugin stopped")
}

// exitedWithin reports whether the plugin process exits within d.
func exitedWithin(c *goplugin.Client, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
