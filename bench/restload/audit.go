package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/metacircular/mcias/bench/internal/loadkit"
)

// The -sinks mode: the same instance twice, once with no audit sink and
// once with two, and login and service-token issue throughput on each,
// alternating rounds. Delivery is asynchronous, so what the sinks can
// cost a request is CPU, I/O and lock time taken from it.

// sinkBlocks matches every [[audit.sinks]] table of a config written by
// `mciassrv init` (a header and its key = value lines).
var sinkBlocks = regexp.MustCompile(`(?m)^\[\[audit\.sinks\]\]\n(?:[^\[\n][^\n]*\n|\n)*`)

// withSinks replaces the instance's sinks by the given TOML tables.
func withSinks(tables func(dir string) string) func(dir, cfg string) string {
	return func(dir, cfg string) string {
		cfg = sinkBlocks.ReplaceAllString(cfg, "")
		return strings.TrimRight(cfg, "\n") + "\n\n" + tables(dir)
	}
}

// twoSinks is what the comparison attaches: two JSON-lines files, each
// with its own cursor and worker.
func twoSinks(dir string) string {
	var b strings.Builder
	for _, name := range []string{"primary", "secondary"} {
		fmt.Fprintf(&b, "[[audit.sinks]]\nuri = %q\n\n", "file:"+filepath.Join(dir, "audit-"+name+".jsonl"))
	}
	return b.String()
}

type auditResults struct {
	machine                   loadkit.Machine
	argon                     argonParams
	loginConc, issueConc      int
	loginNone, loginTwo       []loadkit.Result
	issueNone, issueTwo       []loadkit.Result
	catchUp                   time.Duration // last round's events reached both sinks after this
	eventsInTwo, linesPerSink int
}

// systemAccount creates a system account on inst and returns the body of
// an issue request for it.
func systemAccount(ctx context.Context, inst *instance) ([]byte, error) {
	var acct struct {
		ID string `json:"id"`
	}
	body := []byte(`{"username":"bench-service","account_type":"system"}`)
	if err := authJSON(ctx, inst, http.MethodPost, "/v1/accounts", body, http.StatusCreated, &acct); err != nil {
		return nil, fmt.Errorf("create system account: %w", err)
	}
	return json.Marshal(map[string]any{"account_id": acct.ID, "ttl_seconds": 3600})
}

func authJSON(ctx context.Context, inst *instance, method, path string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, inst.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+inst.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := newClient(inst.tlsConfig)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, snippet(raw))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func checkIssued(status int, body []byte) error {
	if status != http.StatusOK || !bytes.Contains(body, tokenKey) {
		return fmt.Errorf("issue answered %d %s, want 200 with a token", status, snippet(body))
	}
	return nil
}

