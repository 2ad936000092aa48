package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validTOML is the smallest config that loads; cases append to or edit it.
const validTOML = `
[tls]
cert_file = "cert.pem"
key_file = "key.pem"
[storage]
uri = "sqlite:///tmp/x.db"
[custody]
uri = "local:///tmp/keys?key_file=/tmp/master.key"
[tokens]
issuer = "https://mcias.test"
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mcias.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, validTOML), builtinSchemes())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:8443" || cfg.Tokens.TTL.Duration != time.Hour ||
		cfg.Server.ReadHeaderTimeout.Duration != 10*time.Second || cfg.Log.Format != "json" ||
		cfg.Server.GRPCAddr != "" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if err := cfg.passwordParams().Validate(); err != nil {
		t.Errorf("default password parameters: %v", err)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		wants []string // every fragment must appear in the error
	}{
		{"case=unknown key", validTOML + "\n[server]\nlisten_addr = \"x\"\n", []string{"unknown keys", "listen_addr"}},
		{"case=syntax error", validTOML + "\n[server\n", []string{"mcias.toml:"}},
		{"case=bad duration", validTOML + "\n[server]\nread_timeout = \"soon\"\n", []string{`"soon" is not a duration`}},
		{"case=unknown storage scheme", strings.Replace(validTOML, "sqlite:///tmp/x.db", "mysql://db", 1),
			[]string{`storage.uri: unknown scheme "mysql"`, "known schemes: plugin, postgres, sqlite"}},
		{"case=missing custody", strings.Replace(validTOML, `uri = "local:///tmp/keys?key_file=/tmp/master.key"`, "", 1),
			[]string{"custody.uri is required", "local"}},
		{"case=unknown sink scheme", validTOML + "\n[[audit.sinks]]\nuri = \"kafka://x\"\n", []string{`audit.sinks[0].uri: unknown scheme "kafka"`}},
		{"case=weak argon2 memory", validTOML + "\n[password]\nargon2_memory_kib = 1024\n", []string{"argon2"}},
		{"case=weak argon2 time", validTOML + "\n[password]\nargon2_time = 1\nargon2_memory_kib = 19456\n", []string{"argon2"}},
		{"case=no issuer", strings.Replace(validTOML, `issuer = "https://mcias.test"`, "", 1), []string{"tokens.issuer is required"}},
		{"case=ttl too long", validTOML + "\nttl = \"9000h\"\n", []string{"tokens.ttl must be between"}},
		{"case=service ttl above max", validTOML + "\nservice_ttl = \"100h\"\nmax_service_ttl = \"10h\"\n", []string{"tokens.service_ttl must be between 1m and tokens.max_service_ttl"}},
		{"case=bad proxy", validTOML + "\n[server]\ntrusted_proxies = [\"not-an-ip\"]\n", []string{`"not-an-ip" is neither an IP nor a CIDR`}},
		{"case=bad listen", validTOML + "\n[server]\nlisten = \"8443\"\n", []string{"server.listen"}},
		{"case=bad grpc addr", validTOML + "\n[server]\ngrpc_addr = \"9443\"\n", []string{"server.grpc_addr"}},
		{"case=grpc addr same as listen", validTOML + "\n[server]\nlisten = \"127.0.0.1:8443\"\ngrpc_addr = \"127.0.0.1:8443\"\n", []string{"server.grpc_addr must differ from server.listen"}},
		{"case=negative timeout", validTOML + "\n[server]\nwrite_timeout = \"-1s\"\n", []string{"server.write_timeout must be positive"}},
		{"case=huge body cap", validTOML + "\n[server]\nmax_body_bytes = 1073741824\n", []string{"server.max_body_bytes"}},
		{"case=no tls", strings.Replace(validTOML, `cert_file = "cert.pem"`, "", 1), []string{"tls.cert_file and tls.key_file are required"}},
		{"case=bad log level", validTOML + "\n[log]\nlevel = \"loud\"\n", []string{"log.level"}},
		{"case=zero login rate", validTOML + "\n[login]\nrate_per_minute = 0.0\n", []string{"login.rate_per_minute"}},
		{"case=short min length", validTOML + "\n[password]\nmin_length = 4\n", []string{"password.min_length"}},
		{"case=retire_after drops keys early", validTOML + "\n[keys]\nretire_after = \"24h\"\n",
			[]string{"keys.retire_after 24h0m0s would drop a signing key before the tokens it signed expire", "2160h0m30s"}},
		{"case=rotate_every within publish_ahead", validTOML + "\n[keys]\nrotate_every = \"1m\"\npublish_ahead = \"5m\"\n", []string{"keys.rotate_every"}},
		{"case=two sinks one derived name", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\n[[audit.sinks]]\nuri = \"file:/tmp/b\"\n",
			[]string{`audit.sinks[0].name is required: more than one sink would be named "file"`, "audit.sinks[1].name is required"}},
		{"case=duplicate sink names", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\nname = \"x\"\n[[audit.sinks]]\nuri = \"file:/tmp/b\"\nname = \"x\"\n",
			[]string{`audit.sinks[1].name "x" is taken`}},
		{"case=explicit name shadows derived", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\n[[audit.sinks]]\nuri = \"file:/tmp/b\"\nname = \"file\"\n",
			[]string{`audit.sinks[0].name is required`}},
		{"case=unnamed syslog and webhook sinks", validTOML + "\n[[audit.sinks]]\nuri = \"syslog+tcp://127.0.0.1:514\"\n[[audit.sinks]]\nuri = \"syslog+unix:///dev/log\"\n",
			[]string{`audit.sinks[0].name is required: more than one sink would be named "syslog"`}},
		{"case=bad sink name", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\nname = \"My Sink\"\n", []string{`audit.sinks[0].name "My Sink" must match`}},
		{"case=bad sink start", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\nstart = \"yesterday\"\n", []string{"audit.sinks[0].start"}},
		{"case=required without bound", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\nrequired = true\n", []string{"audit.sinks[0].required needs max_lag"}},
		{"case=bound without required", validTOML + "\n[[audit.sinks]]\nuri = \"file:/tmp/a\"\nmax_lag = \"5m\"\n", []string{"apply only to required sinks"}},
		{"case=zero deliver timeout", validTOML + "\n[audit]\ndeliver_timeout = \"0s\"\n", []string{"audit.deliver_timeout must be positive"}},
		{"case=retry max below min", validTOML + "\n[audit]\nretry_min = \"1s\"\nretry_max = \"100ms\"\n", []string{"audit.retry_max"}},
		{"case=no breaker", validTOML + "\n[audit]\nbreaker_failures = 0\n", []string{"audit.breaker_failures"}},
		// "1ns" passed: the checkpoint loop then spun on the head.
		{"case=checkpoint period too short", validTOML + "\n[audit]\ncheckpoint_every = \"1ns\"\n", []string{"audit.checkpoint_every must be 0 (no checkpoints) or at least 100ms"}},
		{"case=negative checkpoint period", validTOML + "\n[audit]\ncheckpoint_every = \"-1s\"\n", []string{"audit.checkpoint_every"}},
		{"case=short lease", validTOML + "\n[audit]\nlease_ttl = \"10ms\"\n", []string{"audit.lease_ttl must be at least 1s"}},
		{"case=negative publish_ahead", validTOML + "\n[keys]\npublish_ahead = \"-1s\"\n", []string{"keys.publish_ahead"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tt.body), builtinSchemes())
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLoadConfigReportsEveryProblem: an operator fixing a config should see
// all of its problems at once, not one per restart.
func TestLoadConfigReportsEveryProblem(t *testing.T) {
	body := strings.Replace(validTOML, `issuer = "https://mcias.test"`, `ttl = "1s"`, 1) + "\n[log]\nformat = \"xml\"\n"
	_, err := loadConfig(writeConfig(t, body), builtinSchemes())
	if err == nil {
		t.Fatal("config accepted")
	}
	for _, w := range []string{"tokens.issuer", "tokens.ttl", "log.format"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

// A sink without a name is named after its scheme up to any "+" (or its
// plugin) when that is unambiguous; [audit] defaults are the core's.
func TestLoadConfigSinks(t *testing.T) {
	body := validTOML + `
