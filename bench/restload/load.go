package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"
)

// driveSpec is one closed-loop load run: clients keep-alive HTTPS/1.1
// connections, each POSTing body, waiting for the answer, and POSTing
// again, for warmup (discarded) and then duration (measured).
type driveSpec struct {
	url      string
	body     []byte
	check    func(status int, body []byte) error
	clients  int
	warmup   time.Duration
	duration time.Duration
	tls      *tls.Config
}

// loadResult holds the requests that completed inside the measured
// window, with their latencies.
type loadResult struct {
	window    time.Duration
	latencies []time.Duration // sorted
}

func (r loadResult) rate() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(len(r.latencies)) / r.window.Seconds()
}

func (r loadResult) pct(q float64) time.Duration { return pct(r.latencies, q) }

// merge pools rounds: total requests over total time, all latencies.
func merge(rs []loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.window += r.window
		m.latencies = append(m.latencies, r.latencies...)
	}
	slices.Sort(m.latencies)
	return m
}

// pct is the nearest-rank percentile of sorted samples.
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if !slices.IsSorted(sorted) {
		sorted = slices.Sorted(slices.Values(sorted))
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// newClient is one keep-alive HTTP/1.1 connection.
func newClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     cfg.Clone(),
			ForceAttemptHTTP2:   false,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// post sends one request and checks the answer.
func post(ctx context.Context, c *http.Client, url string, body []byte, check func(int, []byte) error, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = io.Copy(buf, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.ProtoMajor != 1 {
		return fmt.Errorf("answered over %s, want HTTP/1.1", resp.Proto)
	}
	return check(resp.StatusCode, buf.Bytes())
}

// drive runs spec. Any failed request ends the run with an error: a
// benchmark of error answers would measure the wrong thing.
func drive(ctx context.Context, spec driveSpec) (loadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now().Add(spec.warmup)
	end := start.Add(spec.duration)
	lat := make([][]time.Duration, spec.clients)
	var wg sync.WaitGroup
	for w := range spec.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(spec.tls)
			defer c.CloseIdleConnections()
			var buf bytes.Buffer
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				if err := post(ctx, c, spec.url, spec.body, spec.check, &buf); err != nil {
					cancel(err)
					return
				}
				// Count what completed inside the window, as the bare
				// hash loop does: throughput is completions per second
				// of window whatever the latency. Counting only requests
				// that also started inside it would drop up to one
				// request per client at each edge, which for 400 ms
				// logins biases the rate low by several percent.
				if t1 := time.Now(); !t1.Before(start) && !t1.After(end) {
					lat[w] = append(lat[w], t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return loadResult{}, err
	}
	res := loadResult{window: spec.duration}
	for _, l := range lat {
		res.latencies = append(res.latencies, l...)
	}
	if len(res.latencies) == 0 {
		return res, errors.New("no request completed inside the measured window")
	}
	slices.Sort(res.latencies)
	return res, nil
}

// sequential sends n requests one after another on one connection, after
// one unmeasured request that also opens the connection.
func sequential(ctx context.Context, url string, body []byte, check func(int, []byte) error, n int, cfg *tls.Config) ([]time.Duration, error) {
	c := newClient(cfg)
	defer c.CloseIdleConnections()
	var buf bytes.Buffer
	if err := post(ctx, c, url, body, check, &buf); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := post(ctx, c, url, body, check, &buf); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	slices.Sort(out)
	return out, nil
}

var (
	validTrue = []byte(`"valid":true`)
	tokenKey  = []byte(`"token":"`)
)

func checkValid(status int, body []byte) error {
	if status != http.StatusOK || !bytes.Contains(body, validTrue) {
		return fmt.Errorf("validate answered %d %s, want 200 with \"valid\":true", status, snippet(body))
	}
	return nil
}

func checkToken(status int, body []byte) error {
	if status != http.StatusOK || !bytes.Contains(body, tokenKey) {
		return fmt.Errorf("login answered %d %s, want 200 with a token", status, snippet(body))
	}
	return nil
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		b = append(b[:200:200], "..."...)
	}
	return string(b)
}

func numCPU() int { return runtime.NumCPU() }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}