func runAudit(ctx context.Context, o options, procs *loadkit.Children, log io.Writer) (*auditResults, error) {
	res := &auditResults{machine: loadkit.DescribeMachine(), loginConc: 2 * runtime.NumCPU(), issueConc: o.clients}
	none, err := startInstance(ctx, o, procs, log, withSinks(func(string) string { return "" }))
	if err != nil {
		return nil, err
	}
	two, err := startInstance(ctx, o, procs, log, withSinks(twoSinks))
	if err != nil {
		return nil, err
	}
	res.argon = two.argon
	type target struct {
		name            string
		inst            *instance
		issue           []byte
		login, issueRes *[]loadkit.Result
	}
	targets := []*target{
		{name: "no sink", inst: none, login: &res.loginNone, issueRes: &res.issueNone},
		{name: "two sinks", inst: two, login: &res.loginTwo, issueRes: &res.issueTwo},
	}
	for _, t := range targets {
		if t.issue, err = systemAccount(ctx, t.inst); err != nil {
			return nil, err
		}
	}
	for r := 1; r <= o.rounds; r++ {
		// Alternate which instance goes first so that drift in the
		// machine's speed falls on both.
		order := targets
		if r%2 == 0 {
			order = []*target{targets[1], targets[0]}
		}
		for _, t := range order {
			fmt.Fprintf(log, "round %d/%d, %s: logins, %d clients ...\n", r, o.rounds, t.name, res.loginConc)
			lr, err := drive(ctx, driveSpec{url: t.inst.url + "/v1/auth/login", body: t.inst.loginBody(), check: checkToken,
				clients: res.loginConc, warmup: o.warmup, duration: o.duration, tls: t.inst.tlsConfig})
			if err != nil {
				return nil, fmt.Errorf("logins (%s): %w", t.name, err)
			}
			*t.login = append(*t.login, lr)
			fmt.Fprintf(log, "  %.1f logins/s\n", lr.Rate())
			fmt.Fprintf(log, "round %d/%d, %s: token issue, %d clients ...\n", r, o.rounds, t.name, res.issueConc)
			ir, err := drive(ctx, driveSpec{url: t.inst.url + "/v1/token/issue", body: t.issue, check: checkIssued,
				clients: res.issueConc, warmup: o.warmup, duration: o.duration, tls: t.inst.tlsConfig, bearer: t.inst.token})
			if err != nil {
				return nil, fmt.Errorf("token issue (%s): %w", t.name, err)
			}
			*t.issueRes = append(*t.issueRes, ir)
			fmt.Fprintf(log, "  %.0f issues/s, p50 %s, p99 %s\n", ir.Rate(), loadkit.FmtDur(ir.Pct(0.5)), loadkit.FmtDur(ir.Pct(0.99)))
		}
	}
	// Everything stored must reach both sinks: wait for them, so that a
	// sink that fell behind shows as a long catch-up, not a fast run.
	start := time.Now()
	for {
		n, lines, err := sinkCounts(ctx, two)
		if err != nil {
			return nil, err
		}
		if lines[0] >= n && lines[1] >= n {
			res.catchUp, res.eventsInTwo, res.linesPerSink = time.Since(start), n, min(lines[0], lines[1])
			return res, nil
		}
		if time.Since(start) > 2*time.Minute {
			return nil, fmt.Errorf("sinks hold %v lines of %d events after 2 min", lines, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sinkCounts returns how many events inst has stored (paging /v1/audit)
// and how many lines each of its two sink files holds.
func sinkCounts(ctx context.Context, inst *instance) (int, [2]int, error) {
	var lines [2]int
	n, cursor := 0, ""
	for {
		var page struct {
			Events     []json.RawMessage `json:"events"`
			NextCursor string            `json:"next_cursor"`
		}
		path := "/v1/audit?limit=500"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if err := authJSON(ctx, inst, http.MethodGet, path, nil, http.StatusOK, &page); err != nil {
			return 0, lines, err
		}
		n += len(page.Events)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	for i, name := range []string{"primary", "secondary"} {
		b, err := os.ReadFile(filepath.Join(inst.dir, "audit-"+name+".jsonl"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, lines, err
		}
		lines[i] = bytes.Count(b, []byte("\n"))
	}
	return n, lines, nil
}

// writeAuditReport prints the Markdown for bench/README.md.
func writeAuditReport(w io.Writer, o options, r *auditResults) {
	m, a := r.machine, r.argon
	fmt.Fprintf(w, "#### restload -sinks, %s\n\n", m.Date)
	fmt.Fprintf(w, "| machine | |\n|---|---|\n| CPU | %s |\n| cores | %d (load generator and both servers share them) |\n| Go | %s |\n| OS | %s |\n",
		m.CPU, m.Cores, m.Go, m.Kernel)
	fmt.Fprintf(w, "| run | `-sinks -c %d -d %s -rounds %d`, warm-up %s; argon2id t=%d m=%d KiB p=%d |\n\n",
		o.clients, o.duration, o.rounds, o.warmup, a.Time, a.MemoryKiB, a.Threads)
	fmt.Fprintln(w, "| measure | no sink | two sinks | two / none | target |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	ln, lt := loadkit.Merge(r.loginNone), loadkit.Merge(r.loginTwo)
	in, it := loadkit.Merge(r.issueNone), loadkit.Merge(r.issueTwo)
	fmt.Fprintf(w, "| logins/s, %d clients | %.1f | %.1f | **%.2f** | ≥ 0.9 |\n", r.loginConc, ln.Rate(), lt.Rate(), ratio(lt.Rate(), ln.Rate()))
	fmt.Fprintf(w, "| token issues/s, %d clients | %.0f | %.0f | **%.2f** | ≥ 0.9 |\n", r.issueConc, in.Rate(), it.Rate(), ratio(it.Rate(), in.Rate()))
	for _, q := range []float64{0.5, 0.99} {
		fmt.Fprintf(w, "| token issue p%.0f | %s | %s | %.2f | |\n", q*100, loadkit.FmtDur(in.Pct(q)), loadkit.FmtDur(it.Pct(q)),
			ratio(float64(it.Pct(q)), float64(in.Pct(q))))
	}
	fmt.Fprintf(w, "\n| round | logins/s none | logins/s two | issues/s none | issues/s two |\n|---|---:|---:|---:|---:|\n")
	for i := range r.loginNone {
		fmt.Fprintf(w, "| %d | %.1f | %.1f | %.0f | %.0f |\n", i+1, r.loginNone[i].Rate(), r.loginTwo[i].Rate(), r.issueNone[i].Rate(), r.issueTwo[i].Rate())
	}
	fmt.Fprintf(w, "\nAfter the last round both sinks held all %d stored events (%d lines each at least) within %s.\n",
		r.eventsInTwo, r.linesPerSink, r.catchUp.Round(time.Millisecond))
}
