//go:build linux

package pluginhost

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// verifiedCommand prepares a command that executes exactly the bytes
// whose SHA-256 was checked. The binary is copied into an anonymous
// memory file while it is hashed; the copy is sealed against any further
// change, and the child executes it through /proc/self/fd, so a file
// swapped on disk after the check is never run. release closes the memory
// file; call it once the process has started (or failed to).
func verifiedCommand(p Plugin) (cmd *exec.Cmd, release func(), err error) {
	want, err := hex.DecodeString(strings.ToLower(p.SHA256))
	if err != nil || len(want) != sha256.Size {
		return nil, nil, fmt.Errorf("plugin %s: sha256 must be 64 hex digits", p.Name)
	}
	src, err := os.Open(p.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("plugin %s: %w", p.Name, err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil {
		return nil, nil, fmt.Errorf("plugin %s: %w", p.Name, err)
	} else if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("plugin %s: %s is not a regular file", p.Name, p.Path)
	}

	fd, err := unix.MemfdCreate("mcias-plugin-"+p.Name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("plugin %s: memfd_create: %w", p.Name, err)
	}
	mem := os.NewFile(uintptr(fd), "mcias-plugin-"+p.Name)
	fail := func(err error) (*exec.Cmd, func(), error) {
		mem.Close()
		return nil, nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(mem, h), src); err != nil {
		return fail(fmt.Errorf("plugin %s: copy binary: %w", p.Name, err))
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), want) != 1 {
		return fail(fmt.Errorf("plugin %s: %s has sha256 %x, the catalog expects %s: %w",
			p.Name, p.Path, h.Sum(nil), strings.ToLower(p.SHA256), ErrChecksum))
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return fail(fmt.Errorf("plugin %s: seal memfd: %w", p.Name, err))
	}
	if err := unix.Fchmod(int(mem.Fd()), 0o500); err != nil {
		return fail(fmt.Errorf("plugin %s: chmod memfd: %w", p.Name, err))
	}

	cmd = &exec.Cmd{
		// The descriptor is close-on-exec, but the kernel resolves the
		// path before it closes descriptors, which is all execve needs.
		Path: fmt.Sprintf("/proc/self/fd/%d", mem.Fd()),
		Args: []string{"mcias-plugin-" + p.Name},
		// If the server dies, even by SIGKILL, the kernel kills the
		// plugin. (Pdeathsig follows the thread that forked; the Go
		// runtime does not retire threads, and the plugin also watches
		// for its parent itself.)
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	return cmd, func() { mem.Close() }, nil
}
