package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const root = "github.com/metacircular/mcias"

// publicAPI is the generated code of proto/mcias/v1.
const publicAPI = "api/grpc/mciasv1"

// pkg is what the rules need to know about one package.
type pkg struct {
	Path    string   // import path
	Imports []string // direct, non-test imports
	Deps    []string // transitive, non-test dependencies
	// Example marks a package of an out-of-tree example module, whose
	// import path need not be under root.
	Example bool
}

// rel returns path relative to root and whether it is ours at all.
func rel(path string) (string, bool) {
	if path == root {
		return "", true
	}
	r, ok := strings.CutPrefix(path, root+"/")
	return r, ok
}

// under reports whether the root-relative path r is prefix or inside it.
func under(r, prefix string) bool {
	return r == prefix || strings.HasPrefix(r, prefix+"/")
}

// top returns the first n elements of r ("backends/storage/sqlite/x", 3
// -> "backends/storage/sqlite").
func top(r string, n int) string {
	parts := strings.SplitN(r, "/", n+1)
	if len(parts) > n {
		parts = parts[:n]
	}
	return strings.Join(parts, "/")
}

func hasPathPrefix(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// ours returns the root-relative paths of p's dependencies inside root.
func ours(deps []string) []string {
	var out []string
	for _, d := range deps {
		if r, ok := rel(d); ok {
			out = append(out, r)
		}
	}
	return out
}

// check returns every import-rule violation of p, one sentence each.
func check(p pkg) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, p.Path+": "+fmt.Sprintf(format, args...)) }

	if p.Example {
		self, _ := rel(p.Path)
		for _, d := range ours(p.Deps) {
			if !under(d, "sdk") && !(self != "" && under(d, top(self, 2))) {
				bad("an example plugin may import only sdk of ours, not %s", d)
			}
		}
		return v
	}
	self, ok := rel(p.Path)
	if !ok {
		return nil
	}
	deps := ours(p.Deps)
	// allowAPI: the generated gRPC API is client code that tools outside
	// the server (bench, internal) may use, like a published SDK.
	allowAPI := false
	forbidUnder := func(why string, prefixes ...string) {
		for _, d := range deps {
			if allowAPI && under(d, publicAPI) {
				continue
			}
			for _, pre := range prefixes {
				if under(d, pre) {
					bad("%s must not depend on %s (%s)", top(self, 1), d, why)
				}
			}
		}
	}

	switch {
	case under(self, "sdk"):
		for _, d := range deps {
			if !under(d, "sdk") {
				bad("sdk must import nothing of ours outside sdk, but depends on %s", d)
			}
		}
	case under(self, "backends"):
		own := top(self, 3)
		for _, d := range deps {
			if !under(d, "sdk") && !under(d, own) {
				bad("backend %s may depend only on sdk and its own packages, not %s", own, d)
			}
		}
	case under(self, "plugins"):
		own := top(self, 2)
		backends := map[string]bool{}
		for _, d := range deps {
			switch {
			case under(d, "sdk"), under(d, own):
			case under(d, "backends"):
				backends[top(d, 3)] = true
			default:
				bad("plugin %s may depend only on sdk and one backend, not %s", own, d)
			}
		}
		if len(backends) > 1 {
			names := make([]string, 0, len(backends))
			for b := range backends {
				names = append(names, b)
			}
			slices.Sort(names)
			bad("plugin %s wraps more than one backend: %s", own, strings.Join(names, ", "))
		}
		// The plugin's main package itself is a thin main: it serves
		// exactly one backend through sdk/plugin.
		if self == own {
			if len(backends) == 0 {
				bad("plugin %s serves no backend; it must import exactly one under backends/", own)
			}
			if !slices.Contains(deps, "sdk/plugin") {
				bad("plugin %s must serve its backend through sdk/plugin", own)
			}
		}
	case under(self, "core"):
		forbidUnder("core reaches backends only through sdk interfaces", "backends", "api", "cmd", "plugins")
		for _, d := range p.Deps {
			if hasPathPrefix(d, "github.com/gin-gonic/gin") {
				bad("core must not depend on Gin (%s); HTTP belongs in api/rest", d)
			}
		}
		for _, d := range p.Imports {
			if hasPathPrefix(d, "google.golang.org/grpc") {
				bad("core must not import gRPC (%s); gRPC belongs in api/grpc and sdk/plugin", d)
			}
		}
	case under(self, publicAPI):
		for _, d := range deps {
			if !under(d, publicAPI) {
				bad("the generated API %s must depend on nothing else of ours, not %s", publicAPI, d)
			}
		}
	case under(self, "api"):
		forbidUnder("api talks to core; only cmd wires backends", "backends", "cmd", "plugins")
	case under(self, "cmd"):
		// cmd wires everything together and may import anything.
	default:
		allowAPI = true
		forbidUnder("only cmd wires backends in", "backends", "api", "cmd", "plugins")
	}
	return v
}

