//go:build linux

package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestVerifiedCommandRunsTheCheckedBytes swaps the file between the check
// and the exec: the process must still run the bytes that were checked.
func TestVerifiedCommandRunsTheCheckedBytes(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bin")
	b, _ := os.ReadFile(sleep)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	want := sum(t, path)
	cmd, release, err := verifiedCommand(Plugin{Name: "t", Path: path, SHA256: want})
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	// The window an attacker would use: the file changes after the check.
	other, _ := os.ReadFile(truePath)
	if err := os.WriteFile(path, other, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := sum(t, "/proc/"+strconv.Itoa(cmd.Process.Pid)+"/exe"); got != want {
		t.Fatalf("the process runs %s, not the checked %s", got, want)
	}
}

func TestVerifiedCommandRefusesAMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "zz", sum(t, "/proc/self/exe")} {
		if _, _, err := verifiedCommand(Plugin{Name: "t", Path: path, SHA256: bad}); err == nil {
			t.Errorf("sha256 %q accepted", bad)
		}
	}
}
