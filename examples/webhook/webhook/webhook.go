// Package webhook is an example MCIAS audit sink written outside the
// MCIAS tree: it POSTs each batch of audit events as JSON to an HTTP(S)
// endpoint, such as a log collector's intake. It shows what the sink
// contract asks of a backend and passes the same conformance suite as the
// builtin file sink.
//
// URI: webhook+https://collector.internal/intake (or webhook+http://...
// for a collector on the same host). Optional query parameters, removed
// from the URL before it is called:
//
//	token_env=NAME   send "Authorization: Bearer $NAME" (the token stays
//	                 out of the configuration file)
//	timeout=10s      per-request timeout (default 10s)
//
// The body is {"events":[...]} with the fields of CONTRACT.md's audit
// event. Delivery is at least once: the receiver must drop duplicates by
// "id". Any 2xx accepts the batch; 408, 429, 5xx and transport errors are
// transient (sdk.ErrUnavailable, MCIAS redelivers); other statuses mean
// the endpoint refuses the request (sdk.ErrInvalidArgument).
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// Name is the sink's name in Info.
const Name = "webhook"

// Record is one event on the wire (CONTRACT.md's audit event).
type Record struct {
	ID        string            `json:"id"`
	Seq       int64             `json:"seq"`
	Time      time.Time         `json:"time"`
	Type      string            `json:"type"`
	ActorID   string            `json:"actor_id,omitempty"`
	AccountID string            `json:"account_id,omitempty"`
	IP        string            `json:"ip,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
}

// Batch is the request body.
type Batch struct {
	Events []Record `json:"events"`
}

// NewRecord converts an event to its wire form.
func NewRecord(e audit.Event) Record {
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	return Record{ID: e.ID, Seq: e.Seq, Time: e.Time.UTC(), Type: string(e.Type), ActorID: e.ActorID,
		AccountID: e.AccountID, IP: e.IP, RequestID: e.RequestID, Outcome: string(e.Outcome), Details: d}
}

// Event converts a wire record back (for receivers written in Go).
func (r Record) Event() audit.Event {
	e := audit.Event{ID: r.ID, Seq: r.Seq, Time: r.Time.UTC(), Type: audit.Type(r.Type), ActorID: r.ActorID,
		AccountID: r.AccountID, IP: r.IP, RequestID: r.RequestID, Outcome: audit.Outcome(r.Outcome)}
	if len(r.Details) > 0 {
		e.Details = r.Details
	}
	return e
}

// Sink posts batches to one endpoint.
type Sink struct {
	endpoint string
	token    string
	client   *http.Client
	logger   *slog.Logger
	mu       sync.RWMutex
	closed   bool
}

var _ audit.Sink = (*Sink)(nil)

// Open is the audit.Factory of the sink.
func Open(_ context.Context, uri string, logger *slog.Logger) (audit.Sink, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bad := func(why string) error {
		return fmt.Errorf("webhook: uri: %w: %s (want webhook+https://host/path)", sdk.ErrInvalidArgument, why)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, bad("not a URL")
	}
	scheme, ok := strings.CutPrefix(u.Scheme, "webhook+")
	if !ok || (scheme != "http" && scheme != "https") || u.Host == "" {
		return nil, bad("scheme must be webhook+http or webhook+https, with a host")
	}
	if u.User != nil {
		return nil, bad("credentials in the URL; use token_env")
	}
	q := u.Query()
	s := &Sink{logger: logger}
	timeout := 10 * time.Second
	for k := range q {
		switch k {
		case "token_env":
			name := q.Get(k)
			if s.token = os.Getenv(name); s.token == "" {
				return nil, fmt.Errorf("webhook: token_env %s is empty or unset: %w", name, sdk.ErrInvalidArgument)
			}
		case "timeout":
			if timeout, err = time.ParseDuration(q.Get(k)); err != nil || timeout <= 0 {
				return nil, bad("timeout must be a positive duration")
			}
		default:
			return nil, bad(fmt.Sprintf("unknown parameter %q (known: token_env, timeout)", k))
		}
	}
	u.Scheme, u.RawQuery = scheme, ""
	s.endpoint = u.String()
	s.client = &http.Client{Timeout: timeout}
	logger.Info("webhook: delivering audit events", "endpoint", s.endpoint, "auth", s.token != "")
	return s, nil
}

func (s *Sink) check(op string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("webhook: %s: %w: sink is closed", op, sdk.ErrUnavailable)
	}
	return nil
}

// Info implements audit.Sink.
func (s *Sink) Info(context.Context) (audit.Info, error) {
	return audit.Info{Name: Name}, s.check("info")
}

// Deliver implements audit.Sink: one POST per batch.
func (s *Sink) Deliver(ctx context.Context, events []audit.Event) error {
	if err := s.check("deliver"); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	b := Batch{Events: make([]Record, len(events))}
	for i, e := range events {
		b.Events[i] = NewRecord(e)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("webhook: deliver: %w: %v", sdk.ErrInvalidArgument, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: deliver: %w: %v", sdk.ErrInternal, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// Never echo the request: it carries the token header.
		return fmt.Errorf("webhook: deliver %d events: %w: %w", len(events), sdk.ErrUnavailable, unwrapURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return fmt.Errorf("webhook: deliver %d events: %w: endpoint answered %s", len(events), sdk.ErrUnavailable, resp.Status)
	default:
		return fmt.Errorf("webhook: deliver %d events: %w: endpoint refused with %s", len(events), sdk.ErrInvalidArgument, resp.Status)
	}
}

// unwrapURL drops *url.Error's method and URL prefix, keeping the cause.
func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
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
