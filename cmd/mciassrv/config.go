package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
)

// Config is mciassrv's TOML configuration. Relative paths are resolved
// against the working directory.
type Config struct {
	Server   ServerConfig   `toml:"server"`
	TLS      TLSConfig      `toml:"tls"`
	Storage  BackendConfig  `toml:"storage"`
	Custody  BackendConfig  `toml:"custody"`
	Audit    AuditConfig    `toml:"audit"`
	Tokens   TokensConfig   `toml:"tokens"`
	Keys     KeysConfig     `toml:"keys"`
	Password PasswordConfig `toml:"password"`
	Login    LoginConfig    `toml:"login"`
	Log      LogConfig      `toml:"log"`
	Plugins  PluginsConfig  `toml:"plugins"`
}

type ServerConfig struct {
	Listen string `toml:"listen"`
	// GRPCAddr is where the gRPC API listens, with the same certificate;
	// empty: no gRPC listener.
	GRPCAddr          string   `toml:"grpc_addr"`
	TrustedProxies    []string `toml:"trusted_proxies"`
	MaxBodyBytes      int64    `toml:"max_body_bytes"`
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	ReadTimeout       Duration `toml:"read_timeout"`
	WriteTimeout      Duration `toml:"write_timeout"`
	IdleTimeout       Duration `toml:"idle_timeout"`
	ShutdownTimeout   Duration `toml:"shutdown_timeout"`
}

type TLSConfig struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

type BackendConfig struct {
	// URI names the backend: a builtin scheme runs in-process (or in the
	// catalog plugin of that name when plugins.builtins is
	// "subprocess"); plugin:NAME runs the catalog plugin NAME.
	URI string `toml:"uri"`
	// Config is the URI a plugin:NAME backend opens inside the plugin.
	Config string `toml:"config"`
}

// PluginsConfig is the plugin catalog and how plugins are supervised.
type PluginsConfig struct {
	// Builtins: "in-process" (default) or "subprocess", which runs every
	// builtin-scheme backend in the catalog plugin named after its scheme.
	Builtins       string         `toml:"builtins"`
	CallTimeout    Duration       `toml:"call_timeout"`
	StartTimeout   Duration       `toml:"start_timeout"`
	HealthInterval Duration       `toml:"health_interval"`
	HealthTimeout  Duration       `toml:"health_timeout"`
	FailThreshold  int            `toml:"fail_threshold"`
	BackoffMax     Duration       `toml:"backoff_max"`
	Catalog        []CatalogEntry `toml:"catalog"`
}

// CatalogEntry is one plugin binary the server may run.
type CatalogEntry struct {
	Name   string   `toml:"name"`
	Path   string   `toml:"path"`
	SHA256 string   `toml:"sha256"`
	Env    []string `toml:"env"`
}

// AuditConfig is delivery of stored audit events to sinks, and
// checkpoints of the hash chain (core.AuditDelivery).
type AuditConfig struct {
	Sinks           []SinkConfig `toml:"sinks"`
	DeliverTimeout  Duration     `toml:"deliver_timeout"`  // deadline of one delivery call
	RetryMin        Duration     `toml:"retry_min"`        // first retry delay
	RetryMax        Duration     `toml:"retry_max"`        // retry delay cap
	BreakerFailures int          `toml:"breaker_failures"` // failures in a row that open the breaker
	BreakerCooldown Duration     `toml:"breaker_cooldown"` // rest of an open breaker before one probe
	CheckpointEvery Duration     `toml:"checkpoint_every"` // 0: no checkpoints
	BatchDelay      Duration     `toml:"batch_delay"`      // gather events this long after a short batch; 0: none
	// LeaseTTL is how long a node's claim to a job (a sink's delivery,
	// checkpoints, key rotation) outlives it on a store shared by nodes.
	LeaseTTL Duration `toml:"lease_ttl"`
}

// SinkConfig is one [[audit.sinks]] entry.
type SinkConfig struct {
	URI    string `toml:"uri"`
	Config string `toml:"config"`
	// Name keys the sink's cursor and lease in storage: keep it stable.
	// Empty: the URI scheme, or the plugin name of a plugin: URI, when no
	// other sink has that name.
	Name string `toml:"name"`
	// Start: where a sink new to storage starts, "beginning" (the whole
	// stored log, default) or "now".
	Start string `toml:"start"`
	// Required: lagging beyond max_lag or max_lag_events makes /v1/ready
	// report unavailable (requests are still served).
	Required     bool     `toml:"required"`
	MaxLag       Duration `toml:"max_lag"`
	MaxLagEvents int64    `toml:"max_lag_events"`
}

