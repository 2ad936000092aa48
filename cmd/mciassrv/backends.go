package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sort"

	"github.com/metacircular/mcias/backends/audit/file"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// The builtin backends, by URI scheme: the one explicit table that wires
// backends into the server (no init() registration).
var (
	storageBackends = map[string]storage.Factory{
		"sqlite": sqlite.Open,
	}
	custodyBackends = map[string]custody.Factory{
		"local": local.Open,
	}
	auditSinks = map[string]audit.Factory{
		"file": file.Open,
	}
)

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

// open picks the factory for uri's scheme; the config check has already
// refused unknown schemes, so a miss here is a bug.
func open[T any, F ~func(context.Context, string, *slog.Logger) (T, error)](ctx context.Context, table map[string]F, uri string, logger *slog.Logger) (T, error) {
	var zero T
	u, err := url.Parse(uri)
	if err != nil {
		return zero, fmt.Errorf("backend uri %q: %w", uri, err)
	}
	f, ok := table[u.Scheme]
	if !ok {
		return zero, fmt.Errorf("no backend for scheme %q", u.Scheme)
	}
	return f(ctx, uri, logger)
}
