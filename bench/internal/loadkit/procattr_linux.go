package loadkit

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the child if this process dies
// without stopping it (a panic in a worker goroutine, SIGKILL).
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
