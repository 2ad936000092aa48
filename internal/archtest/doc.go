// Package archtest holds the test that keeps the import rules of
// STYLE.md ("Which way imports go") true as the tree grows. It has no
// code of its own; run it with `go test ./internal/archtest`.
//
// The rules, by path prefix inside github.com/metacircular/mcias:
//
//   - sdk/...: imports nothing of ours outside sdk (it is its own module,
//     the only thing a plugin author imports).
//   - backends/<kind>/<name>/...: sdk and its own subtree only; never
//     core, api, cmd, plugins, internal or another backend.
//   - plugins/<name>/...: sdk, its own subtree and at most one backend;
//     the main package plugins/<name> imports sdk/plugin and exactly one
//     backend (a thin main, no logic).
//   - core/...: never backends, api, cmd or plugins; never Gin (even
//     indirectly); never google.golang.org/grpc directly (plugin hosting
//     goes through sdk/plugin).
//   - api/...: never backends, cmd or plugins.
//   - anything else outside cmd (internal/..., the module root): never a
//     backend; only cmd wires backends in.
//   - examples/<name> (separate modules): of ours, only sdk.
//
// Only non-test imports count: tests may use real backends (core tests
// run against sqlite and local custody on purpose).
package archtest