// Backend is the sink's backend part.
func (s SinkConfig) Backend() BackendConfig { return BackendConfig{URI: s.URI, Config: s.Config} }

type TokensConfig struct {
	Issuer        string   `toml:"issuer"`
	TTL           Duration `toml:"ttl"`
	ServiceTTL    Duration `toml:"service_ttl"`
	MaxServiceTTL Duration `toml:"max_service_ttl"`
	Leeway        Duration `toml:"leeway"`
}

// KeysConfig is signing-key rotation (with a custodian that rotates).
type KeysConfig struct {
	RotateEvery  Duration `toml:"rotate_every"`  // 0: on demand only
	PublishAhead Duration `toml:"publish_ahead"` // next key published this long before it signs
	RetireAfter  Duration `toml:"retire_after"`  // 0: the longest token life plus leeway
}

type PasswordConfig struct {
	Argon2Time          uint32 `toml:"argon2_time"`
	Argon2MemoryKiB     uint32 `toml:"argon2_memory_kib"`
	Argon2Threads       uint8  `toml:"argon2_threads"`
	MaxConcurrentHashes int    `toml:"max_concurrent_hashes"`
	MinLength           int    `toml:"min_length"`
}

type LoginConfig struct {
	RatePerMinute float64 `toml:"rate_per_minute"`
	Burst         int     `toml:"burst"`
}

type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. \"30s\", \"15m\", \"24h\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func defaultConfig() Config {
	p := password.DefaultParams()
	return Config{
		Server: ServerConfig{
			Listen:            "127.0.0.1:8443",
			MaxBodyBytes:      64 << 10,
			ReadHeaderTimeout: Duration{10 * time.Second},
			ReadTimeout:       Duration{30 * time.Second},
			WriteTimeout:      Duration{30 * time.Second},
			IdleTimeout:       Duration{120 * time.Second},
			ShutdownTimeout:   Duration{15 * time.Second},
		},
		Tokens: TokensConfig{
			TTL:           Duration{time.Hour},
			ServiceTTL:    Duration{24 * time.Hour},
			MaxServiceTTL: Duration{90 * 24 * time.Hour},
			Leeway:        Duration{30 * time.Second},
		},
		Keys: KeysConfig{PublishAhead: Duration{2 * time.Minute}},
		Audit: AuditConfig{
			DeliverTimeout:  Duration{core.DefaultDeliverTimeout},
			RetryMin:        Duration{core.DefaultRetryMin},
			RetryMax:        Duration{core.DefaultRetryMax},
			BreakerFailures: core.DefaultBreakerFailures,
			BreakerCooldown: Duration{core.DefaultBreakerCooldown},
			CheckpointEvery: Duration{core.DefaultCheckpointEvery},
			BatchDelay:      Duration{core.DefaultBatchDelay},
			LeaseTTL:        Duration{core.DefaultLeaseTTL},
		},
		Password: PasswordConfig{
			Argon2Time:      p.Time,
			Argon2MemoryKiB: p.MemoryKiB,
			Argon2Threads:   p.Threads,
			MinLength:       12,
		},
		Login: LoginConfig{RatePerMinute: 30, Burst: 10},
		Log:   LogConfig{Level: "info", Format: "json"},
		Plugins: PluginsConfig{
			Builtins:       builtinsInProcess,
			CallTimeout:    Duration{5 * time.Second},
			StartTimeout:   Duration{10 * time.Second},
			HealthInterval: Duration{500 * time.Millisecond},
			HealthTimeout:  Duration{time.Second},
			FailThreshold:  3,
			BackoffMax:     Duration{5 * time.Second},
		},
	}
}

