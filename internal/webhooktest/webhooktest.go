// Package webhooktest is a webhook receiver for the tests of the webhook
// audit sink: an HTTP server on the loopback interface that verifies
// each request's MCIAS-Signature (sdk/audit/webhooksig), decodes the
// batch strictly, and keeps the events it accepted in arrival order. It
// can be told to answer a status instead of accepting, to play a
// receiver that is failing.
package webhooktest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/webhooksig"
)

// Receiver is a running receiver.
type Receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	events   []audit.Event
	bodies   []string
	status   int // answer instead of accepting, when non-zero
	refused  int // requests answered with status
	rejected int // requests with a bad signature or body
}

// NewReceiver starts a receiver that checks signatures with secret; it
// stops when the test ends.
func NewReceiver(t testing.TB, secret string) *Receiver {
	r := &Receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			r.rejected++
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := webhooksig.Verify([]byte(secret), req.Header.Get(webhooksig.Header), body, time.Now(), webhooksig.DefaultTolerance); err != nil {
			r.rejected++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if r.status != 0 {
			r.refused++
			w.WriteHeader(r.status)
			return
		}
		var b struct {
			Events []audit.Record `json:"events"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			r.rejected++
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.bodies = append(r.bodies, string(body))
		for _, rec := range b.Events {
			r.events = append(r.events, rec.Event())
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the receiver's base URL (http://127.0.0.1:port).
func (r *Receiver) URL() string { return r.srv.URL }

// Close stops the receiver now.
func (r *Receiver) Close() { r.srv.Close() }

// SetStatus makes the receiver answer status to every request from now
// on instead of accepting it; 0 makes it accept again.
func (r *Receiver) SetStatus(status int) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

// Read returns every event accepted so far, in arrival order.
func (r *Receiver) Read() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

// Bodies returns the raw bodies of the accepted requests.
func (r *Receiver) Bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// Counts reports how many requests were answered with the set status
// and how many were rejected for a bad signature or body.
func (r *Receiver) Counts() (refused, rejected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused, r.rejected
}
