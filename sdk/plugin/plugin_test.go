package plugin

import (
	"bytes"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"
)

func TestClientConfig(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cmd := exec.Command("/nonexistent/mcias-plugin-x")
	cfg := ClientConfig(KindCustody, "hsm", cmd, logger)

	if !cfg.AutoMTLS {
		t.Error("AutoMTLS is off")
	}
	if !slices.Equal(cfg.AllowedProtocols, []goplugin.Protocol{goplugin.ProtocolGRPC}) {
		t.Errorf("AllowedProtocols = %v, want gRPC only", cfg.AllowedProtocols)
	}
	if cfg.Managed {
		t.Error("Managed is on; the supervisor owns the process")
	}
	if cfg.Cmd != cmd || cfg.HandshakeConfig != Handshake(KindCustody) {
		t.Error("Cmd or handshake not the ones asked for")
	}
	if set, ok := cfg.VersionedPlugins[ProtocolVersion]; !ok || set[string(KindCustody)] == nil || len(set) != 1 {
		t.Errorf("VersionedPlugins = %v, want version %d with exactly the custody plugin", cfg.VersionedPlugins, ProtocolVersion)
	}
	if !slices.Contains(cmd.Env, envLogLevel+"=warn") {
		t.Errorf("cmd.Env = %v, want %s=warn", cmd.Env, envLogLevel)
	}
	cfg.Logger.Named("mcias-plugin-x").Error("boom", "plugin", "/path")
	cfg.Logger.Info("dropped below warn")
	out := buf.String()
	if !strings.Contains(out, `"plugin":"hsm"`) || !strings.Contains(out, `"plugin_path":"/path"`) || strings.Contains(out, "dropped") {
		t.Errorf("host log = %s", out)
	}
}

// TestHandshakesDiffer: a binary of one kind must refuse to serve as
// another, which the distinct cookies guarantee.
func TestHandshakesDiffer(t *testing.T) {
	seen := map[string]Kind{}
	for _, k := range []Kind{KindStorage, KindCustody, KindAudit} {
		h := Handshake(k)
		if h.MagicCookieKey == "" || h.MagicCookieValue == "" || h.ProtocolVersion != ProtocolVersion {
			t.Fatalf("Handshake(%s) = %+v", k, h)
		}
		for _, s := range []string{h.MagicCookieKey, h.MagicCookieValue} {
			if other, ok := seen[s]; ok {
				t.Errorf("%s and %s share %q", k, other, s)
			}
			seen[s] = k
		}
	}
}
