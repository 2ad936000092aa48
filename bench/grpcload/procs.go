package main

import (
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// children are the processes this run started; every one is stopped on
// the way out.
type children struct {
	mu      sync.Mutex
	procs   []*child
	cleanup []func()
}

type child struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
}

// tail keeps the last bytes a child wrote, for error reports.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 32<<10 {
		t.buf = t.buf[len(t.buf)-32<<10:]
	}
	return len(p), nil
}

func (c *children) start(name string, cmd *exec.Cmd) (*child, error) {
	ch := &child{name: name, cmd: cmd, out: &tail{}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = ch.out
	}
	cmd.Stderr = ch.out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(ch.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, ch)
	c.mu.Unlock()
	return ch, nil
}

func (c *children) onExit(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanup = append(c.cleanup, f)
}

func (c *children) anyExited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.procs {
		select {
		case <-ch.done:
			return true
		default:
		}
	}
	return false
}

// stopAll sends SIGTERM (mciassrv shuts down gracefully), kills what is
// still running after 10 s, then runs the cleanups.
func (c *children) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.procs {
		_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, ch := range c.procs {
		select {
		case <-ch.done:
		case <-time.After(10 * time.Second):
			_ = ch.cmd.Process.Kill()
			<-ch.done
		}
	}
	for _, f := range c.cleanup {
		f()
	}
	c.procs, c.cleanup = nil, nil
}

func (c *children) dumpLogs(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.procs {
		ch.out.mu.Lock()
		if len(ch.out.buf) > 0 {
			fmt.Fprintf(w, "--- %s output (tail) ---\n%s\n", ch.name, ch.out.buf)
		}
		ch.out.mu.Unlock()
	}
}