// goList runs `go list -e -json` for patterns in dir.
func goList(t *testing.T, dir string, example bool, patterns ...string) []pkg {
	t.Helper()
	args := append([]string{"list", "-e", "-json=ImportPath,Imports,Deps,Error"}, patterns...)
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", dir, err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Deps       []string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list in %s: decode: %v", dir, err)
		}
		if p.Error != nil {
			// Broken packages are the compiler's business; their
			// imports are still listed and still checked.
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, pkg{Path: p.ImportPath, Imports: p.Imports, Deps: p.Deps, Example: example})
	}
	return pkgs
}

// moduleRoot finds the root module's directory from the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not inside a module")
	}
	return filepath.Dir(gomod)
}

func TestImportRules(t *testing.T) {
	dir := moduleRoot(t)
	var all []pkg
	rootPkgs := goList(t, dir, false, "./...")
	sdkPkgs := goList(t, filepath.Join(dir, "sdk"), false, "./...")
	all = append(all, rootPkgs...)
	all = append(all, sdkPkgs...)

	// Out-of-tree example plugins are separate modules under examples/.
	mods, _ := filepath.Glob(filepath.Join(dir, "examples", "*", "go.mod"))
	for _, m := range mods {
		all = append(all, goList(t, filepath.Dir(m), true, "./...")...)
	}

	// Guard against a vacuous pass: the listing must include packages we
	// know exist in each module.
	for _, want := range []string{root + "/core/password", root + "/sdk/custody", root + "/plugins/sqlite", root + "/sdk/plugin"} {
		if !slices.ContainsFunc(all, func(p pkg) bool { return p.Path == want }) {
			t.Fatalf("go list did not report %s; the test is not seeing the tree", want)
		}
	}
	t.Logf("checked %d packages (%d root module, %d sdk, %d example modules)", len(all), len(rootPkgs), len(sdkPkgs), len(mods))
	for _, p := range all {
		for _, v := range check(p) {
			t.Error(v)
		}
	}
}

