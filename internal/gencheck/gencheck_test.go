// Package gencheck holds the test that keeps generated protobuf code in
// step with proto/: it regenerates into a temporary directory and compares
// byte for byte with what is committed.
package gencheck

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "generate.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/generate.sh: %v\n%s", err, b)
	}
	fresh := generated(t, out)
	committed := generated(t, root)
	for rel, want := range fresh {
		got, ok := committed[rel]
		switch {
		case !ok:
			t.Errorf("%s is not committed; run make generate", rel)
		case !bytes.Equal(got, want):
			t.Errorf("%s is stale; run make generate", rel)
		}
	}
	for rel := range committed {
		if _, ok := fresh[rel]; !ok {
			t.Errorf("%s has no .proto source under proto/; delete it", rel)
		}
	}
}

// generated maps each *.pb.go below dir (relative path) to its content.
func generated(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".tools", "run", "bin", "node_modules", "target":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".pb.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
