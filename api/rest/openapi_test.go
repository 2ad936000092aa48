package rest_test

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/metacircular/mcias/api/rest"
)

// TestOpenAPIMatchesRouter keeps api/openapi.yaml in step with the
// router: every route is documented and every documented route exists.
func TestOpenAPIMatchesRouter(t *testing.T) {
	raw, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}
	var documented []string
	for path, ops := range doc.Paths {
		for m := range ops {
			if methods[m] {
				documented = append(documented, strings.ToUpper(m)+" "+path)
			}
		}
	}
	e := newEnv(t, rest.Config{})
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	var routed []string
	for _, r := range e.api.Routes() {
		routed = append(routed, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	sort.Strings(documented)
	sort.Strings(routed)
	if strings.Join(documented, "\n") != strings.Join(routed, "\n") {
		t.Fatalf("openapi.yaml and the router differ\ndocumented:\n%s\n\nrouted:\n%s",
			strings.Join(documented, "\n"), strings.Join(routed, "\n"))
	}
}
