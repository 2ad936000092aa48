package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/bench/internal/loadkit"
)

const initConfig = `# MCIAS development configuration, written by "mciassrv init".

[server]
listen = "127.0.0.1:8443"

[tls]
cert_file = "run/tls/cert.pem"
key_file = "run/tls/key.pem"

[[audit.sinks]]
uri = "file:run/audit.jsonl"

[log]
format = "text"
level = "info" # comment
`

func TestSetTOML(t *testing.T) {
	got := setTOML(initConfig, []tomlTable{
		{"login", []tomlKV{{"rate_per_minute", "1e9"}, {"burst", "1000000"}}},
		{"log", []tomlKV{{"level", `"warn"`}}},
	})
	for _, want := range []string{
		"[log]\nlevel = \"warn\"\nformat = \"text\"\n",
		"\n[login]\nrate_per_minute = 1e9\nburst = 1000000\n",
		"[[audit.sinks]]\nuri = \"file:run/audit.jsonl\"\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "level =") != 1 || strings.Count(got, "[log]") != 1 {
		t.Errorf("duplicate key or table:\n%s", got)
	}
	if v, ok := tomlGet(got, "log", "level"); !ok || v != `"warn"` {
		t.Errorf("tomlGet(log.level) = %q, %v", v, ok)
	}
}

func TestArgonFromTOML(t *testing.T) {
	p, err := argonFromTOML(initConfig)
	if err != nil || p != (argonParams{3, 65536, 1}) {
		t.Fatalf("defaults: %+v, %v", p, err)
	}
	p, err = argonFromTOML(initConfig + "\n[password]\nargon2_time = 2\nargon2_memory_kib = 19_456\n")
	if err != nil || p != (argonParams{2, 19456, 1}) {
		t.Fatalf("set: %+v, %v", p, err)
	}
	if _, err := argonFromTOML("[password]\nargon2_threads = 300\n"); err == nil {
		t.Fatal("threads 300 accepted")
	}
}

func signedToken(t *testing.T) (ed25519.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"EdDSA","kid":"k","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(`{"sub":"x"}`))
	return pub, signed + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(signed)))
}

func TestVerifyJWS(t *testing.T) {
	pub, tok := signedToken(t)
	if !verifyJWS(pub, tok) {
		t.Fatal("good token rejected")
	}
	bad := []byte(tok)
	bad[len(bad)-3] ^= 1
	for _, s := range []string{string(bad), "", "a.b", "a.b.c", tok + "x"} {
		if verifyJWS(pub, s) {
			t.Errorf("accepted %q", s)
		}
	}
	if k, err := tokenKid(tok); err != nil || k != "k" {
		t.Errorf("tokenKid = %q, %v", k, err)
	}
}

func TestDrive(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"valid":true}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	cfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}

	res, err := drive(context.Background(), driveSpec{
		url: srv.URL, body: []byte(`{}`), check: checkValid, clients: 4,
		warmup: 50 * time.Millisecond, duration: 200 * time.Millisecond, tls: cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rate() <= 0 || res.Pct(0.5) <= 0 || res.Pct(0.5) > res.Pct(0.99) {
		t.Fatalf("rate %.0f p50 %s p99 %s", res.Rate(), res.Pct(0.5), res.Pct(0.99))
	}

	// A wrong answer fails the run.
	_, err = drive(context.Background(), driveSpec{
		url: srv.URL, body: []byte(`{}`), check: checkToken, clients: 2,
		duration: 100 * time.Millisecond, tls: cfg,
	})
	if err == nil {
		t.Fatal("a bad answer did not fail the run")
	}
}

func TestPct(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	if loadkit.Pct(s, 0.5) != 50 || loadkit.Pct(s, 0.99) != 99 || loadkit.Pct(s, 1) != 100 || loadkit.Pct(nil, 0.5) != 0 {
		t.Fatal(loadkit.Pct(s, 0.5), loadkit.Pct(s, 0.99))
	}
}