// loadConfig reads and validates a config file. Unknown keys are errors,
// so a typo cannot silently leave a default in place.
func loadConfig(path string, known knownSchemes) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg := defaultConfig()
	dec := toml.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return Config{}, fmt.Errorf("config %s: unknown keys:\n%s", path, strict.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return Config{}, fmt.Errorf("config %s:%d:%d: %s", path, row, col, de.Error())
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.validate(known); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// knownSchemes lists the backend URI schemes this binary can load.
type knownSchemes struct {
	storage, custody, audit []string
}

func (c *Config) validate(known knownSchemes) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		add("server.listen %q must be host:port", c.Server.Listen)
	}
	if c.Server.GRPCAddr != "" {
		if _, port, err := net.SplitHostPort(c.Server.GRPCAddr); err != nil {
			add("server.grpc_addr %q must be host:port (or left out for no gRPC listener)", c.Server.GRPCAddr)
		} else if c.Server.GRPCAddr == c.Server.Listen && port != "0" { // port 0: any free port, twice
			add("server.grpc_addr must differ from server.listen (%s)", c.Server.Listen)
		}
	}
	for _, p := range c.Server.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				add("server.trusted_proxies: %q is neither an IP nor a CIDR", p)
			}
		}
	}
	if c.Server.MaxBodyBytes < 1024 || c.Server.MaxBodyBytes > 16<<20 {
		add("server.max_body_bytes must be between 1024 and 16777216")
	}
	for name, d := range map[string]Duration{
		"server.read_header_timeout": c.Server.ReadHeaderTimeout, "server.read_timeout": c.Server.ReadTimeout,
		"server.write_timeout": c.Server.WriteTimeout, "server.idle_timeout": c.Server.IdleTimeout,
		"server.shutdown_timeout": c.Server.ShutdownTimeout,
	} {
		if d.Duration <= 0 {
			add("%s must be positive", name)
		}
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		add("tls.cert_file and tls.key_file are required (run `mciassrv init` for a development certificate)")
	}
	c.validatePlugins(add, known)
	c.validateAudit(add)
	if c.Tokens.Issuer == "" {
		add("tokens.issuer is required (the iss claim, e.g. \"https://mcias.example.org\")")
	}
	if c.Tokens.TTL.Duration < time.Minute || c.Tokens.TTL.Duration > 7*24*time.Hour {
		add("tokens.ttl must be between 1m and 168h")
	}
	if c.Tokens.MaxServiceTTL.Duration < time.Minute || c.Tokens.MaxServiceTTL.Duration > 366*24*time.Hour {
		add("tokens.max_service_ttl must be between 1m and 8784h (366 days)")
	}
	if c.Tokens.ServiceTTL.Duration < time.Minute || c.Tokens.ServiceTTL.Duration > c.Tokens.MaxServiceTTL.Duration {
		add("tokens.service_ttl must be between 1m and tokens.max_service_ttl")
	}
	if c.Tokens.Leeway.Duration < 0 || c.Tokens.Leeway.Duration > 5*time.Minute {
		add("tokens.leeway must be between 0s and 5m")
	}
	longest := max(c.Tokens.TTL.Duration, c.Tokens.MaxServiceTTL.Duration) + c.Tokens.Leeway.Duration
	if r := c.Keys.RetireAfter.Duration; r != 0 && r < longest {
		add("keys.retire_after %s would drop a signing key before the tokens it signed expire; it must be at least max(tokens.ttl, tokens.max_service_ttl) + tokens.leeway = %s (or 0 for exactly that)", r, longest)
	}
	if c.Keys.PublishAhead.Duration < 0 {
		add("keys.publish_ahead must not be negative")
	}
	if e := c.Keys.RotateEvery.Duration; e < 0 || (e > 0 && e <= c.Keys.PublishAhead.Duration) {
		add("keys.rotate_every must be 0 (on demand only) or longer than keys.publish_ahead")
	}
	if err := c.passwordParams().Validate(); err != nil {
		errs = append(errs, err) // already names the section and the minimums
	}
	if c.Password.MaxConcurrentHashes < 0 {
		add("password.max_concurrent_hashes must be 0 (one per CPU) or positive")
	}
	if c.Password.MinLength < 8 || c.Password.MinLength > 256 {
		add("password.min_length must be between 8 and 256")
	}
	if c.Login.RatePerMinute <= 0 || c.Login.Burst < 1 {
		add("login.rate_per_minute must be positive and login.burst at least 1")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("log.level must be debug, info, warn or error")
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format must be json or text")
	}
	return errors.Join(errs...)
}

