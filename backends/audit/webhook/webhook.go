// Package webhook is the builtin audit sink that POSTs each batch of
// events as JSON to an HTTP(S) endpoint, signed with HMAC-SHA256.
//
// URI: webhook+https://collector.internal/intake?secret_file=/etc/mcias/webhook.key
// (or webhook+http://... for a receiver on the same host: localhost,
// 127.0.0.0/8 or ::1; plain HTTP to any other host is refused). Query
// parameters, removed from the URL before it is called:
//
//	secret_env=NAME   the signing secret is the value of environment variable NAME
//	secret_file=PATH  the signing secret is the content of PATH (one trailing newline dropped)
//	timeout=10s       per-request timeout (default 10s)
//
// Exactly one of secret_env and secret_file is required, and the secret
// must be at least 32 bytes; it never appears in the URI, the
// configuration or a log line. Under the plugin runtime, list the
// variable in the catalog entry's env (the plugin sees nothing else).
//
// Body: {"events":[audit.Record, ...]} with Content-Type application/json,
// each event encoded by audit.MarshalRecord (so the body is pure ASCII).
// Header (sdk/audit/webhooksig, which a receiver in Go uses to verify):
//
//	MCIAS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// the scheme Stripe and GitHub use: a receiver recomputes the MAC over
// the timestamp and the exact body bytes, compares in constant time,
// refuses a timestamp far from its clock (a captured request cannot be
// replayed later), and drops events it has seen by id (delivery is at
// least once). examples/webhook-receiver does all of that.
//
// Answers: any 2xx accepts the batch. 408, 429, 5xx and transport errors
// are transient (sdk.ErrUnavailable). Any other status (401 for a wrong
// secret, 404 for a wrong path, 400, 413...) is sdk.ErrPrecondition: the
// endpoint refuses, and the same request will keep being refused until
// an operator fixes one side. So is a redirect (3xx), which is never
// followed: the batch reached no receiver. The server still retries (with backoff,
// logging each failure): an audit event is never dropped because a
// receiver was misconfigured for a while.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/webhooksig"
)

// Name is the sink's name in Info.
const Name = "webhook"

// MinSecretBytes is the shortest signing secret accepted.
const MinSecretBytes = 32

// Sink posts batches to one endpoint.
type Sink struct {
	endpoint string
	secret   []byte
	client   *http.Client
	logger   *slog.Logger
	now      func() time.Time

	mu     sync.RWMutex
	closed bool
}

var _ audit.Sink = (*Sink)(nil)

// Open is the audit.Factory of the sink.
func Open(_ context.Context, uri string, logger *slog.Logger) (audit.Sink, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bad := func(why string) error {
		return fmt.Errorf("webhook audit: uri: %w: %s (want webhook+https://host/path?secret_file=PATH)", sdk.ErrInvalidArgument, why)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, bad("not a URL")
	}
	scheme, ok := strings.CutPrefix(u.Scheme, "webhook+")
	if !ok || (scheme != "http" && scheme != "https") || u.Host == "" {
		return nil, bad("scheme must be webhook+http or webhook+https, with a host")
	}
	if u.User != nil || u.Fragment != "" {
		return nil, bad("credentials or a fragment in the URL")
	}
	if scheme == "http" && !loopback(u.Hostname()) {
		// Audit events name accounts, addresses and acts; across a
		// network they travel under TLS. Plain HTTP is for a receiver
		// on this host.
		return nil, bad("webhook+http is only for a receiver on this host (localhost, 127.0.0.0/8, ::1); use webhook+https")
	}
	s := &Sink{logger: logger, now: time.Now}
	timeout := 10 * time.Second
	q := u.Query()
	for k, v := range q {
		if len(v) != 1 {
			return nil, bad(fmt.Sprintf("parameter %q repeated", k))
		}
		switch k {
		case "secret_env":
			if s.secret != nil {
				return nil, bad("give one of secret_env and secret_file")
			}
			s.secret = []byte(os.Getenv(v[0]))
			if len(s.secret) == 0 {
				return nil, fmt.Errorf("webhook audit: secret_env %s is empty or unset: %w", v[0], sdk.ErrInvalidArgument)
			}
		case "secret_file":
			if s.secret != nil {
				return nil, bad("give one of secret_env and secret_file")
			}
			raw, err := os.ReadFile(v[0])
			if err != nil {
				return nil, fmt.Errorf("webhook audit: secret_file: %w: %w", sdk.ErrInvalidArgument, err)
			}
			s.secret = bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
		case "timeout":
			if timeout, err = time.ParseDuration(v[0]); err != nil || timeout <= 0 {
				return nil, bad("timeout must be a positive duration")
			}
		default:
			return nil, bad(fmt.Sprintf("unknown parameter %q (known: secret_env, secret_file, timeout)", k))
		}
	}
	if s.secret == nil {
		return nil, bad("a signing secret is required (secret_env or secret_file)")
	}
	if len(s.secret) < MinSecretBytes {
		return nil, fmt.Errorf("webhook audit: the signing secret has %d bytes, fewer than %d: %w", len(s.secret), MinSecretBytes, sdk.ErrInvalidArgument)
	}
	u.Scheme, u.RawQuery = scheme, ""
	s.endpoint = u.String()
	s.client = &http.Client{
		Timeout: timeout,
		// A redirect is answered, not followed: followed, a 302 or 303
		// turns the POST into a GET without the events (and the page it
		// leads to answering 200 would count as delivered), and a 307 or
		// 308 sends the signed batch wherever Location points. Deliver
		// treats 3xx as a refusal.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	logger.Info("webhook audit: delivering audit events", "endpoint", s.endpoint)
	return s, nil
}

func (s *Sink) check(op string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("webhook audit: %s: %w: sink is closed", op, sdk.ErrUnavailable)
	}
	return nil
}

// Info implements audit.Sink.
func (s *Sink) Info(context.Context) (audit.Info, error) {
	return audit.Info{Name: Name}, s.check("info")
}

// Deliver implements audit.Sink: one signed POST per batch.
func (s *Sink) Deliver(ctx context.Context, events []audit.Event) error {
	if err := s.check("deliver"); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	body, err := marshalBatch(events)
	if err != nil {
		return fmt.Errorf("webhook audit: deliver: %w: %v", sdk.ErrInvalidArgument, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook audit: deliver: %w: %v", sdk.ErrInternal, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhooksig.Header, webhooksig.Sign(s.secret, s.now(), body))
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook audit: deliver %d events: %w: %w", len(events), sdk.ErrUnavailable, unwrapURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return fmt.Errorf("webhook audit: deliver %d events: %w: endpoint answered %s", len(events), sdk.ErrUnavailable, resp.Status)
	default:
		return fmt.Errorf("webhook audit: deliver %d events: %w: endpoint refused with %s (check its URL and the signing secret)", len(events), sdk.ErrPrecondition, resp.Status)
	}
}

// marshalBatch encodes the request body.
func marshalBatch(events []audit.Event) ([]byte, error) {
	body := []byte(`{"events":[`)
	for i, e := range events {
		line, err := audit.MarshalRecord(e)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, line...)
	}
	return append(body, "]}"...), nil
}

// unwrapURL drops *url.Error's method and URL prefix, keeping the cause.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Close implements audit.Sink; it is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.client.CloseIdleConnections()
	}
	return nil
}

// loopback reports whether host names this machine: "localhost" or a
// loopback address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
