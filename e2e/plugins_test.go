package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// subprocessMode makes the one config change the README documents: every
// builtin backend runs as a supervised plugin subprocess.
func subprocessMode(t *testing.T, dir string) {
	t.Helper()
	cfg := filepath.Join(dir, "run", "mcias.toml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(raw), `builtins = "in-process"`, `builtins = "subprocess"`, 1)
	if changed == string(raw) {
		t.Fatal(`run/mcias.toml has no builtins = "in-process" line to change`)
	}
	if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReadmeQuickStartWithPlugins: the quick start works verbatim with
// every backend as a subprocess.
func TestReadmeQuickStartWithPlugins(t *testing.T) {
	dir := newInstance(t)
	subprocessMode(t, dir)
	runQuickStart(t, dir)
}

type readyView struct {
	Status   string `json:"status"`
	Backends map[string]struct {
		Status string `json:"status"`
		Plugin *struct {
			Name     string `json:"name"`
			Status   string `json:"status"`
			PID      int    `json:"pid"`
			Restarts int    `json:"restarts"`
		} `json:"plugin"`
	} `json:"backends"`
}

func ready(c *http.Client, base string) (int, readyView, error) {
	resp, err := c.Get(base + "/v1/ready")
	if err != nil {
		return 0, readyView{}, err
	}
	defer resp.Body.Close()
	var v readyView
	err = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v, err
}

// pluginPIDs maps each backend role to its plugin's PID.
func pluginPIDs(t *testing.T, c *http.Client, base string) map[string]int {
	t.Helper()
	code, v, err := ready(c, base)
	if err != nil || code != 200 {
		t.Fatalf("ready: %d %v", code, err)
	}
	pids := map[string]int{}
	for role, b := range v.Backends {
		if b.Plugin == nil || b.Plugin.PID == 0 {
			t.Fatalf("backend %s is not a running plugin: %+v", role, v)
		}
		pids[role] = b.Plugin.PID
	}
	return pids
}

// alive reports whether pid is a live process (a zombie waiting for init
// to reap it is not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestPluginKillUnderLoad kills each plugin with SIGKILL while clients
// create accounts, log in and validate tokens. The server stays up,
// answers 503 (never a wrong answer) while the plugin is down, recovers on
// its own within the documented bound, never calls a revoked token valid,
// and loses no audit event.
func TestPluginKillUnderLoad(t *testing.T) {
	dir := newInstance(t)
	subprocessMode(t, dir)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	c := client(t, dir, 0)
	base := "https://" + s.addr

	_, body := post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
	admin, _ := body["token"].(string)
	_, body = post(t, c, base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"admin","password":%q}`, adminPassword))
	revoked, _ := body["token"].(string)
	if admin == "" || revoked == "" {
		t.Fatalf("login: %v", body)
	}
	if st, _ := post(t, c, base+"/v1/auth/logout", revoked, ""); st != 204 {
		t.Fatalf("logout: %d", st)
	}

	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		created   []string // ids of accounts whose create was acknowledged
		unavail   atomic.Int64
		wrong     atomic.Int64
		requests  atomic.Int64
		failures  []string
		n         atomic.Int64
		recordBad = func(format string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			if len(failures) < 20 {
				failures = append(failures, fmt.Sprintf(format, a...))
			}
		}
	)
	loadClient := client(t, dir, 0)
	loadClient.Timeout = 15 * time.Second
	do := func(path, token, body string) (int, map[string]any, error) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := loadClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, nil
	}
	worker := func(w int) {
		defer wg.Done()
		for !stop.Load() {
			i := n.Add(1)
			requests.Add(3)
			// An audited change.
			st, m, err := do("/v1/accounts", admin, fmt.Sprintf(`{"username":"load-%d-%d","account_type":"system"}`, w, i))
			switch {
			case err != nil:
				recordBad("create: transport error %v", err)
			case st == 201:
				mu.Lock()
				created = append(created, m["id"].(string))
				mu.Unlock()
			case st == 503:
				unavail.Add(1)
			default:
				recordBad("create: %d %v", st, m)
			}
			// The revoked token must never be reported valid.
			st, m, err = do("/v1/token/validate", "", fmt.Sprintf(`{"token":%q}`, revoked))
			switch {
			case err != nil:
				recordBad("validate revoked: transport error %v", err)
			case st == 200 && m["valid"] == true:
				wrong.Add(1)
			case st == 503:
				unavail.Add(1)
			case st != 200:
				recordBad("validate revoked: %d %v", st, m)
			}
			// A live token stays valid, or the answer is 503.
			st, m, err = do("/v1/token/validate", "", fmt.Sprintf(`{"token":%q}`, admin))
			switch {
			case err != nil:
				recordBad("validate: transport error %v", err)
			case st == 503:
				unavail.Add(1)
			case st != 200 || m["valid"] != true:
				recordBad("validate live token: %d %v", st, m)
			}
		}
	}
	for w := range 4 {
		wg.Add(1)
		go worker(w)
	}

	bound := 15 * time.Second // pluginhost.Options.RecoveryBound at the defaults, rounded up
	for _, role := range []string{"storage", "custody", "audit:file"} {
		time.Sleep(500 * time.Millisecond)
		pids := pluginPIDs(t, c, base)
		pid := pids[role]
		if pid == 0 {
			t.Fatalf("no plugin for %s: %v", role, pids)
		}
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var recovered time.Duration
		for time.Since(killed) < bound {
			code, v, err := ready(c, base)
			if err == nil && code == 200 {
				if p := v.Backends[role].Plugin; p != nil && p.PID != pid && p.Status == "up" {
					recovered = time.Since(killed)
					break
				}
			}
			if resp, err := c.Get(base + "/v1/health"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("health failed while %s was down: %v", role, err)
			} else {
				resp.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
		if recovered == 0 {
			t.Fatalf("%s plugin did not recover within %s\n%s", role, bound, s.log.String())
		}
		t.Logf("%s plugin: SIGKILL to ready again in %s", role, recovered.Round(time.Millisecond))
		if alive(pid) {
			t.Errorf("killed %s plugin %d is still running", role, pid)
		}
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	t.Logf("%d requests, %d answered 503 while a plugin was down, %d accounts created", requests.Load(), unavail.Load(), len(created))
	for _, f := range failures {
		t.Error(f)
	}
	if wrong.Load() > 0 {
		t.Fatalf("a revoked token was reported valid %d times", wrong.Load())
	}
	if len(created) == 0 {
		t.Fatal("no account was created under load")
	}

	// Every acknowledged change has its event in storage...
	events := map[string]bool{} // account ids of account_create events
	var ids []string            // every event id in storage
	for _, ev := range storedEvents(t, c, base, admin) {
		ids = append(ids, ev.ID)
		if ev.Type == "account_create" {
			events[ev.AccountID] = true
		}
	}
	for _, id := range created {
		if !events[id] {
			t.Errorf("account %s was created but has no account_create event", id)
		}
	}
	// ...and reaches the file sink, whose plugin was killed too (at least
	// once: duplicates are allowed, losses are not; in storage order).
	path := filepath.Join(dir, "run", "audit.jsonl")
	waitDelivered(t, "file sink", ids, func() []string { return jsonlIDs(t, path) }, bound)
	for _, want := range []string{"plugin_start", "plugin_crash"} {
		found := false
		req, _ := http.NewRequest("GET", base+"/v1/audit?type="+want, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		if resp, err := c.Do(req); err == nil {
			var page struct {
				Events []json.RawMessage `json:"events"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			found = len(page.Events) >= 3
		}
		if !found {
			t.Errorf("fewer than three %s events in the audit log", want)
		}
	}
}

// TestServerSIGKILLLeavesNoPlugin: when the server dies without a chance
// to clean up, its plugins go too.
func TestServerSIGKILLLeavesNoPlugin(t *testing.T) {
	dir := newInstance(t)
	subprocessMode(t, dir)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	pids := pluginPIDs(t, client(t, dir, 0), "https://"+s.addr)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Pdeathsig kills them at once; the bound is generous for a loaded
	// CI machine, not a latency promise.
	deadline := time.Now().Add(20 * time.Second)
	for role, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s plugin %d outlived the SIGKILLed server", role, pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestServerSIGTERMStopsPlugins: a graceful stop ends every plugin.
func TestServerSIGTERMStopsPlugins(t *testing.T) {
	dir := newInstance(t)
	subprocessMode(t, dir)
	s := start(t, dir, "MCIAS_ADMIN_PASSWORD="+adminPassword)
	pids := pluginPIDs(t, client(t, dir, 0), "https://"+s.addr)
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, s.log.String())
	}
	for role, pid := range pids {
		if alive(pid) {
			t.Errorf("%s plugin %d still running after SIGTERM", role, pid)
		}
	}
}
