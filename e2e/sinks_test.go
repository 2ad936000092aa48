package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// storedIDs returns the IDs of every event in /v1/audit, oldest first
// (storage order).
func storedIDs(t *testing.T, c *http.Client, base, admin string) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for {
		url := base + "/v1/audit?limit=500"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /v1/audit: %d %v", resp.StatusCode, err)
		}
		for _, ev := range page.Events {
			ids = append(ids, ev.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	slices.Reverse(ids) // the API lists newest first
	return ids
}

// jsonlIDs returns the event IDs of a JSON Lines audit file in file
// order; a missing file has none.
func jsonlIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Bytes(), err)
		}
		ids = append(ids, ev.ID)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkDelivered reports how got (what a sink received, duplicates
// allowed) falls short of want (storage order): after dropping repeated
// IDs it must be exactly want, in order. It returns "" when it is.
func checkDelivered(want, got []string) string {
	seen := map[string]bool{}
	var uniq []string
	for _, id := range got {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	missing := 0
	for _, id := range want {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Sprintf("%d of %d stored events missing", missing, len(want))
	}
	// The sink may hold events stored after want was read; compare the prefix.
	if len(uniq) < len(want) || !slices.Equal(uniq[:len(want)], want) {
		return "events arrived out of storage order"
	}
	return ""
}

// waitDelivered polls read until it holds every event in want, in order.
func waitDelivered(t *testing.T, what string, want []string, read func() []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := checkDelivered(want, read())
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func login(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	st, body := post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
	tok, _ := body["token"].(string)
	if st != 200 || tok == "" {
		t.Fatalf("login: %d %v", st, body)
	}
	return tok
}

// TestSIGHUPReopensFileSink rotates the file sink's file the way
// logrotate does (rename, then SIGHUP to the server), with the sink
// in-process and as a plugin: later events land in a new file, and the
// two files together hold every stored event once, in order.
func TestSIGHUPReopensFileSink(t *testing.T) {
	for _, mode := range []string{"in-process", "subprocess"} {
		t.Run("builtins="+mode, func(t *testing.T) {
			t.Parallel()
			dir := newInstance(t)
			if mode == "subprocess" {
				subprocessMode(t, dir)
			}
			s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
			c := client(t, dir, 0)
			base := "https://" + s.addr
			admin := login(t, c, base)
			for range 5 {
				login(t, c, base)
			}
			path := filepath.Join(dir, "run", "audit.jsonl")
			rotated := path + ".1"
			waitDelivered(t, "before rotation", storedIDs(t, c, base, admin), func() []string { return jsonlIDs(t, path) }, 15*time.Second)
			if err := os.Rename(path, rotated); err != nil {
				t.Fatal(err)
			}
			if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			// The reopen creates the file; wait for it rather than race it.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := os.Stat(path); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("SIGHUP did not create a new %s\n%s", path, s.log.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			for range 5 {
				login(t, c, base)
			}
			want := storedIDs(t, c, base, admin)
			both := func() []string { return append(jsonlIDs(t, rotated), jsonlIDs(t, path)...) }
			waitDelivered(t, "after rotation", want, both, 15*time.Second)
			if n := len(jsonlIDs(t, path)); n < 5 {
				t.Fatalf("the new file has %d events, want at least the 5 logins after the rotation", n)
			}
			if err := s.stop(); err != nil {
				t.Fatalf("stop: %v\n%s", err, s.log.String())
			}
			if !strings.Contains(s.log.String(), "reopened") {
				t.Errorf("no reopen in the server log:\n%s", s.log.String())
			}
		})
	}
}
