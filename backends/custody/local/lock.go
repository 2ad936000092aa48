package local

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/metacircular/mcias/sdk"
)

// lockFile is the lock several processes sharing one keyring directory
// (server nodes on one machine, or on a shared filesystem with working
// flock) take while they look for the keyring and create it, so that
// nodes starting together on a fresh directory generate one signing key,
// not one each.
const lockFile = ".lock"

// lockDir takes an exclusive flock on dir's lock file, waiting for
// another holder; the returned function releases it.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local custody: lock %s: %w: %w", dir, sdk.ErrUnavailable, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("local custody: lock %s: %w: %w", dir, sdk.ErrUnavailable, err)
	}
	return func() { f.Close() }, nil
}
