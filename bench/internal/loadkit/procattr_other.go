//go:build !linux

package loadkit

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; the deferred
// StopAll of the driver is all there is.
func setDeathSignal(*exec.Cmd) {}