func (c *Config) passwordParams() password.Params {
	return password.Params{
		Time:      c.Password.Argon2Time,
		MemoryKiB: c.Password.Argon2MemoryKiB,
		Threads:   c.Password.Argon2Threads,
	}
}

const (
	builtinsInProcess  = "in-process"
	builtinsSubprocess = "subprocess"
	pluginScheme       = "plugin"
)

var pluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func (c *Config) validatePlugins(add func(string, ...any), known knownSchemes) {
	p := c.Plugins
	if p.Builtins != builtinsInProcess && p.Builtins != builtinsSubprocess {
		add("plugins.builtins must be %q or %q", builtinsInProcess, builtinsSubprocess)
	}
	for name, d := range map[string]Duration{
		"plugins.call_timeout": p.CallTimeout, "plugins.start_timeout": p.StartTimeout,
		"plugins.health_interval": p.HealthInterval, "plugins.health_timeout": p.HealthTimeout,
		"plugins.backoff_max": p.BackoffMax,
	} {
		if d.Duration <= 0 {
			add("%s must be positive", name)
		}
	}
	if p.FailThreshold < 1 {
		add("plugins.fail_threshold must be at least 1")
	}
	names := map[string]bool{}
	for i, e := range p.Catalog {
		key := fmt.Sprintf("plugins.catalog[%d]", i)
		switch {
		case !pluginNameRE.MatchString(e.Name):
			add("%s.name %q must match %s", key, e.Name, pluginNameRE)
		case names[e.Name]:
			add("%s.name %q appears twice in the catalog", key, e.Name)
		}
		names[e.Name] = true
		if fi, err := os.Stat(e.Path); err != nil {
			add("%s.path: %v", key, err)
		} else if !fi.Mode().IsRegular() {
			add("%s.path %s is not a regular file", key, e.Path)
		}
		if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
			add("%s.sha256 must be the 64 hex digits of the binary's SHA-256 (sha256sum %s)", key, e.Path)
		}
		for _, v := range e.Env {
			if v == "" || strings.ContainsAny(v, "= ") {
				add("%s.env: %q is not an environment variable name", key, v)
			}
		}
	}
	check := func(key string, b BackendConfig, builtin []string) {
		scheme := checkScheme(add, key+".uri", b.URI, append([]string{pluginScheme}, builtin...))
		switch {
		case scheme == pluginScheme:
			name := strings.TrimPrefix(b.URI, pluginScheme+":")
			if !names[name] {
				add("%s.uri %q: no plugin %q in plugins.catalog", key, b.URI, name)
			}
			if b.Config == "" {
				add("%s.config is required with a plugin: uri (the URI the plugin opens)", key)
			}
		case scheme == "":
		default:
			if b.Config != "" {
				add("%s.config is only for plugin: uris", key)
			}
			if p.Builtins == builtinsSubprocess && !names[builtinPlugin(scheme)] {
				add("%s.uri: plugins.builtins is %q but plugins.catalog has no plugin named %q", key, builtinsSubprocess, builtinPlugin(scheme))
			}
		}
	}
	check("storage", c.Storage, known.storage)
	check("custody", c.Custody, known.custody)
	for i, s := range c.Audit.Sinks {
		check(fmt.Sprintf("audit.sinks[%d]", i), s.Backend(), known.audit)
	}
}

// minCheckpointEvery is the shortest checkpoint period accepted.
const minCheckpointEvery = 100 * time.Millisecond

var sinkNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// validateAudit checks [audit] and names every sink: a sink without a
// name gets its URI's scheme (or plugin name) when that is unambiguous.
func (c *Config) validateAudit(add func(string, ...any)) {
	a := &c.Audit
	for name, d := range map[string]Duration{
		"audit.deliver_timeout": a.DeliverTimeout, "audit.retry_min": a.RetryMin,
		"audit.retry_max": a.RetryMax, "audit.breaker_cooldown": a.BreakerCooldown,
		"audit.lease_ttl": a.LeaseTTL,
	} {
		if d.Duration <= 0 {
			add("%s must be positive", name)
		}
	}
	if a.RetryMax.Duration < a.RetryMin.Duration {
		add("audit.retry_max must not be below audit.retry_min")
	}
	if a.BreakerFailures < 1 {
		add("audit.breaker_failures must be at least 1")
	}
	if d := a.CheckpointEvery.Duration; d < 0 || (d > 0 && d < minCheckpointEvery) {
		// Below that the checkpoint loop is a busy loop reading the head.
		add("audit.checkpoint_every must be 0 (no checkpoints) or at least %s", minCheckpointEvery)
	}
	if d := a.BatchDelay.Duration; d < 0 || d > 10*time.Second {
		add("audit.batch_delay must be between 0 (none) and 10s")
	}
	if a.LeaseTTL.Duration > 0 && a.LeaseTTL.Duration < time.Second {
		add("audit.lease_ttl must be at least 1s")
	}
	derived := func(s SinkConfig) string {
		u, err := url.Parse(s.URI)
		if err != nil {
			return ""
		}
		if u.Scheme == pluginScheme {
			return u.Opaque
		}
		// syslog+tcp and syslog+unix are "syslog", as their backend (and
		// plugin) is named: a "+" is not allowed in a sink name.
		return builtinPlugin(u.Scheme)
	}
	explicit := map[string]int{}
	for _, s := range a.Sinks {
		if s.Name != "" {
			explicit[s.Name]++
		}
	}
	count := map[string]int{}
	for _, s := range a.Sinks {
		if s.Name == "" {
			count[derived(s)]++
		}
	}
	seen := map[string]bool{}
	for i := range a.Sinks {
		s := &a.Sinks[i]
		key := fmt.Sprintf("audit.sinks[%d]", i)
		if s.Name == "" {
			d := derived(*s)
			if d == "" {
				continue // the uri is reported already
			}
			if count[d] > 1 || explicit[d] > 0 {
				add("%s.name is required: more than one sink would be named %q (the name keys its cursor in storage)", key, d)
				continue
			}
			s.Name = d
		}
		switch {
		case !sinkNameRE.MatchString(s.Name):
			add("%s.name %q must match %s", key, s.Name, sinkNameRE)
		case seen[s.Name]:
			add("%s.name %q is taken by another sink; names must be unique", key, s.Name)
		}
		seen[s.Name] = true
		if s.Start != "" && s.Start != core.StartBeginning && s.Start != core.StartNow {
			add("%s.start must be %q or %q", key, core.StartBeginning, core.StartNow)
		}
		if s.MaxLag.Duration < 0 || s.MaxLagEvents < 0 {
			add("%s.max_lag and max_lag_events must not be negative", key)
		}
		if s.Required && s.MaxLag.Duration == 0 && s.MaxLagEvents == 0 {
			add("%s.required needs max_lag or max_lag_events (the bound beyond which readiness turns red)", key)
		}
		if !s.Required && (s.MaxLag.Duration != 0 || s.MaxLagEvents != 0) {
			add("%s.max_lag and max_lag_events apply only to required sinks (set required = true)", key)
		}
	}
}

// coreDelivery is the [audit] section as the core takes it.
func (a AuditConfig) coreDelivery() core.AuditDelivery {
	every := a.CheckpointEvery.Duration
	if every == 0 {
		every = -1 // the core reads 0 as "default"
	}
	batchDelay := a.BatchDelay.Duration
	if batchDelay == 0 {
		batchDelay = -1
	}
	return core.AuditDelivery{
		DeliverTimeout:  a.DeliverTimeout.Duration,
		RetryMin:        a.RetryMin.Duration,
		RetryMax:        a.RetryMax.Duration,
		BreakerFailures: a.BreakerFailures,
		BreakerCooldown: a.BreakerCooldown.Duration,
		CheckpointEvery: every,
		BatchDelay:      batchDelay,
	}
}

// checkScheme returns uri's scheme when it is one of known, else "" after
// reporting why.
func checkScheme(add func(string, ...any), key, uri string, known []string) string {
	if uri == "" {
		add("%s is required (known schemes: %s)", key, strings.Join(known, ", "))
		return ""
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		// Neither the URI nor url.Parse's error (which quotes it) is
		// shown: a URI that does not parse may still hold a password.
		add("%s is not a URI of the form scheme:... (known schemes: %s; the value is not shown, it may hold a password)", key, strings.Join(known, ", "))
		return ""
	}
	for _, k := range known {
		if u.Scheme == k {
			return k
		}
	}
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	add("%s: unknown scheme %q (known schemes: %s)", key, u.Scheme, strings.Join(sorted, ", "))
	return ""
}
