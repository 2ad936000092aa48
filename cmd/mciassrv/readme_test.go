package main

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/metacircular/mcias/core"
)

// TestReadmeConfigurationIsTheDefaults holds README.md's "every key, with
// its default" block to the code: decoded strictly into an empty Config
// (so every key must exist), it must give defaultConfig() for every field
// that has a default. Only the example values with no default (paths,
// URIs, the issuer, the sinks and the plugin catalog) are taken as given.
func TestReadmeConfigurationIsTheDefaults(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "every key, with its")
	if !ok {
		t.Fatal(`README.md has no "every key, with its default" block`)
	}
	_, after, ok = strings.Cut(after, "```toml\n")
	block, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("README.md: the configuration block is not a ```toml block")
	}
	var got Config
	dec := toml.NewDecoder(bytes.NewReader([]byte(block)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			t.Fatalf("README.md configuration block has keys the code does not know:\n%s", strict.String())
		}
		t.Fatalf("README.md configuration block: %v", err)
	}
	if len(got.Audit.Sinks) == 0 || len(got.Plugins.Catalog) == 0 {
		t.Fatal("README.md configuration block lost its [[audit.sinks]] or [[plugins.catalog]] example")
	}
	// A sink's documented values are what an entry without them gets.
	sink := got.Audit.Sinks[0]
	if sink.Name != "" || (sink.Start != "" && sink.Start != core.StartBeginning) || sink.Required || sink.MaxLag.Duration != 0 || sink.MaxLagEvents != 0 {
		t.Errorf("README.md [[audit.sinks]] example does not show the defaults: %+v", sink)
	}
	want := defaultConfig()
	got.TLS, got.Storage, got.Custody = want.TLS, want.Storage, want.Custody
	got.Tokens.Issuer = want.Tokens.Issuer
	got.Audit.Sinks, got.Plugins.Catalog = want.Audit.Sinks, want.Plugins.Catalog
	if len(got.Server.TrustedProxies) == 0 {
		got.Server.TrustedProxies = want.Server.TrustedProxies // [] documents the nil default
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("README.md configuration block differs from defaultConfig():\nREADME: %+v\ncode:   %+v", got, want)
	}
}
