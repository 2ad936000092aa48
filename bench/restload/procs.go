package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one child process with the tail of its output.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
	// stopping is set before we signal it, so an exit we caused is not
	// reported as a crash.
	stopping atomic.Bool
}

// children tracks every process we start so that each is stopped on exit.
type children struct {
	log     io.Writer
	mu      sync.Mutex
	procs   []*proc
	cleanup []func()
}

// start runs cmd with its stderr (and stdout unless the caller took it)
// kept in a bounded buffer for error reports.
func (c *children) start(name string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.out
	}
	setDeathSignal(cmd)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// onExit registers f to run after every child has stopped.
func (c *children) onExit(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanup = append(c.cleanup, f)
}

// stop asks p to exit (SIGTERM: mciassrv shuts down gracefully and closes
// its database), then kills it if it has not within 10 s.
func (c *children) stop(p *proc) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.stopping.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(c.log, "restload: %s did not stop on SIGTERM; killing it\n", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll stops every child still running, then runs the cleanups.
func (c *children) stopAll() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	cleanup := c.cleanup
	c.cleanup = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(p)
		}()
	}
	wg.Wait()
	for i := len(cleanup) - 1; i >= 0; i-- {
		cleanup[i]()
	}
}

// dumpLogs writes what the children said, for an error report.
func (c *children) dumpLogs(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		s := strings.TrimSpace(p.out.String())
		if s == "" {
			continue
		}
		fmt.Fprintf(w, "--- output of %s (tail) ---\n%s\n", p.name, s)
	}
}

// exited reports an unexpected exit of p as an error, or nil while it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		if p.stopping.Load() {
			return nil
		}
		if p.err != nil {
			return fmt.Errorf("%s exited: %w", p.name, p.err)
		}
		return fmt.Errorf("%s exited", p.name)
	default:
		return nil
	}
}

// readLine waits for the first line of r with the given prefix, while
// watching p and ctx.
func readLine(ctx context.Context, p *proc, r io.Reader, prefix string, timeout time.Duration) (string, error) {
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		found := false
		for sc.Scan() {
			line := sc.Text()
			if !found && strings.HasPrefix(line, prefix) {
				found = true
				lines <- line
				continue
			}
			fmt.Fprintln(p.out, line)
		}
		if !found {
			close(lines)
		}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-lines:
		if !ok {
			<-p.done
			return "", fmt.Errorf("%s ended its output without %q: %v", p.name, prefix, p.err)
		}
		return line, nil
	case <-t.C:
		return "", fmt.Errorf("%s: no %q line after %s", p.name, prefix, timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// self is the path of this program, for re-executing it.
func self() (string, error) {
	exe, err := os.Executable()
	if err != nil || exe == "" {
		if len(os.Args) == 0 || os.Args[0] == "" {
			return "", errors.New("cannot find my own executable")
		}
		return os.Args[0], nil
	}
	return exe, nil
}
