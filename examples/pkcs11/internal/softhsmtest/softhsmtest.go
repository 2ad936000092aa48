// Package softhsmtest sets up a real SoftHSM2 token for tests, in a
// temporary directory: its own softhsm2.conf (SOFTHSM2_CONF points at it),
// its own token directory, a token initialised with softhsm2-util. The
// system token directory is never touched. A missing SoftHSM2 fails the
// test run; it is never skipped (scripts/test-deps.sh installs it).
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
)

// Token is the label of the token Setup initialises.
const Token = "mcias-test"

// PIN and SOPIN of that token. Test values, never used elsewhere.
const (
	PIN   = "8642-test-pin"
	SOPIN = "9753-test-so-pin"
)

// Env is a SoftHSM2 set up by Setup.
type Env struct {
	Dir     string // the temporary directory holding everything
	Conf    string // softhsm2.conf, also in $SOFTHSM2_CONF
	Module  string // path of libsofthsm2.so
	PINFile string // the user PIN, mode 0600
}

// modules are where Debian (and most distributions) install the library.
var modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Setup creates the token. Call it once from TestMain, before anything
// loads the module: SoftHSM reads SOFTHSM2_CONF when it is initialised.
// The caller removes Dir when the tests end.
func Setup() (*Env, error) {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return nil, fmt.Errorf("softhsm2-util not found (Debian package softhsm2; make test installs it): %w", err)
	}
	e := &Env{}
	for _, m := range modules {
		if _, err := os.Stat(m); err == nil {
			e.Module = m
			break
		}
	}
	if e.Module == "" {
		return nil, fmt.Errorf("libsofthsm2.so not found in %v (Debian package softhsm2)", modules)
	}
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		return nil, err
	}
	e.Dir = dir
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return nil, err
	}
	e.Conf = filepath.Join(dir, "softhsm2.conf")
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(e.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", e.Conf); err != nil {
		return nil, err
	}
	if err := e.Util("--init-token", "--free", "--label", Token, "--pin", PIN, "--so-pin", SOPIN); err != nil {
		return nil, err
	}
	e.PINFile = filepath.Join(dir, "pin")
	if err := os.WriteFile(e.PINFile, []byte(PIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// Util runs softhsm2-util with SOFTHSM2_CONF pointing at this token.
func (e *Env) Util(args ...string) error {
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util %s: %w\n%s", args[0], err, out)
	}
	return nil
}

// Tool runs OpenSC's pkcs11-tool on the module, logged in to the token: a
// second process working on the same token, as an operator would.
func (e *Env) Tool(args ...string) ([]byte, error) {
	cmd := exec.Command("pkcs11-tool", append([]string{"--module", e.Module, "--token-label", Token, "--login", "--pin", PIN}, args...)...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("pkcs11-tool %v: %w\n%s", args, err, out)
	}
	return out, nil
}

var objects atomic.Int64

// Object returns a label prefix no other caller in this process got, so
// each test works on a fresh set of objects in the shared token.
func Object() string { return fmt.Sprintf("t%d", objects.Add(1)) }

// URI is the pkcs11: URI of a custodian on the token with the PIN from
// the PIN file and objects labelled object-*.
func (e *Env) URI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-source=file:%s", Token, object, e.Module, e.PINFile)
}
