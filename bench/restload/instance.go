package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/metacircular/mcias/bench/internal/loadkit"
)

const benchAdmin = "benchadmin"

// instance is a running mciassrv laid out in a temporary directory.
type instance struct {
	dir       string
	url       string // https://127.0.0.1:port
	certFile  string
	keyFile   string
	tlsConfig *tls.Config // trusts the instance's development CA
	proc      *loadkit.Proc
	password  string
	token     string
	jwkX      string // base64url Ed25519 public key that signed token
	argon     argonParams
}

type argonParams struct {
	Time      uint32 `json:"t"`
	MemoryKiB uint32 `json:"m"`
	Threads   uint8  `json:"p"`
}

func (i *instance) loginBody() []byte {
	b, _ := json.Marshal(map[string]string{"username": benchAdmin, "password": i.password})
	return b
}

// startInstance runs `mciassrv init`, rewrites the limits and log level in
// its config (then edit, when not nil, rewrites it further), serves it,
// waits for /v1/ready, and logs in.
func startInstance(ctx context.Context, o options, procs *loadkit.Children, log io.Writer, edit func(dir, cfg string) string) (*instance, error) {
	bin, dir, err := loadkit.Workdir(procs, o.bin, "restload-", o.keep, log)
	if err != nil {
		return nil, err
	}

	// mciassrv logs its address at info level, which we turn off, so pick
	// the port here. Another process could take it in between; then
	// serve fails to listen and we say so.
	addr, err := loadkit.FreeAddr()
	if err != nil {
		return nil, err
	}
	pluginDir := filepath.Join(filepath.Dir(bin), "plugins")
	// -grpc "": no gRPC listener; this benchmark is REST's (grpcload
	// measures gRPC).
	out, err := exec.CommandContext(ctx, bin, "init", "-dir", dir, "-listen", addr, "-grpc", "", "-plugins", pluginDir).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mciassrv init: %w\n%s", err, out)
	}

	cfgPath := filepath.Join(dir, "mcias.toml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	tables := []tomlTable{
		{"login", []tomlKV{{"rate_per_minute", "1e9"}, {"burst", "1000000"}}},
		{"log", []tomlKV{{"level", `"warn"`}}},
	}
	if o.storage != "" {
		tables = append(tables, tomlTable{"storage", []tomlKV{{"uri", strconv.Quote(o.storage)}}})
	}
	if o.plugins {
		tables = append(tables, tomlTable{"plugins", []tomlKV{{"builtins", `"subprocess"`}}})
	}
	cfg := setTOML(string(raw), tables)
	if edit != nil {
		cfg = edit(dir, cfg)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "check-config", "-config", cfgPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mciassrv check-config on the edited config: %w\n%s", err, out)
	}
	argon, err := argonFromTOML(cfg)
	if err != nil {
		return nil, err
	}

	inst := &instance{
		dir:      dir,
		url:      "https://" + addr,
		certFile: filepath.Join(dir, "tls", "cert.pem"),
		keyFile:  filepath.Join(dir, "tls", "key.pem"),
		password: randomPassword(),
		argon:    argon,
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tls/ca.pem holds no certificate")
	}
	inst.tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"MCIAS_ADMIN_USERNAME="+benchAdmin,
		"MCIAS_ADMIN_PASSWORD="+inst.password,
	)
	fmt.Fprintf(log, "starting mciassrv on %s (argon2id t=%d m=%d KiB p=%d) ...\n",
		addr, argon.Time, argon.MemoryKiB, argon.Threads)
	if inst.proc, err = procs.Start("mciassrv", cmd); err != nil {
		return nil, err
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: inst.tlsConfig}}
	defer client.CloseIdleConnections()
	if err := waitReady(ctx, client, inst.url+"/v1/ready", inst.proc, 60*time.Second); err != nil {
		return nil, err
	}

	var login struct {
		Token string `json:"token"`
	}
	if err := doJSON(ctx, client, http.MethodPost, inst.url+"/v1/auth/login", inst.loginBody(), &login); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if strings.Count(login.Token, ".") != 2 {
		return nil, errors.New("login: the answer holds no compact JWS")
	}
	inst.token = login.Token

	var jwks struct {
		Keys []struct {
			Kty, Crv, X, Kid string
		} `json:"keys"`
	}
	if err := doJSON(ctx, client, http.MethodGet, inst.url+"/.well-known/jwks.json", nil, &jwks); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	kid, err := tokenKid(inst.token)
	if err != nil {
		return nil, err
	}
	for _, k := range jwks.Keys {
		if k.Kid == kid && k.Kty == "OKP" && k.Crv == "Ed25519" {
			inst.jwkX = k.X
		}
	}
	if inst.jwkX == "" {
		return nil, fmt.Errorf("jwks lists no Ed25519 key with kid %q", kid)
	}
	return inst, nil
}

