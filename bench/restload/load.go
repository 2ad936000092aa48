package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/metacircular/mcias/bench/internal/loadkit"
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
	// bearer, when set, is sent as the Authorization header.
	bearer string
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
func post(ctx context.Context, c *http.Client, url, bearer string, body []byte, check func(int, []byte) error, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
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

// drive runs spec on one keep-alive connection per client.
func drive(ctx context.Context, spec driveSpec) (loadkit.Result, error) {
	return loadkit.Drive(ctx, loadkit.Round{Clients: spec.clients, Warmup: spec.warmup, Duration: spec.duration},
		func(int) (func(context.Context) error, func(), error) {
			c := newClient(spec.tls)
			var buf bytes.Buffer
			return func(ctx context.Context) error {
				return post(ctx, c, spec.url, spec.bearer, spec.body, spec.check, &buf)
			}, c.CloseIdleConnections, nil
		})
}

// sequential sends n requests one after another on one connection, after
// one unmeasured request that also opens the connection.
func sequential(ctx context.Context, url string, body []byte, check func(int, []byte) error, n int, cfg *tls.Config) ([]time.Duration, error) {
	c := newClient(cfg)
	defer c.CloseIdleConnections()
	var buf bytes.Buffer
	if err := post(ctx, c, url, "", body, check, &buf); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := post(ctx, c, url, "", body, check, &buf); err != nil {
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
