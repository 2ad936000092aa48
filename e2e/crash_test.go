package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metacircular/mcias/internal/webhooktest"
)

// TestServerSIGKILLMidBurst: mciassrv killed with SIGKILL while clients
// make audited requests, then started again. The chain continues across
// the crash and verifies (with a checkpoint written after it), and each
// sink, a file and a webhook, resumes from its stored cursor: every stored
// event arrives, in storage order, and nothing beyond one unacknowledged
// batch (256 events) is sent twice.
func TestServerSIGKILLMidBurst(t *testing.T) {
	r := webhooktest.NewReceiver(t, webhookSecret)
	dir := newInstance(t)
	addSinks(t, dir, webhookURI(t, dir, r.URL()))
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A short lease: the restarted server (a new holder) takes the sinks
	// over from the killed one within a second.
	changed := strings.Replace(string(raw), "[[audit.sinks]]", "[audit]\nlease_ttl = \"1s\"\ncheckpoint_every = \"200ms\"\n\n[[audit.sinks]]", 1)
	if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	base := "https://" + s.addr
	admin := login(t, c, base)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var created atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				req, _ := http.NewRequest("POST", base+"/v1/accounts",
					strings.NewReader(fmt.Sprintf(`{"username":"crash-%d-%d","account_type":"system"}`, w, i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+admin)
				resp, err := c.Do(req)
				if err != nil {
					return // the server is gone
				}
				if resp.StatusCode == 201 {
					created.Add(1)
				}
				resp.Body.Close()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil
	stop.Store(true)
	wg.Wait()
	if created.Load() < 20 {
		t.Fatalf("only %d audited requests before the kill", created.Load())
	}

	s = start(t, dir)
	base = "https://" + s.addr
	admin = login(t, c, base)
	if st, body := post(t, c, base+"/v1/accounts", admin, `{"username":"after-crash","account_type":"system"}`); st != 201 {
		t.Fatalf("create after restart: %d %v", st, body)
	}
	want := storedIDs(t, c, base, admin)
	if int64(len(want)) < created.Load() {
		t.Fatalf("%d events stored for %d acknowledged account creates", len(want), created.Load())
	}
	file := func() []string { return jsonlIDs(t, filepath.Join(dir, "run", "audit.jsonl")) }
	hook := func() []string { return eventIDs(r.Read()) }
	waitDelivered(t, "file sink after the crash", want, file, 20*time.Second)
	waitDelivered(t, "webhook sink after the crash", want, hook, 20*time.Second)
	for name, got := range map[string][]string{"file": file(), "webhook": hook()} {
		if dups := len(got) - len(dedupe(got)); dups > 256 {
			t.Errorf("%s sink got %d events twice: more than the one batch in flight at the kill", name, dups)
		}
	}

	// A checkpoint after the restart vouches for the events stored
	// before the kill.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := verifyCLI(t, s, admin, "mciasctl")
		if code != 0 || !strings.Contains(out, "audit chain intact") {
			t.Fatalf("audit verify after the crash: exit %d\n%s", code, out)
		}
		if strings.Contains(out, "checkpoints verified: ") && !strings.Contains(out, "checkpoints verified: 0") &&
			checkpointCovers(out, int64(len(want))-1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after the restart covers the events stored before it:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// checkpointCovers reports whether audit verify's text says a checkpoint
// vouches for the chain up to at least seq n.
func checkpointCovers(out string, n int64) bool {
	var cps, at, upTo int64
	var keys string
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(line, "checkpoints verified: %d (keys: %s the furthest at seq %d for the chain up to seq %d", &cps, &keys, &at, &upTo); err == nil {
			return upTo >= n
		}
	}
	return false
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
