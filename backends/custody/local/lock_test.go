package local

import (
	"sync"
	"testing"
)

// TestConcurrentFirstOpen: processes opening one fresh directory at the
// same moment (server nodes starting together) end up with one keyring
// and one signing key. Goroutines stand in for processes: flock locks
// belong to the open file, so two opens in one process exclude each other
// as two processes do.
func TestConcurrentFirstOpen(t *testing.T) {
	for _, mode := range []string{"key_file", "passphrase"} {
		t.Run("mode="+mode, func(t *testing.T) { testConcurrentFirstOpen(t, mode) })
	}
}

func testConcurrentFirstOpen(t *testing.T, mode string) {
	uri := "local://" + t.TempDir() + "?key_file=" + newKeyFile(t)
	if mode == "passphrase" {
		// The passphrase's Argon2id runs between looking for the keyring
		// and creating it: without the lock every node would make its own.
		t.Setenv("MCIAS_TEST_PASSPHRASE", "correct horse battery staple")
		uri = "local://" + t.TempDir() + "?passphrase_env=MCIAS_TEST_PASSPHRASE"
	}
	const nodes = 4
	start := make(chan struct{})
	kids := make([]string, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			<-start
			c, err := Open(t.Context(), uri, nil)
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			defer c.Close(t.Context())
			pks, err := c.PublicKeys(t.Context())
			if err != nil || len(pks) != 1 {
				t.Errorf("node %d: %d keys, %v", i, len(pks), err)
				return
			}
			kids[i] = pks[0].KID
		})
	}
	close(start)
	wg.Wait()
	for i, kid := range kids {
		if kid != kids[0] {
			t.Errorf("node %d signs with %s, node 0 with %s", i, kid, kids[0])
		}
	}
}
