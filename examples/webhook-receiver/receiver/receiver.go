// Package receiver is the HTTP handler of the webhook-receiver example:
// it accepts the batches the MCIAS webhook audit sink POSTs, after
// checking their MCIAS-Signature (sdk/audit/webhooksig: HMAC-SHA256 over
// the timestamp and the body, compared in constant time, stale
// timestamps refused), drops events it already has by id, and appends
// the rest to a JSON Lines file, fsynced before it answers 204.
package receiver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/webhooksig"
)

// MaxBody bounds a request body.
const MaxBody = 16 << 20

// Handler receives batches. Create it with New.
type Handler struct {
	secret    []byte
	tolerance time.Duration
	now       func() time.Time
	log       *slog.Logger

	mu   sync.Mutex
	out  *os.File
	seen map[string]bool // every event id in out; a real receiver would bound this by time
}

// New opens (creating 0600) the output file and loads the IDs it
// already holds, so a restarted receiver still drops repeats.
func New(secret []byte, outPath string, tolerance time.Duration, logger *slog.Logger) (*Handler, error) {
	f, err := os.OpenFile(outPath, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	h := &Handler{secret: secret, tolerance: tolerance, now: time.Now, log: logger, out: f, seen: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, MaxBody)
	for sc.Scan() {
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: a line is not an event: %w", outPath, err)
		}
		h.seen[r.ID] = true
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return nil, err
	}
	return h, nil
}

// Close closes the output file.
func (h *Handler) Close() error { return h.out.Close() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "application/json only", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	// Authenticate before parsing anything.
	if err := webhooksig.Verify(h.secret, r.Header.Get(webhooksig.Header), body, h.now(), h.tolerance); err != nil {
		h.log.Warn("refused a request", "remote", r.RemoteAddr, "reason", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b struct {
		Events []audit.Record `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		http.Error(w, "not a batch of events", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var buf bytes.Buffer
	var fresh []string
	batch := map[string]bool{}
	for _, e := range b.Events {
		if e.ID == "" || h.seen[e.ID] || batch[e.ID] {
			continue
		}
		batch[e.ID] = true
		fresh = append(fresh, e.ID)
		line, err := audit.MarshalRecord(e.Event()) // pure ASCII: one line per event, whatever its text
		if err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if len(fresh) > 0 {
		if _, err := h.out.Write(buf.Bytes()); err != nil {
			h.fail(w, err)
			return
		}
		if err := h.out.Sync(); err != nil {
			h.fail(w, err)
			return
		}
		for _, id := range fresh {
			h.seen[id] = true
		}
	}
	h.log.Info("batch accepted", "events", len(b.Events), "new", len(fresh))
	w.WriteHeader(http.StatusNoContent)
}

// fail answers 503 so the sender retries the batch later.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	h.log.Error("store events", "error", err)
	http.Error(w, "cannot store events now", http.StatusServiceUnavailable)
}

// ReadSecret reads a signing secret from a file, dropping one trailing
// newline, as the sink does.
func ReadSecret(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
	if len(s) == 0 {
		return nil, errors.New("the secret file is empty")
	}
	return s, nil
}
