package loadkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Proc is one child process with the tail of its output.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
	// stopping is set before we signal it, so an exit we caused is not
	// reported as a crash.
	stopping atomic.Bool
}

// Children tracks every process a run starts so that each is stopped on
// the way out. Log receives notes about children that had to be killed.
type Children struct {
	Log     io.Writer
	mu      sync.Mutex
	procs   []*Proc
	cleanup []func()
}

// Start runs cmd with its stderr (and stdout unless the caller took it)
// kept in a bounded buffer for error reports. The child dies with this
// process on Linux.
func (c *Children) Start(name string, cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Name: name, Cmd: cmd, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
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

// OnExit registers f to run after every child has stopped, in reverse
// order of registration.
func (c *Children) OnExit(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanup = append(c.cleanup, f)
}

// Stop asks p to exit (SIGTERM: mciassrv shuts down gracefully and closes
// its database), then kills it if it has not within 10 s.
func (c *Children) Stop(p *Proc) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.stopping.Store(true)
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		if c.Log != nil {
			fmt.Fprintf(c.Log, "%s did not stop on SIGTERM; killing it\n", p.Name)
		}
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// StopAll stops every child still running, then runs the cleanups.
func (c *Children) StopAll() {
	c.mu.Lock()
	procs := append([]*Proc(nil), c.procs...)
	cleanup := c.cleanup
	c.cleanup = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { c.Stop(p) })
	}
	wg.Wait()
	for i := len(cleanup) - 1; i >= 0; i-- {
		cleanup[i]()
	}
}

// Exited reports the first unexpected exit of a child as an error, or
// nil while they all run.
func (c *Children) Exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if err := p.Exited(); err != nil {
			return err
		}
	}
	return nil
}

// DumpLogs writes what the children said, for an error report.
func (c *Children) DumpLogs(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		s := strings.TrimSpace(p.out.String())
		if s == "" {
			continue
		}
		fmt.Fprintf(w, "--- output of %s (tail) ---\n%s\n", p.Name, s)
	}
}

// Exited reports an unexpected exit of p as an error, or nil while it
// runs.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		if p.stopping.Load() {
			return nil
		}
		if p.err != nil {
			return fmt.Errorf("%s exited: %w", p.Name, p.err)
		}
		return fmt.Errorf("%s exited", p.Name)
	default:
		return nil
	}
}

// Wait waits for p to exit, or for ctx, and returns how it exited.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s: %w", p.Name, p.err)
		}
		return nil
	}
}

// ReadLine waits for the first line of r with the given prefix, while
// watching p and ctx. Every other line goes to p's output tail, and r is
// drained until it ends so the child never blocks on a full pipe.
func ReadLine(ctx context.Context, p *Proc, r io.Reader, prefix string, timeout time.Duration) (string, error) {
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
			return "", fmt.Errorf("%s ended its output without %q: %v", p.Name, prefix, p.err)
		}
		return line, nil
	case <-t.C:
		return "", fmt.Errorf("%s: no %q line after %s", p.Name, prefix, timeout)
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

// Self is the path of this program, for re-executing it as a helper.
func Self() (string, error) {
	exe, err := os.Executable()
	if err != nil || exe == "" {
		if len(os.Args) == 0 || os.Args[0] == "" {
			return "", errors.New("cannot find my own executable")
		}
		return os.Args[0], nil
	}
	return exe, nil
}

// FreeAddr picks a free loopback TCP address. Another process could take
// it before the caller listens; the caller's listen then fails and says so.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Workdir finds the mciassrv binary in binDir (absolute path) and makes a
// temporary directory for an instance, removed when c stops unless keep.
func Workdir(c *Children, binDir, prefix string, keep bool, log io.Writer) (bin, dir string, err error) {
	bin, err = filepath.Abs(filepath.Join(binDir, "mciassrv"))
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(bin); err != nil {
		return "", "", fmt.Errorf("%w (run `make build` first, or pass -bin DIR)", err)
	}
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", "", err
	}
	if keep {
		fmt.Fprintf(log, "instance directory (kept): %s\n", dir)
	} else {
		c.OnExit(func() { _ = os.RemoveAll(dir) })
	}
	return bin, dir, nil
}
