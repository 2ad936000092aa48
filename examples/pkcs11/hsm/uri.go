package hsm

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/metacircular/mcias/sdk"
)

// Config is what a pkcs11: URI says.
type Config struct {
	ModulePath string // the PKCS#11 library (module-path)
	Token      string // token label (token)
	Serial     string // token serial number (serial), optional
	Object     string // label prefix of this custodian's objects (object), default "mcias"
	PINFile    string // pin-source
	PINEnv     string // x-pin-env
	Sessions   int    // x-sessions: size of the session pool, default 4
}

const (
	defaultObject   = "mcias"
	defaultSessions = 4
	maxSessions     = 64
)

// ParseURI reads an RFC 7512 PKCS#11 URI:
//
//	pkcs11:token=mcias;object=mcias?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mcias/pin
//
// Path attributes (separated by ';'): token (required), serial, object.
// Query attributes (separated by '&'): module-path (required), and exactly
// one of pin-source (a file: URI or an absolute path) or x-pin-env (the
// name of an environment variable holding the PIN). pin-value is refused:
// a PIN written into the configuration ends up in process listings, shell
// history and backups. Unknown attributes are refused, so a typo is not
// silently ignored. Errors wrap sdk.ErrInvalidArgument.
func ParseURI(uri string) (Config, error) {
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("pkcs11: uri: "+format+": %w", append(a, sdk.ErrInvalidArgument)...)
	}
	rest, ok := strings.CutPrefix(uri, "pkcs11:")
	if !ok {
		return bad("must start with pkcs11:")
	}
	path, query, _ := strings.Cut(rest, "?")
	cfg := Config{Object: defaultObject, Sessions: defaultSessions}
	seen := map[string]bool{}
	attr := func(part string) (string, string, error) {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return "", "", fmt.Errorf("attribute %q is not name=value", part)
		}
		if seen[k] {
			return "", "", fmt.Errorf("attribute %s given twice", k)
		}
		seen[k] = true
		val, err := url.PathUnescape(v)
		if err != nil {
			return "", "", fmt.Errorf("attribute %s: bad percent-encoding", k)
		}
		return k, val, nil
	}
	pathAttrs := map[string]*string{"token": &cfg.Token, "serial": &cfg.Serial, "object": &cfg.Object}
	for part := range strings.SplitSeq(path, ";") {
		if part == "" {
			continue
		}
		k, v, err := attr(part)
		if err != nil {
			return bad("%v", err)
		}
		dst, ok := pathAttrs[k]
		if !ok {
			return bad("unknown path attribute %q (known: %s)", k, known(pathAttrs))
		}
		*dst = v
	}
	var sessions string
	queryAttrs := map[string]*string{"module-path": &cfg.ModulePath, "pin-source": &cfg.PINFile, "x-pin-env": &cfg.PINEnv, "x-sessions": &sessions}
	for part := range strings.SplitSeq(query, "&") {
		if part == "" {
			continue
		}
		k, v, err := attr(part)
		if err != nil {
			return bad("%v", err)
		}
		if k == "pin-value" {
			return bad("pin-value is refused: give the PIN in a file (pin-source=file:/path) or an environment variable (x-pin-env=NAME)")
		}
		dst, ok := queryAttrs[k]
		if !ok {
			return bad("unknown query attribute %q (known: %s)", k, known(queryAttrs))
		}
		*dst = v
	}
	if cfg.Token == "" {
		return bad("token=LABEL is required")
	}
	if cfg.Object == "" {
		return bad("object must not be empty")
	}
	if cfg.ModulePath == "" {
		return bad("module-path=/path/to/library.so is required")
	}
	if !filepath.IsAbs(cfg.ModulePath) {
		return bad("module-path must be absolute")
	}
	if (cfg.PINFile == "") == (cfg.PINEnv == "") {
		return bad("give exactly one of pin-source=file:/path or x-pin-env=NAME")
	}
	if cfg.PINFile != "" {
		cfg.PINFile = strings.TrimPrefix(cfg.PINFile, "file:")
		if !filepath.IsAbs(cfg.PINFile) {
			return bad("pin-source must be an absolute file: path")
		}
	}
	if sessions != "" {
		n, err := strconv.Atoi(sessions)
		if err != nil || n < 1 || n > maxSessions {
			return bad("x-sessions must be 1..%d", maxSessions)
		}
		cfg.Sessions = n
	}
	return cfg, nil
}

func known(m map[string]*string) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// pin reads the user PIN from where the configuration says. A PIN file
// others can read is refused, like a private key file would be.
func (c Config) pin() (string, error) {
	if c.PINEnv != "" {
		p, ok := os.LookupEnv(c.PINEnv)
		if !ok || p == "" {
			return "", fmt.Errorf("pkcs11: the PIN variable %s is not set (name it in the plugin's catalog env list): %w", c.PINEnv, sdk.ErrInvalidArgument)
		}
		return p, nil
	}
	st, err := os.Stat(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: PIN file %s: %w: %w", c.PINFile, sdk.ErrInvalidArgument, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("pkcs11: PIN file %s is readable by others (mode %v); chmod 600 it: %w", c.PINFile, st.Mode().Perm(), sdk.ErrInvalidArgument)
	}
	raw, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: PIN file %s: %w: %w", c.PINFile, sdk.ErrInvalidArgument, err)
	}
	p := strings.TrimRight(string(raw), "\r\n")
	if p == "" {
		return "", fmt.Errorf("pkcs11: PIN file %s is empty: %w", c.PINFile, sdk.ErrInvalidArgument)
	}
	return p, nil
}
