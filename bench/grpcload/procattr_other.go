//go:build !linux

package main

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; the deferred
// stop in driverMain is all there is.
func setDeathSignal(*exec.Cmd) {}
