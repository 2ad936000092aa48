// Package rsyslogtest runs a throwaway rsyslog daemon for tests: its own
// configuration, work directory and pid file in a temporary directory,
// imtcp on a free port of 127.0.0.1, imuxsock on a datagram socket in
// that directory, and every message written verbatim (%rawmsg%, one per
// line) to a file there. A missing rsyslogd is a failure, never a skip:
// scripts/test-deps.sh installs Debian's rsyslog package.
package rsyslogtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Daemon is a running rsyslogd.
type Daemon struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	TCPAddr string // host:port of imtcp
	Socket  string // path of the imuxsock datagram socket
	Output  string // the file every message is appended to

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start starts a daemon that lives until the test ends.
func Start(t testing.TB) *Daemon {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/rsyslogd"); serr != nil {
			t.Fatalf("rsyslogd not found (scripts/test-deps.sh installs the rsyslog package): %v", err)
		}
		bin = "/usr/sbin/rsyslogd"
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "rsyslog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Daemon{t: t, bin: bin, dir: dir, Socket: filepath.Join(dir, "log.sock"), Output: filepath.Join(dir, "messages")}
	port := freePort(t)
	d.TCPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	d.conf = filepath.Join(dir, "rsyslog.conf")
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q CreatePath="on" RateLimit.Interval="0" UseSpecialParser="off" ParseHostname="off")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file=%q template="raw" asyncWriting="off" flushOnTXEnd="on")
`, dir, d.Socket, port, d.Output)
	if err := os.WriteFile(d.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(d.Stop)
	return d
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs rsyslogd in the foreground and waits until both inputs
// listen.
func (d *Daemon) start() {
	d.t.Helper()
	d.mu.Lock()
	cmd := exec.Command(d.bin, "-n", "-f", d.conf, "-i", filepath.Join(d.dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &d.log, &d.log
	// Its own process group: a test's SIGSTOP/SIGKILL reaches it alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		d.t.Fatalf("start rsyslogd: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	done := d.done
	go func() { _ = cmd.Wait(); close(done) }()
	d.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", d.TCPAddr)
		if err == nil {
			c.Close()
			if _, err := os.Stat(d.Socket); err == nil {
				return
			}
		}
		select {
		case <-done:
			d.t.Fatalf("rsyslogd exited at start:\n%s", d.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("rsyslogd did not listen on %s within 15s:\n%s", d.TCPAddr, d.Log())
		}
	}
}

// Log is what rsyslogd printed.
func (d *Daemon) Log() string { return d.log.String() }

// PID is the daemon's process ID.
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// Signal sends sig to the daemon (SIGSTOP, SIGCONT, ...).
func (d *Daemon) Signal(sig syscall.Signal) error {
	return syscall.Kill(d.PID(), sig)
}

// Kill ends the daemon with SIGKILL and waits for it.
func (d *Daemon) Kill() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the daemon again after Kill, on the same port, socket
// and output file.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.start()
}

// Stop ends the daemon (SIGTERM, then SIGKILL) and waits for it.
func (d *Daemon) Stop() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Lines returns every complete line of the output file so far (a line
// rsyslog is still writing is left for the next call).
func (d *Daemon) Lines() []string {
	d.t.Helper()
	raw, err := os.ReadFile(d.Output)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		d.t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	return lines[:len(lines)-1]
}

// SettledLines waits until the output file stops growing (rsyslog writes
// asynchronously to what a sender sees) and returns its lines.
func (d *Daemon) SettledLines() []string {
	d.t.Helper()
	prev := -1
	for {
		time.Sleep(150 * time.Millisecond)
		lines := d.Lines()
		if len(lines) == prev {
			return lines
		}
		prev = len(lines)
	}
}
