package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"

	"github.com/metacircular/mcias/backends/audit/file"
	"github.com/metacircular/mcias/backends/audit/syslog"
	"github.com/metacircular/mcias/backends/audit/webhook"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/postgres"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core/pluginhost"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// The builtin backends, by URI scheme: the one explicit table that wires
// backends into the server (no init() registration).
var (
	storageBackends = map[string]storage.Factory{
		"sqlite":   sqlite.Open,
		"postgres": postgres.Open,
	}
	custodyBackends = map[string]custody.Factory{
		"local": local.Open,
	}
	auditSinks = map[string]audit.Factory{
		"file":          file.Open,
		"syslog+tcp":    syslog.Open,
		"syslog+unix":   syslog.Open,
		"webhook+http":  webhook.Open,
		"webhook+https": webhook.Open,
	}
)

// builtinPlugin names the catalog plugin that serves a builtin scheme
// when plugins.builtins is "subprocess": the scheme up to any "+"
// (syslog+tcp and syslog+unix are both served by the plugin "syslog").
func builtinPlugin(scheme string) string {
	name, _, _ := strings.Cut(scheme, "+")
	return name
}

func builtinSchemes() knownSchemes {
	return knownSchemes{
		storage: keys(storageBackends),
		custody: keys(custodyBackends),
		audit:   keys(auditSinks),
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// opener starts a backend as a supervised plugin (a pluginhost.Host
// method).
type opener[T any] func(ctx context.Context, p pluginhost.Plugin, uri string) (T, error)

// open loads the backend bc names: a builtin in-process, or a catalog
// plugin as a subprocess (plugin:NAME, or a builtin scheme when
// plugins.builtins is "subprocess"). The config check has already refused
// unknown schemes and names, so a miss here is a bug.
func open[T any, F ~func(context.Context, string, *slog.Logger) (T, error)](ctx context.Context, table map[string]F, bc BackendConfig, pc PluginsConfig, start opener[T], logger *slog.Logger) (T, error) {
	var zero T
	u, err := url.Parse(bc.URI)
	if err != nil {
		return zero, fmt.Errorf("backend uri %q: %w", bc.URI, err)
	}
	name, uri := "", bc.URI
	switch {
	case u.Scheme == pluginScheme:
		name, uri = u.Opaque, bc.Config
	case pc.Builtins == builtinsSubprocess:
		name = builtinPlugin(u.Scheme)
	}
	if name != "" {
		for _, e := range pc.Catalog {
			if e.Name == name {
				return start(ctx, pluginhost.Plugin{Name: e.Name, Path: e.Path, SHA256: e.SHA256, Env: e.Env}, uri)
			}
		}
		return zero, fmt.Errorf("no plugin %q in the catalog", name)
	}
	f, ok := table[u.Scheme]
	if !ok {
		return zero, fmt.Errorf("no backend for scheme %q", u.Scheme)
	}
	return f(ctx, bc.URI, logger)
}

// hostOptions turns the [plugins] section into supervision options.
func hostOptions(pc PluginsConfig) pluginhost.Options {
	return pluginhost.Options{
		CallTimeout:    pc.CallTimeout.Duration,
		StartTimeout:   pc.StartTimeout.Duration,
		HealthInterval: pc.HealthInterval.Duration,
		HealthTimeout:  pc.HealthTimeout.Duration,
		FailThreshold:  pc.FailThreshold,
		BackoffMax:     pc.BackoffMax.Duration,
	}
}