func randomPassword() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on Linux
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func tokenKid(token string) (string, error) {
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", fmt.Errorf("token header: %w", err)
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return "", fmt.Errorf("token header: %w", err)
	}
	if hdr.Alg != "EdDSA" {
		return "", fmt.Errorf("token alg is %q, not EdDSA", hdr.Alg)
	}
	return hdr.Kid, nil
}

// waitReady polls url until it answers 200, p exits, or timeout passes.
func waitReady(ctx context.Context, client *http.Client, url string, p *loadkit.Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if err := p.Exited(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %s %s", url, resp.Status, bytes.TrimSpace(body))
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// doJSON sends body (if any) as JSON and decodes a 200 answer into out.
func doJSON(ctx context.Context, client *http.Client, method, url string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}

// ---- a small TOML line editor ----
//
// The TOML decoder rejects duplicate keys, so appending a second [login]
// table would not do. setTOML rewrites the named tables: it drops the keys
// it sets from them and writes the new values right under the header,
// appending tables that are missing. It understands the flat files
// `mciassrv init` writes (one key = value per line), not all of TOML.

type tomlKV struct{ key, value string }

type tomlTable struct {
	name string
	kvs  []tomlKV
}

func setTOML(src string, tables []tomlTable) string {
	want := map[string]*tomlTable{}
	for i := range tables {
		want[tables[i].name] = &tables[i]
	}
	written := map[string]bool{}
	var out []string
	current := ""
	for _, line := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		trimmed := strings.TrimSpace(line)
		if name, isArray, ok := tomlHeader(trimmed); ok {
			current = name
			if isArray {
				current = "[[" + name + "]]"
			}
			out = append(out, line)
			if t, ok := want[current]; ok && !written[current] {
				for _, kv := range t.kvs {
					out = append(out, kv.key+" = "+kv.value)
				}
				written[current] = true
			}
			continue
		}
		if t, ok := want[current]; ok {
			if key, _, ok := strings.Cut(trimmed, "="); ok && !strings.HasPrefix(trimmed, "#") {
				key = strings.Trim(strings.TrimSpace(key), `"'`)
				if slicesHasKey(t.kvs, key) {
					continue
				}
			}
		}
		out = append(out, line)
	}
	for _, t := range tables {
		if written[t.name] {
			continue
		}
		out = append(out, "", "["+t.name+"]")
		for _, kv := range t.kvs {
			out = append(out, kv.key+" = "+kv.value)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func slicesHasKey(kvs []tomlKV, key string) bool {
	for _, kv := range kvs {
		if kv.key == key {
			return true
		}
	}
	return false
}

// tomlHeader parses "[name]" or "[[name]]" (with an optional comment).
func tomlHeader(line string) (name string, isArray, ok bool) {
	if !strings.HasPrefix(line, "[") {
		return "", false, false
	}
	if i := strings.Index(line, "#"); i >= 0 {
		line = strings.TrimSpace(line[:i])
	}
	if strings.HasPrefix(line, "[[") && strings.HasSuffix(line, "]]") {
		return strings.TrimSpace(line[2 : len(line)-2]), true, true
	}
	if strings.HasSuffix(line, "]") {
		return strings.TrimSpace(line[1 : len(line)-1]), false, true
	}
	return "", false, false
}

// tomlGet returns the raw value of key in [table], if the file sets it.
func tomlGet(src, table, key string) (string, bool) {
	current := ""
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if name, isArray, ok := tomlHeader(trimmed); ok {
			current = name
			if isArray {
				current = "[[" + name + "]]"
			}
			continue
		}
		if current != table || strings.HasPrefix(trimmed, "#") {
			continue
		}
		k, v, ok := strings.Cut(trimmed, "=")
		if !ok || strings.Trim(strings.TrimSpace(k), `"'`) != key {
			continue
		}
		v = strings.TrimSpace(v)
		if i := strings.Index(v, "#"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		return v, true
	}
	return "", false
}

// argonFromTOML reads [password] argon2_time / argon2_memory_kib /
// argon2_threads, defaulting like mciassrv (password.DefaultParams).
func argonFromTOML(src string) (argonParams, error) {
	p := argonParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 1}
	for _, f := range []struct {
		key  string
		bits int
		set  func(uint64)
	}{
		{"argon2_time", 32, func(v uint64) { p.Time = uint32(v) }},
		{"argon2_memory_kib", 32, func(v uint64) { p.MemoryKiB = uint32(v) }},
		{"argon2_threads", 8, func(v uint64) { p.Threads = uint8(v) }},
	} {
		raw, ok := tomlGet(src, "password", f.key)
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.ReplaceAll(raw, "_", ""), 10, f.bits)
		if err != nil {
			return p, fmt.Errorf("config: password.%s = %s: %w", f.key, raw, err)
		}
		f.set(v)
	}
	return p, nil
}