// TestRulesCatchViolations runs the checker on synthetic packages, so a
// rule that silently stopped matching (a typo in a prefix) fails here
// instead of letting real violations through.
func TestRulesCatchViolations(t *testing.T) {
	r := func(s string) string { return root + "/" + s }
	tests := []struct {
		name    string
		p       pkg
		wantBad bool
	}{
		// sdk
		{"sdk imports sdk", pkg{Path: r("sdk/plugin"), Deps: []string{r("sdk"), r("sdk/storage"), "google.golang.org/grpc"}}, false},
		{"sdk imports core", pkg{Path: r("sdk/storage/storagetest"), Deps: []string{r("sdk"), r("core")}}, true},
		{"sdk imports backend", pkg{Path: r("sdk"), Deps: []string{r("backends/storage/sqlite")}}, true},
		{"sdk imports internal", pkg{Path: r("sdk/custody"), Deps: []string{r("internal/x")}}, true},
		// backends
		{"backend imports sdk, driver, own", pkg{Path: r("backends/storage/sqlite"), Deps: []string{r("sdk"), r("backends/storage/sqlite/migrations"), "modernc.org/sqlite"}}, false},
		{"backend subpackage imports own root", pkg{Path: r("backends/storage/sqlite/migrations"), Deps: []string{r("backends/storage/sqlite")}}, false},
		{"backend imports core", pkg{Path: r("backends/custody/local"), Deps: []string{r("sdk"), r("core/password")}}, true},
		{"backend imports another backend", pkg{Path: r("backends/storage/postgres"), Deps: []string{r("backends/storage/sqlite")}}, true},
		{"backend imports sibling with shared prefix", pkg{Path: r("backends/storage/sql"), Deps: []string{r("backends/storage/sqlite")}}, true},
		{"backend imports api", pkg{Path: r("backends/audit/file"), Deps: []string{r("api/rest")}}, true},
		{"backend imports internal", pkg{Path: r("backends/audit/file"), Deps: []string{r("internal/util")}}, true},
		// plugins
		{"plugin wraps one backend", pkg{Path: r("plugins/sqlite"), Deps: []string{r("sdk/plugin"), r("backends/storage/sqlite"), r("backends/storage/sqlite/migrations")}}, false},
		{"plugin wraps two backends", pkg{Path: r("plugins/sqlite"), Deps: []string{r("sdk/plugin"), r("backends/storage/sqlite"), r("backends/custody/local")}}, true},
		{"plugin wraps no backend", pkg{Path: r("plugins/sqlite"), Deps: []string{r("sdk/plugin"), r("sdk/storage")}}, true},
		{"plugin bypasses sdk/plugin", pkg{Path: r("plugins/sqlite"), Deps: []string{r("sdk"), r("backends/storage/sqlite")}}, true},
		{"plugin imports core", pkg{Path: r("plugins/sqlite"), Deps: []string{r("sdk/plugin"), r("backends/storage/sqlite"), r("core")}}, true},
		{"plugin imports internal", pkg{Path: r("plugins/sqlite"), Deps: []string{r("sdk/plugin"), r("backends/storage/sqlite"), r("internal/plugintest")}}, true},
		// core
		{"core imports sdk and own", pkg{Path: r("core"), Deps: []string{r("sdk"), r("core/password"), "github.com/golang-jwt/jwt/v5"}}, false},
		{"core imports backend", pkg{Path: r("core"), Deps: []string{r("backends/storage/sqlite")}}, true},
		{"core subpackage imports backend", pkg{Path: r("core/password"), Deps: []string{r("backends/custody/local")}}, true},
		{"core imports api", pkg{Path: r("core"), Deps: []string{r("api/rest")}}, true},
		{"core reaches gin", pkg{Path: r("core"), Deps: []string{"github.com/gin-gonic/gin/binding"}}, true},
		{"core imports grpc", pkg{Path: r("core"), Imports: []string{"google.golang.org/grpc"}, Deps: []string{"google.golang.org/grpc"}}, true},
		{"core reaches grpc via sdk/plugin", pkg{Path: r("core"), Imports: []string{r("sdk/plugin")}, Deps: []string{r("sdk/plugin"), "google.golang.org/grpc"}}, false},
		// api
		{"api imports core and gin", pkg{Path: r("api/rest"), Deps: []string{r("core"), r("sdk"), "github.com/gin-gonic/gin"}}, false},
		{"api imports backend", pkg{Path: r("api/rest"), Deps: []string{r("core"), r("backends/storage/sqlite")}}, true},
		{"core imports the generated api", pkg{Path: r("core"), Deps: []string{r("api/grpc/mciasv1")}}, true},
		{"generated api imports core", pkg{Path: r("api/grpc/mciasv1"), Deps: []string{r("core")}}, true},
		{"generated api imports protobuf", pkg{Path: r("api/grpc/mciasv1"), Deps: []string{"google.golang.org/protobuf/proto"}}, false},
		{"bench imports the generated api", pkg{Path: r("bench/grpcload"), Deps: []string{r("api/grpc/mciasv1")}}, false},
		{"bench imports the grpc frontend", pkg{Path: r("bench/grpcload"), Deps: []string{r("api/grpc/mciasv1"), r("api/grpc")}}, true},
		// cmd and the rest
		{"cmd imports everything", pkg{Path: r("cmd/mciassrv"), Deps: []string{r("core"), r("api/rest"), r("backends/storage/sqlite"), r("backends/custody/local")}}, false},
		{"internal imports backend", pkg{Path: r("internal/testenv"), Deps: []string{r("backends/storage/sqlite")}}, true},
		{"internal imports core", pkg{Path: r("internal/x"), Deps: []string{r("core")}}, false},
		{"module root imports backend", pkg{Path: root, Deps: []string{r("backends/audit/file")}}, true},
		{"not ours", pkg{Path: "example.com/x", Deps: []string{r("backends/storage/sqlite")}}, false},
		// examples
		{"example imports sdk", pkg{Path: "example.com/myplugin", Example: true, Deps: []string{r("sdk/plugin"), "github.com/hashicorp/go-plugin"}}, false},
		{"example imports core", pkg{Path: "example.com/myplugin", Example: true, Deps: []string{r("core")}}, true},
		{"example under root imports own", pkg{Path: r("examples/redis/store"), Example: true, Deps: []string{r("examples/redis"), r("sdk")}}, false},
		{"example under root imports backend", pkg{Path: r("examples/redis"), Example: true, Deps: []string{r("backends/storage/sqlite")}}, true},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			got := check(tt.p)
			if tt.wantBad && len(got) == 0 {
				t.Fatalf("check(%+v) found no violation", tt.p)
			}
			if !tt.wantBad && len(got) != 0 {
				t.Fatalf("check(%+v) = %q, want none", tt.p, got)
			}
		})
	}
}
