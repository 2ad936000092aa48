package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestMultiNodeSharedSink: two nodes on one database carry the same sink
// (one destination for the cluster, name "shared"). Exactly one node
// delivers to it (the holder of its lease; the other reports standby),
// every stored event reaches it once, in order, checkpoints included;
// when the holder stops, the other takes over from the stored cursor.
func TestMultiNodeSharedSink(t *testing.T) {
	const extra = `
[[audit.sinks]]
uri = "file:run/audit-shared.jsonl"
name = "shared"
required = true
max_lag = "10m"

[audit]
checkpoint_every = "1s"
lease_ttl = "3s"
`
	cl := newClusterWith(t, 2, false, extra)
	path := filepath.Join(cl.dir, "run", "audit-shared.jsonl")
	// sinkStates returns each node's view of the shared sink.
	sinkStates := func(nodes ...int) []map[string]any {
		var out []map[string]any
		for _, i := range nodes {
			m := cl.must(200, i, "GET", "/v1/ready", "", nil)
			b, _ := m["backends"].(map[string]any)["audit:shared"].(map[string]any)
			sk, _ := b["sink"].(map[string]any)
			if sk == nil {
				t.Fatalf("node %d reports no sink status: %v", i, m)
			}
			out = append(out, sk)
		}
		return out
	}
	// settled waits until the sink has everything stored (lag 0) and
	// checks the file: each event once, Seq 1..cursor in order.
	settled := func(nodes ...int) (holder int, lines []map[string]any) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := sinkStates(nodes...)
			holder = -1
			for k, sk := range st {
				if sk["state"] == "ok" {
					holder = nodes[k]
				}
			}
			lines = readLines(t, path)
			cursor, _ := st[0]["cursor"].(float64)
			if holder >= 0 && st[0]["lag_events"] == float64(0) && int(cursor) == len(lines) && len(lines) > 0 {
				for k, sk := range st {
					if nodes[k] != holder && sk["state"] != "standby" {
						t.Fatalf("node %d: shared sink state %v besides the holder, node %d", nodes[k], sk["state"], holder)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shared sink did not settle: states %v, %d lines", st, len(lines))
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i, l := range lines {
			if l["seq"] != float64(i+1) {
				t.Fatalf("line %d has seq %v: lost, doubled or out of order", i, l["seq"])
			}
		}
		return holder, lines
	}

	admin := cl.login(0, "admin", adminPassword)
	for i := range 3 {
		cl.must(201, i%2, "POST", "/v1/accounts", admin, map[string]string{"username": fmt.Sprintf("svc%d", i), "account_type": "system"})
	}
	holder, _ := settled(0, 1)
	// A checkpoint of the head arrives like any event.
	deadline := time.Now().Add(30 * time.Second)
	for {
		lines := readLines(t, path)
		if n := len(lines); n > 0 && lines[n-1]["type"] == "audit_checkpoint" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint reached the sink")
		}
		time.Sleep(100 * time.Millisecond)
	}

	other := 1 - holder
	if err := cl.nodes[holder].stop(); err != nil {
		t.Fatalf("node %d: unclean exit: %v", holder, err)
	}
	tok := cl.login(other, "admin", adminPassword)
	for i := range 3 {
		cl.must(201, other, "POST", "/v1/accounts", tok, map[string]string{"username": fmt.Sprintf("late%d", i), "account_type": "system"})
	}
	if h, _ := settled(other); h != other {
		t.Fatalf("node %d did not take the sink over", other)
	}
}
