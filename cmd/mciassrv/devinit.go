package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/metacircular/mcias/backends/custody/local"
)

// devInit lays out a development instance under dir: a master key file,
// a throwaway CA and a certificate for 127.0.0.1/::1/localhost, and a
// config that uses them. Existing files are kept, so it is safe to run
// before every start.
//
// When pluginDir holds the builtin plugin binaries (make build puts them
// in bin/plugins), the config gets a catalog pinning their SHA-256, so
// plugins.builtins = "subprocess" runs every backend as a plugin; on later
// runs the pins of that development catalog follow rebuilt binaries.
// grpcAddr is the gRPC listener's address; empty writes none.
func devInit(dir, listen, grpcAddr, pluginDir string, out io.Writer) (configPath string, err error) {
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	keyFile := filepath.Join(dir, "master.key")
	if !exists(keyFile) {
		if err := local.GenerateKeyFile(keyFile); err != nil {
			return "", fmt.Errorf("init: master key: %w", err)
		}
		fmt.Fprintf(out, "created %s (master key: back it up; without it sealed keys and secrets are lost)\n", keyFile)
	}
	caFile := filepath.Join(dir, "tls", "ca.pem")
	certFile := filepath.Join(dir, "tls", "cert.pem")
	certKey := filepath.Join(dir, "tls", "key.pem")
	if !exists(certFile) || !exists(certKey) || !exists(caFile) {
		if err := writeDevCertificates(caFile, certFile, certKey); err != nil {
			return "", fmt.Errorf("init: certificates: %w", err)
		}
		fmt.Fprintf(out, "created %s (development CA: trust it with --cacert or -ca)\n", caFile)
	}
	configPath = filepath.Join(dir, "mcias.toml")
	if exists(configPath) {
		return configPath, repinDevPlugins(configPath, pluginDir, out)
	}
	catalog, err := devCatalog(pluginDir)
	if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	cfg := fmt.Sprintf(devConfigTemplate, listen, grpcAddr, certFile, certKey,
		filepath.Join(dir, "mcias.db"), filepath.Join(dir, "keys"), keyFile,
		filepath.Join(dir, "audit.jsonl"), listen, catalog)
	if err := os.WriteFile(configPath, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	fmt.Fprintf(out, "created %s\n", configPath)
	return configPath, nil
}

// devPlugins are the builtin backends' plugin binaries, by catalog name
// (the URI scheme each serves).
var devPlugins = []struct{ name, file string }{
	{"sqlite", "mcias-plugin-sqlite"},
	{"postgres", "mcias-plugin-postgres"},
	{"local", "mcias-plugin-local"},
	{"file", "mcias-plugin-file"},
	{"syslog", "mcias-plugin-syslog"},
	{"webhook", "mcias-plugin-webhook"},
}

// devCatalog returns the [[plugins.catalog]] entries for the builtin
// plugin binaries found in pluginDir, pinned to their current SHA-256.
func devCatalog(pluginDir string) (string, error) {
	var b strings.Builder
	for _, p := range devPlugins {
		path := filepath.Join(pluginDir, p.file)
		if !exists(path) {
			continue
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n[[plugins.catalog]]\nname = %q\npath = %q\nsha256 = %q\n", p.name, path, sum)
	}
	return b.String(), nil
}

// repinDevPlugins updates the pins of catalog entries that point at the
// development plugin binaries when those were rebuilt. Only init does
// this, only for its own development layout; a production catalog is
// pinned by its operator.
func repinDevPlugins(configPath, pluginDir string, out io.Writer) error {
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	var cfg struct {
		Plugins struct {
			Catalog []CatalogEntry `toml:"catalog"`
		} `toml:"plugins"`
	}
	if err := toml.Unmarshal(raw, &cfg); err != nil {
		return nil // not ours to fix; serve reports the error
	}
	text := string(raw)
	for _, e := range cfg.Plugins.Catalog {
		dev := false
		for _, p := range devPlugins {
			dev = dev || e.Path == filepath.Join(pluginDir, p.file)
		}
		if !dev || !exists(e.Path) || e.SHA256 == "" {
			continue
		}
		sum, err := fileSHA256(e.Path)
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if sum != e.SHA256 {
			text = strings.ReplaceAll(text, fmt.Sprintf("sha256 = %q", e.SHA256), fmt.Sprintf("sha256 = %q", sum))
			fmt.Fprintf(out, "re-pinned development plugin %s (rebuilt) in %s\n", e.Name, configPath)
		}
	}
	if text == string(raw) {
		return nil
	}
	return os.WriteFile(configPath, []byte(text), 0o600)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

const devConfigTemplate = `# MCIAS development configuration, written by "mciassrv init".
# Relative paths are resolved against the working directory.

[server]
listen = %q
grpc_addr = %q

[tls]
cert_file = %q
key_file = %q

[storage]
uri = "sqlite:%s"

[custody]
uri = "local:%s?key_file=%s"

[[audit.sinks]]
uri = "file:%s"

[tokens]
issuer = "https://%s"
ttl = "1h"

[log]
format = "text"

[plugins]
# "in-process" runs the backends above inside mciassrv. "subprocess" runs
# each in the catalog plugin named after its scheme (sqlite, local, file;
# syslog for syslog+tcp and syslog+unix, webhook for webhook+https and
# webhook+http):
# a separate process over gRPC, supervised and restarted by mciassrv.
builtins = "in-process"
%s`

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// writeDevCertificates makes a CA valid for a year and a server
// certificate it signs for the loopback names.
func writeDevCertificates(caFile, certFile, keyFile string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "MCIAS development CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	leafKeyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return err
	}
	if err := writePEM(keyFile, 0o600, "PRIVATE KEY", leafKeyDER); err != nil {
		return err
	}
	if err := writePEM(certFile, 0o644, "CERTIFICATE", leafDER); err != nil {
		return err
	}
	return writePEM(caFile, 0o644, "CERTIFICATE", caDER)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writePEM(path string, mode os.FileMode, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
