// Package parity holds the test that holds the REST and gRPC frontends to
// one contract: a single table of scenarios, every operation with its
// success and failure cases, run against both transports over the real
// core, comparing results, errors and the audit events each produced.
package parity
