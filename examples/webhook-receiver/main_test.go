package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/examples/webhook-receiver/receiver"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
	"github.com/metacircular/mcias/sdk/audit/webhooksig"
)

var secret = []byte("receiver-test-secret-of-32-bytes")

func body(t *testing.T, evs ...audit.Event) []byte {
	t.Helper()
	recs := make([]audit.Record, len(evs))
	for i, e := range evs {
		recs[i] = audit.NewRecord(e)
	}
	b, err := json.Marshal(map[string]any{"events": recs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func send(t *testing.T, url string, sig string, b []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(webhooksig.Header, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func lines(t *testing.T, path string) []audit.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r.Event())
	}
	return out
}

func serve(t *testing.T, out string) string {
	t.Helper()
	h, err := receiver.New(secret, out, webhooksig.DefaultTolerance, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })
	return srv.URL
}

func TestReceiver(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events.jsonl")
	url := serve(t, out)
	now := time.Now()
	b1 := body(t, audittest.Event(1), audittest.Event(2))
	nasty := audittest.Event(3)
	nasty.Details = map[string]string{"username": "x\n{\"type\":\"login_success\"}\u2028\x00"}
	b2 := body(t, audittest.Event(2), nasty) // overlaps: event 2 again

	for _, tt := range []struct {
		name string
		sig  string
		b    []byte
		want int
	}{
		{"signed", webhooksig.Sign(secret, now, b1), b1, 204},
		{"redelivered", webhooksig.Sign(secret, now, b1), b1, 204},
		{"overlapping", webhooksig.Sign(secret, now, b2), b2, 204},
		{"unsigned", "", b1, 401},
		{"wrong secret", webhooksig.Sign([]byte("not-the-secret-not-the-secret-!!"), now, b1), b1, 401},
		{"body changed", webhooksig.Sign(secret, now, b1), b2, 401},
		{"stale", webhooksig.Sign(secret, now.Add(-10*time.Minute), b1), b1, 401},
		{"signed garbage", webhooksig.Sign(secret, now, []byte(`{"events":"x"}`)), []byte(`{"events":"x"}`), 400},
	} {
		if got := send(t, url, tt.sig, tt.b); got != tt.want {
			t.Errorf("case=%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	got := lines(t, out)
	if len(got) != 3 {
		t.Fatalf("%d events stored, want 3 (each once)", len(got))
	}
	for i, e := range got {
		want := audittest.Event(int64(i + 1))
		if i == 2 {
			want = nasty
		}
		if d := audittest.Equal(e, want); d != "" {
			t.Errorf("event %d: %s", i, d)
		}
	}

	// Restarted on the same file, it still knows what it has.
	url = serve(t, out)
	if got := send(t, url, webhooksig.Sign(secret, now, b2), b2); got != 204 {
		t.Fatalf("after restart: %d", got)
	}
	if n := len(lines(t, out)); n != 3 {
		t.Fatalf("after restart and a redelivery: %d events, want 3", n)
	}
}

func TestRefusesOtherRequests(t *testing.T) {
	url := serve(t, filepath.Join(t.TempDir(), "events.jsonl"))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	resp, err = http.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", resp.StatusCode)
	}
	big := fmt.Sprintf(`{"events":[],"pad":%q}`, strings.Repeat("x", receiver.MaxBody))
	if got := send(t, url, webhooksig.Sign(secret, time.Now(), []byte(big)), []byte(big)); got != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", got)
	}
}