[[audit.sinks]]
uri = "file:/tmp/a.jsonl"
[[audit.sinks]]
uri = "syslog+tcp://127.0.0.1:514"
[[audit.sinks]]
uri = "file:/tmp/b.jsonl"
name = "archive"
start = "now"
required = true
max_lag = "5m"
[audit]
checkpoint_every = "0s"
`
	cfg, err := loadConfig(writeConfig(t, body), builtinSchemes())
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Audit.Sinks
	if len(s) != 3 || s[0].Name != "file" || s[1].Name != "syslog" {
		t.Fatalf("sinks %+v", s)
	}
	if s = s[1:]; s[1].Name != "archive" || !s[1].Required || s[1].MaxLag.Duration != 5*time.Minute || s[1].Start != "now" {
		t.Fatalf("sinks %+v", s)
	}
	d := cfg.Audit.coreDelivery()
	if d.CheckpointEvery >= 0 || d.DeliverTimeout != 10*time.Second || d.BreakerFailures != 5 || cfg.Audit.LeaseTTL.Duration != 30*time.Second {
		t.Fatalf("delivery %+v", d)
	}
}

// A sink without a name whose scheme has a transport suffix is named
// after its backend: "syslog+tcp" (which no sink name may be, so the
// config was refused) is "syslog", "webhook+https" is "webhook".
func TestLoadConfigDerivedSinkNames(t *testing.T) {
	body := validTOML + `
