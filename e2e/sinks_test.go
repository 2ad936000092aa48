package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/metacircular/mcias/internal/rsyslogtest"
	"github.com/metacircular/mcias/internal/webhooktest"
	"github.com/metacircular/mcias/sdk/audit"
)

// storedEvent is what the tests read of an event in /v1/audit.
type storedEvent struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	AccountID string `json:"account_id"`
}

// storedEvents returns every event in /v1/audit, oldest first (storage
// order).
func storedEvents(t *testing.T, c *http.Client, base, admin string) []storedEvent {
	t.Helper()
	var evs []storedEvent
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
			Events     []storedEvent `json:"events"`
			NextCursor string        `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /v1/audit: %d %v", resp.StatusCode, err)
		}
		evs = append(evs, page.Events...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	slices.Reverse(evs) // the API lists newest first
	return evs
}

// storedIDs returns the IDs of every event in /v1/audit, in storage order.
func storedIDs(t *testing.T, c *http.Client, base, admin string) []string {
	t.Helper()
	evs := storedEvents(t, c, base, admin)
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

// readLines reads a JSON-lines sink file (missing: none).
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonlIDs returns the event IDs of a JSON Lines audit file in file
// order; a missing file has none.
func jsonlIDs(t *testing.T, path string) []string {
	t.Helper()
	var ids []string
	for _, m := range readLines(t, path) {
		id, _ := m["id"].(string)
		ids = append(ids, id)
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
			// 1 + 4 logins here and 5 after the rotation: the default
			// burst of 10 per address, which a fast machine can reach
			// before the limiter refills a token (30 a minute).
			for range 4 {
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

// addSinks appends [[audit.sinks]] entries to the instance's config.
func addSinks(t *testing.T, dir string, uris ...string) {
	t.Helper()
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.Write(raw)
	for _, u := range uris {
		fmt.Fprintf(&b, "\n[[audit.sinks]]\nuri = %q\n", u)
	}
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFileSink swaps the file sink init configured for uri.
func replaceFileSink(t *testing.T, dir, uri string) {
	t.Helper()
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := `uri = "file:run/audit.jsonl"`
	if !strings.Contains(string(raw), old) {
		t.Fatalf("run/mcias.toml lacks %s", old)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(raw), old, fmt.Sprintf("uri = %q", uri), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

const webhookSecret = "e2e-webhook-signing-secret-32byt"

// webhookURI writes the signing secret to a file in dir and returns a
// sink URI for receiver base URL u that names it.
func webhookURI(t *testing.T, dir, u string) string {
	t.Helper()
	p := filepath.Join(dir, "run", "webhook.key")
	if err := os.WriteFile(p, []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "webhook+" + u + "/intake?secret_file=" + p
}

func eventIDs(evs []audit.Event) []string {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

// burst keeps two clients making audited requests (account creates) and
// records each request's latency.
type burst struct {
	stop    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []sample
	bad     []string
}

type sample struct {
	at time.Time
	d  time.Duration
}

func startBurst(t *testing.T, c *http.Client, base, admin string) *burst {
	b := &burst{}
	var n atomic.Int64
	for w := range 2 {
		b.wg.Go(func() {
			for !b.stop.Load() {
				i := n.Add(1)
				at := time.Now()
				req, _ := http.NewRequest("POST", base+"/v1/accounts",
					strings.NewReader(fmt.Sprintf(`{"username":"burst-%d-%d","account_type":"system"}`, w, i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+admin)
				resp, err := c.Do(req)
				d := time.Since(at)
				b.mu.Lock()
				switch {
				case err != nil:
					b.bad = append(b.bad, err.Error())
				case resp.StatusCode != 201:
					b.bad = append(b.bad, resp.Status)
				default:
					b.samples = append(b.samples, sample{at, d})
				}
				b.mu.Unlock()
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return b
}

// finish stops the clients; every request must have succeeded.
func (b *burst) finish(t *testing.T) {
	t.Helper()
	b.stop.Store(true)
	b.wg.Wait()
	for i, s := range b.bad {
		if i == 10 {
			break
		}
		t.Errorf("an audited request failed during the burst: %s", s)
	}
}

// p99 of the requests started in [from, to), and how many there were.
func (b *burst) p99(from, to time.Time) (time.Duration, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ds []time.Duration
	for _, s := range b.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			ds = append(ds, s.d)
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	return percentile(ds, 0.99), len(ds)
}

// outage runs a burst of audited requests, breaks the sink with down
// for length, mends it with up, and checks the promise of the audit
// pipeline: every stored event reaches the sink, none is lost, after
// dropping repeats by id they are in storage order, and requests were
// not slowed meanwhile (p99 during the outage against p99 before it, with
// a wide margin: this is a correctness check, not a benchmark).
func outage(t *testing.T, s *server, dir string, read func() []string, length time.Duration, down, up func()) {
	t.Helper()
	c := client(t, dir, 0)
	base := "https://" + s.addr
	admin := login(t, c, base)
	b := startBurst(t, c, base, admin)
	start := time.Now()
	time.Sleep(3 * time.Second)
	t0 := time.Now()
	down()
	time.Sleep(length)
	up()
	t1 := time.Now()
	time.Sleep(2 * time.Second)
	b.finish(t)

	before, nb := b.p99(start, t0)
	during, nd := b.p99(t0, t1)
	t.Logf("p99 latency: %s before (%d requests), %s during the %s outage (%d requests)", before, nb, during, length, nd)
	if nb < 10 || nd < 10 {
		t.Fatalf("too few requests to compare: %d before, %d during", nb, nd)
	}
	if limit := 5*before + 500*time.Millisecond; during > limit {
		t.Errorf("requests slowed during the sink outage: p99 %s, before %s (limit %s)", during, before, limit)
	}
	want := storedIDs(t, c, base, admin)
	// The server retries with a backoff of up to 30s.
	waitDelivered(t, "after the outage", want, read, 90*time.Second)
	t.Logf("%d stored events, all delivered in order", len(want))
}

// TestSinkOutages: each sink kind fails under a burst of audited
// requests and recovers; nothing is lost, nothing is out of order, and
// no request waits for a sink.
func TestSinkOutages(t *testing.T) {
	t.Run("case=file plugin SIGKILLed", func(t *testing.T) {
		t.Parallel()
		dir := newInstance(t)
		subprocessMode(t, dir)
		s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
		c := client(t, dir, 0)
		base := "https://" + s.addr
		path := filepath.Join(dir, "run", "audit.jsonl")
		outage(t, s, dir, func() []string { return jsonlIDs(t, path) }, 3*time.Second, func() {
			pid := pluginPIDs(t, c, base)["audit:file"]
			if pid == 0 {
				t.Fatal("no audit:file plugin")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}, func() {})
		if !strings.Contains(s.log.String(), "plugin crashed") {
			t.Errorf("the server did not notice the crash:\n%s", s.log.String())
		}
	})
	t.Run("case=rsyslog stopped for a minute", func(t *testing.T) {
		t.Parallel()
		d := rsyslogtest.Start(t)
		dir := newInstance(t)
		// As a plugin too: builtins = "subprocess" runs syslog+tcp in the
		// catalog plugin "syslog" that init listed.
		subprocessMode(t, dir)
		replaceFileSink(t, dir, "syslog+tcp://"+d.TCPAddr+"?facility=auth")
		s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
		read := func() []string { return eventIDs(rsyslogtest.Events(t, d.Lines())) }
		var atStop int
		outage(t, s, dir, read, time.Minute, func() {
			if err := d.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			atStop = len(d.Lines())
		}, func() {
			// The daemon really was stopped: it wrote nothing meanwhile.
			if n := len(d.Lines()); n != atStop {
				t.Errorf("rsyslog wrote %d messages while stopped", n-atStop)
			}
			if err := d.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("case=rsyslog killed and restarted", func(t *testing.T) {
		t.Parallel()
		// Killed, the daemon loses what it had read but not written and
		// what sat unread in its socket; the sink sends its recent
		// messages again after reconnecting, so the file still gets all.
		d := rsyslogtest.Start(t)
		dir := newInstance(t)
		replaceFileSink(t, dir, "syslog+tcp://"+d.TCPAddr)
		s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
		read := func() []string { return eventIDs(rsyslogtest.Events(t, d.Lines())) }
		outage(t, s, dir, read, 10*time.Second, d.Kill, d.Restart)
		if !strings.Contains(s.log.String(), "resending recent messages after a reconnect") {
			t.Errorf("the sink did not resend after the daemon came back:\n%s", s.log.String())
		}
	})
	t.Run("case=webhook answers 500", func(t *testing.T) {
		t.Parallel()
		r := webhooktest.NewReceiver(t, webhookSecret)
		dir := newInstance(t)
		replaceFileSink(t, dir, webhookURI(t, dir, r.URL()))
		s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
		outage(t, s, dir, func() []string { return eventIDs(r.Read()) }, 15*time.Second,
			func() { r.SetStatus(500) }, func() { r.SetStatus(0) })
		if refused, rejected := r.Counts(); refused == 0 || rejected != 0 {
			t.Errorf("receiver: %d requests answered 500, %d rejected (bad signature or body)", refused, rejected)
		}
	})
}

// headerSafe drops what net/http refuses to send in a header (control
// characters); the rest (quotes, JSON, U+2028) goes to the server as is.
func headerSafe(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// TestSinksEncodeAttackerText sends text meant to forge events or lines
// (newlines, JSON, quotes, backslashes, `]`, U+2028/U+2029, NUL) through
// every field a client or an admin controls: login usernames, the
// X-Request-ID header, and the free-text pgcreds fields that are stored
// in an event's details. Whatever the API accepted, every sink (file,
// syslog, webhook, all at once) holds exactly the stored events, one
// line or message each, and decodes the text back exactly.
func TestSinksEncodeAttackerText(t *testing.T) {
	d := rsyslogtest.Start(t)
	r := webhooktest.NewReceiver(t, webhookSecret)
	dir := newInstance(t)
	addSinks(t, dir, "syslog+tcp://"+d.TCPAddr, webhookURI(t, dir, r.URL()))
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	base := "https://" + s.addr
	admin := login(t, c, base)

	forged := `{"id":"forged","type":"login_success","outcome":"success"}`
	nasty := []string{
		"x\n" + forged,
		"x\r\n" + forged,
		`x"]` + forged + `\`,
		"x\u2028" + forged + "\u2029",
		"x\x00" + forged,
		"x\u0085" + forged,
	}
	do := func(method, path, token, reqID string, body any) int {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, strings.NewReader(string(raw)))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if reqID != "" {
			req.Header["X-Request-Id"] = []string{reqID}
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, v := range nasty {
		if st := do("POST", "/v1/auth/login", "", headerSafe(v), map[string]string{"username": v, "password": "wrong-password"}); st != 401 && st != 400 {
			t.Errorf("login as %q: %d", v, st)
		}
	}
	st, body := post(t, c, base+"/v1/accounts", admin, `{"username":"pg-owner","account_type":"system"}`)
	id, _ := body["id"].(string)
	if st != 201 || id == "" {
		t.Fatalf("create: %d %v", st, body)
	}
	var accepted []string
	for _, v := range nasty {
		st := do("PUT", "/v1/accounts/"+id+"/pgcreds", admin, "",
			map[string]any{"host": v, "port": 5432, "database": v, "username": v, "password": "pg-secret-password"})
		switch st {
		case 204, 200:
			accepted = append(accepted, v)
		case 400:
		default:
			t.Fatalf("pgcreds %q: %d", v, st)
		}
	}
	if len(accepted) == 0 {
		t.Fatal("the API accepted none of the texts; the test checks nothing")
	}
	t.Logf("pgcreds accepted %d of %d texts", len(accepted), len(nasty))

	want := storedIDs(t, c, base, admin)
	jsonl := filepath.Join(dir, "run", "audit.jsonl")
	waitDelivered(t, "file", want, func() []string { return jsonlIDs(t, jsonl) }, 15*time.Second)
	waitDelivered(t, "syslog", want, func() []string { return eventIDs(rsyslogtest.Events(t, d.Lines())) }, 15*time.Second)
	waitDelivered(t, "webhook", want, func() []string { return eventIDs(r.Read()) }, 15*time.Second)

	// One line (message) per event, nothing more: a forged record would
	// be an extra line, or a line that does not parse.
	if n := len(jsonlIDs(t, jsonl)); n != len(want) {
		t.Errorf("the file holds %d lines for %d events", n, len(want))
	}
	if n := len(d.Lines()); n != len(want) {
		t.Errorf("rsyslog holds %d messages for %d events", n, len(want))
	}
	raw, err := os.ReadFile(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(string(raw), "\r\x00\u2028\u2029\u0085") {
		t.Error("the file holds a raw line-breaking character")
	}
	for _, b := range r.Bodies() {
		if strings.ContainsAny(b, "\n\r\x00\u2028\u2029\u0085") {
			t.Errorf("a webhook body holds a raw line-breaking character: %q", b)
		}
	}
	// The text decodes back exactly, in every sink.
	var fileEvents []audit.Event
	for line := range strings.Lines(string(raw)) {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		fileEvents = append(fileEvents, rec.Event())
	}
	for name, evs := range map[string][]audit.Event{
		"file": fileEvents, "syslog": rsyslogtest.Events(t, d.Lines()), "webhook": r.Read(),
	} {
		got := map[string]bool{}
		for _, e := range evs {
			if e.ID == "forged" {
				t.Errorf("%s: a forged event", name)
			}
			if e.Type == audit.PGCredsWrite {
				if e.Details["database"] != e.Details["host"] || e.Details["username"] != e.Details["host"] {
					t.Errorf("%s: details differ: %q", name, e.Details)
				}
				got[e.Details["database"]] = true
			}
			for _, v := range nasty {
				if e.RequestID == headerSafe(v) {
					t.Errorf("%s: a malformed X-Request-ID reached an event", name)
				}
			}
		}
		for _, v := range accepted {
			if !got[v] {
				t.Errorf("%s: no pgcreds_write event with the exact text %q", name, v)
			}
		}
	}
}

// TestWebhookReceiverExample runs examples/webhook-receiver, built as its
// README says, behind the builtin webhook sink of a real server: it
// verifies every batch and stores each stored event exactly once, in
// storage order, across a server restart too.
func TestWebhookReceiverExample(t *testing.T) {
	bin, _ := buildExample(t, "webhook-receiver")
	dir := newInstance(t)
	uri := webhookURI(t, dir, "http://127.0.0.1:0") // writes run/webhook.key
	keyFile := filepath.Join(dir, "run", "webhook.key")
	out := filepath.Join(dir, "received.jsonl")
	rlog := &syncBuffer{}
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-secret-file", keyFile, "-out", out)
	cmd.Stdout, cmd.Stderr = rlog, rlog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrRE := regexp.MustCompile(`webhook-receiver listening"? addr=(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; {
		if m := addrRE.FindStringSubmatch(rlog.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("the receiver did not start:\n%s", rlog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	uri = strings.Replace(uri, "127.0.0.1:0", addr, 1)
	replaceFileSink(t, dir, uri)

	for round := range 2 {
		s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
		c := client(t, dir, 0)
		base := "https://" + s.addr
		admin := login(t, c, base)
		for range 5 {
			login(t, c, base)
		}
		want := storedIDs(t, c, base, admin)
		waitDelivered(t, fmt.Sprintf("round %d", round), want, func() []string { return jsonlIDs(t, out) }, 30*time.Second)
		if got := jsonlIDs(t, out); len(got) != len(want) {
			t.Fatalf("round %d: the receiver stored %d events for %d: it must drop repeats", round, len(got), len(want))
		}
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(rlog.String(), "refused a request") {
		t.Errorf("the receiver refused a request of the server:\n%s", rlog.String())
	}
}
