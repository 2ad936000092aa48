//go:build !linux

package pluginhost

import (
	"errors"
	"os/exec"
)

// verifiedCommand needs memfd_create to execute exactly the bytes it
// checked; without it MCIAS refuses to run plugins rather than reopen the
// check-then-exec window.
func verifiedCommand(p Plugin) (*exec.Cmd, func(), error) {
	return nil, nil, errors.New("plugin " + p.Name + ": subprocess plugins need Linux (memfd_create)")
}