[[audit.sinks]]
uri = "syslog+tcp://127.0.0.1:514"
[[audit.sinks]]
uri = "webhook+https://collector/intake?secret_env=X"
`
	cfg, err := loadConfig(writeConfig(t, body), builtinSchemes())
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Audit.Sinks; s[0].Name != "syslog" || s[1].Name != "webhook" {
		t.Fatalf("sinks %+v", s)
	}
}

// A URI that does not parse is reported without its text: it may hold a
// password (a PostgreSQL URI with a stray "%" in it did, echoed whole).
func TestLoadConfigMalformedURIHidesIt(t *testing.T) {
	const pw = "Hunter2Secret"
	body := strings.Replace(validTOML, "sqlite:///tmp/x.db", "postgres://mcias:"+pw+"%zz@127.0.0.1/db", 1) +
		"\n[[audit.sinks]]\nuri = \"webhook+https://u:" + pw + "@col lector/x\"\nname = \"w\"\n"
	_, err := loadConfig(writeConfig(t, body), builtinSchemes())
	if err == nil || !strings.Contains(err.Error(), "storage.uri is not a URI") ||
		!strings.Contains(err.Error(), "audit.sinks[0].uri is not a URI") {
		t.Fatalf("err = %v, want both URIs refused", err)
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := loadConfig(filepath.Join(t.TempDir(), "nope.toml"), builtinSchemes())
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("err = %v", err)
	}
}

// TestSubprocessSinkNamesPlugin: with builtins = "subprocess", a scheme
// with a transport suffix runs in the plugin named before the "+".
func TestSubprocessSinkNamesPlugin(t *testing.T) {
	body := validTOML + "\n[[audit.sinks]]\nuri = \"syslog+tcp://127.0.0.1:514\"\n[plugins]\nbuiltins = \"subprocess\"\n"
	_, err := loadConfig(writeConfig(t, body), builtinSchemes())
	if err == nil || !strings.Contains(err.Error(), `audit.sinks[0].uri: plugins.builtins is "subprocess" but plugins.catalog has no plugin named "syslog"`) {
		t.Fatalf("err = %v", err)
	}
	for _, uri := range []string{"syslog+unix:///dev/log", "webhook+https://collector/intake"} {
		if got := builtinPlugin(strings.Split(uri, ":")[0]); !strings.HasPrefix(uri, got+"+") {
			t.Errorf("builtinPlugin for %s = %q", uri, got)
		}
	}
}
