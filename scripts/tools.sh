#!/usr/bin/env bash
# Installs the pinned Go tools that code generation and the tests use into
# .tools/bin (git-ignored). Idempotent: go install reuses its build cache.
# protoc itself comes from Debian (protobuf-compiler, see test-deps.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export GOBIN="$root/.tools/bin"
mkdir -p "$GOBIN"

# protoc-gen-go must match the google.golang.org/protobuf version in go.mod.
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# grpcurl drives the gRPC API in the end-to-end tests, as an outside
# client that reads the schema through server reflection.
go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
