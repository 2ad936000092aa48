package ctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	grpcapi "github.com/metacircular/mcias/api/grpc"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

const grpcAdminPass = "correct horse battery staple"

// grpcServer runs the real gRPC frontend (SQLite, local custody, core)
// over TLS on loopback, and returns its address and a CA file for it.
func grpcServer(t *testing.T) (addr, caFile string) {
	t.Helper()
	rc := newRealCore(t)
	return serveGRPC(t, rc.svc)
}

// realCore is a core on SQLite and local custody with the bootstrap
// admin, and its backends for tests that reach below the API.
type realCore struct {
	svc   *core.Service
	store storage.Store
	cust  custody.Custodian
}

func newRealCore(t *testing.T) realCore {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(ctx, "sqlite:"+filepath.Join(dir, "mcias.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(t.Context()) })
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cust, err := local.Open(ctx, "local:"+filepath.Join(dir, "keys")+"?key_file="+keyFile, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cust.Close(t.Context()) })
	svc, err := core.New(ctx, core.Config{Issuer: "https://mcias.test", Password: password.Params{Time: 2, MemoryKiB: 19456, Threads: 1}},
		core.Deps{Store: store, Custodian: cust, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(t.Context()) })
	if _, err := svc.Bootstrap(ctx, "admin", grpcAdminPass); err != nil {
		t.Fatal(err)
	}
	return realCore{svc: svc, store: store, cust: cust}
}

// serveGRPC serves svc over gRPC with TLS on loopback.
func serveGRPC(t *testing.T, svc *core.Service) (addr, caFile string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cert, caFile := selfSigned(t)
	srv, err := grpcapi.New(svc, grpcapi.Config{Logger: logger},
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), caFile
}

// selfSigned makes a certificate for 127.0.0.1 and writes it as the CA
// bundle that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// grpcctl runs mciasgrpcctl in-process.
func grpcctl(t *testing.T, addr, caFile string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := Run(t.Context(), GRPC, append([]string{"-server", addr, "-ca", caFile}, args...), System{
		Getenv: func(k string) string { return env[k] },
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errOut,
		TermFD: -1,
	})
	return code, out.String(), errOut.String()
}

// TestGRPCFlavor runs the shared commands over gRPC against the real
// frontend: the same commands, output and exit codes as over REST.
func TestGRPCFlavor(t *testing.T) {
	addr, caFile := grpcServer(t)
	code, stdout, stderr := grpcctl(t, addr, caFile, map[string]string{"MCIAS_PASSWORD": grpcAdminPass}, "auth", "login", "-username", "admin")
	if code != exitOK || strings.Count(stdout, ".") != 2 {
		t.Fatalf("login: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	admin := map[string]string{"MCIAS_TOKEN": strings.TrimSpace(stdout), "MCIAS_NEW_PASSWORD": "alice's long password", "MCIAS_PG_PASSWORD": "pg secret"}

	code, stdout, stderr = grpcctl(t, addr, caFile, admin, "account", "create", "-username", "deploy", "-type", "system", "-no-password")
	if code != exitOK || !strings.Contains(stdout, "username: deploy") {
		t.Fatalf("account create: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var id string
	for _, line := range strings.Split(stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "id:"); ok {
			id = strings.TrimSpace(v)
		}
	}

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{"case=health", nil, []string{"health"}, exitOK, "ok\n", ""},
		{"case=ready", nil, []string{"ready"}, exitOK, "storage  sqlite  up", ""},
		{"case=jwks", nil, []string{"jwks"}, exitOK, "OKP  Ed25519  EdDSA  sig", ""},
		{"case=pubkey -json", nil, []string{"-json", "pubkey"}, exitOK, `"kty":"OKP"`, ""},
		{"case=me", admin, []string{"auth", "me"}, exitOK, "roles:    admin", ""},
		{"case=account create human", admin, []string{"account", "create", "-username", "Alice", "-type", "human"}, exitOK, "username: alice", ""},
		{"case=account list", admin, []string{"account", "list", "-type", "system"}, exitOK, "deploy", ""},
		{"case=account list -json", admin, []string{"-json", "account", "list", "-type", "system"}, exitOK, `"account_type":"system"`, ""},
		{"case=account get", admin, []string{"account", "get", id}, exitOK, "type:     system", ""},
		{"case=account get unknown", admin, []string{"account", "get", "00000000-0000-4000-8000-000000000000"}, exitFailed, "", "account not found (not_found, gRPC NotFound)"},
		{"case=role set", admin, []string{"role", "set", id, "deployer,ci"}, exitOK, "ci,deployer", ""},
		{"case=role get", admin, []string{"role", "get", id}, exitOK, "ci,deployer", ""},
		{"case=pgcreds set", admin, []string{"pgcreds", "set", id, "-host", "db", "-database", "app", "-username", "app"}, exitOK, "stored", ""},
		{"case=pgcreds get", admin, []string{"pgcreds", "get", id}, exitOK, "password: pg secret", ""},
		{"case=token issue bad ttl", admin, []string{"token", "issue", "-account", id, "-ttl", "1ms"}, exitUsage, "", "-ttl must be at least 1s"},
		{"case=audit list", admin, []string{"audit", "list", "-type", "account_create"}, exitOK, "account_create", ""},
		{"case=key list", admin, []string{"key", "list"}, exitOK, "active", ""},
		{"case=key list -json", admin, []string{"-json", "key", "list"}, exitOK, `"jwk":{"kty":"OKP"`, ""},
		{"case=logout -json prints nothing", map[string]string{"MCIAS_TOKEN": "garbage"}, []string{"-json", "auth", "logout"}, exitAuth, "", "(unauthorized, gRPC Unauthenticated)"},
		{"case=no token", nil, []string{"account", "list"}, exitAuth, "", "mciasgrpcctl: no token"},
		{"case=wrong password", map[string]string{"MCIAS_PASSWORD": "wrong password"}, []string{"auth", "login", "-username", "admin"}, exitAuth, "", "invalid username, password or TOTP code (invalid_credentials, gRPC Unauthenticated)"},
		{"case=validate garbage", nil, []string{"token", "validate", "a.b.c"}, exitFailed, "invalid\n", ""},
		{"case=url instead of host:port", nil, []string{"-server", "https://" + addr, "health"}, exitUsage, "", "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := grpcctl(t, addr, caFile, tt.env, tt.args...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tt.wantCode, stdout, tt.wantStdout, stderr, tt.wantStderr)
			}
		})
	}

	// Issue, validate, revoke: the service token round trip.
	code, stdout, stderr = grpcctl(t, addr, caFile, admin, "token", "issue", "-account", id, "-ttl", "1h", "-audience", "ci")
	if code != exitOK {
		t.Fatalf("token issue: exit %d, %q", code, stderr)
	}
	svcToken := strings.TrimSpace(stdout)
	if code, stdout, _ := grpcctl(t, addr, caFile, nil, "token", "validate", "-audience", "ci", svcToken); code != exitOK || !strings.Contains(stdout, "roles:    ci,deployer") {
		t.Errorf("token validate: exit %d, %q", code, stdout)
	}
	if code, _, stderr := grpcctl(t, addr, caFile, admin, "token", "revoke", svcToken); code != exitOK {
		t.Errorf("token revoke: exit %d, %q", code, stderr)
	}
	if code, _, _ := grpcctl(t, addr, caFile, nil, "token", "validate", "-audience", "ci", svcToken); code != exitFailed {
		t.Errorf("validate after revoke: exit %d, want %d", code, exitFailed)
	}

	// Key rotation over gRPC, as mciasctl does it over REST: a normal
	// rotation publishes a next key; an emergency one retires the active
	// key and ends every session, the caller's too.
	code, stdout, stderr = grpcctl(t, addr, caFile, admin, "key", "rotate")
	if code != exitOK || !strings.Contains(stdout, "next") || !strings.Contains(stdout, "the next key signs from") {
		t.Fatalf("key rotate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = grpcctl(t, addr, caFile, admin, "key", "rotate", "-emergency")
	if code != exitOK || !strings.Contains(stdout, "revoked tokens: 1") || strings.Contains(stdout, "next ") {
		t.Fatalf("key rotate -emergency: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := grpcctl(t, addr, caFile, admin, "key", "list"); code != exitAuth {
		t.Errorf("key list with a token of the retired key: exit %d (%q), want %d", code, stderr, exitAuth)
	}
	code, stdout, stderr = grpcctl(t, addr, caFile, map[string]string{"MCIAS_PASSWORD": grpcAdminPass}, "auth", "login", "-username", "admin")
	if code != exitOK {
		t.Fatalf("login after emergency rotation: exit %d, %q", code, stderr)
	}
	// The retired key stays listed, so what it signed still verifies.
	code, stdout, stderr = grpcctl(t, addr, caFile, map[string]string{"MCIAS_TOKEN": strings.TrimSpace(stdout)}, "key", "list")
	if code != exitOK || strings.Count(stdout, "retired") != 1 || strings.Count(stdout, "active") != 1 {
		t.Errorf("key list after emergency rotation: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestGRPCFlavorUnreachable: no server, or a certificate the client does
// not trust, is exit 3 with a hint.
func TestGRPCFlavorUnreachable(t *testing.T) {
	addr, _ := grpcServer(t)
	_, otherCA := selfSigned(t)
	code, _, stderr := grpcctl(t, addr, otherCA, nil, "-timeout", "5s", "health")
	if code != exitUnreachable || !strings.Contains(stderr, "pass -ca or set MCIAS_CA") {
		t.Errorf("untrusted certificate: exit %d, stderr %q", code, stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	code, _, stderr = grpcctl(t, closed, otherCA, nil, "-timeout", "2s", "health")
	if code != exitUnreachable || !strings.Contains(stderr, "could not reach server") {
		t.Errorf("nothing listening: exit %d, stderr %q", code, stderr)
	}
}
