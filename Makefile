# MCIAS: `make run` starts a development server, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
CMDS  := mciassrv mciasctl mciasgrpcctl
# Builtin backends served as plugin binaries: plugins/NAME -> bin/plugins/mcias-plugin-NAME.
PLUGINS := $(notdir $(wildcard plugins/*))
# Every Go module in the repository (root, sdk, and any later ones).
MODULES := $(shell find . -name go.mod -not -path './run/*' -not -path './bin/*' -printf '%h\n' | sort)

.PHONY: all build run test test-deps lint bench clean generate

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do echo "go build mcias-plugin-$$p"; $(GO) build -o $(BIN)/plugins/mcias-plugin-$$p ./plugins/$$p || exit 1; done

## run: build, lay out ./run (dev certificate, master key, SQLite) once, and serve REST on 127.0.0.1:8443, gRPC on 127.0.0.1:9443.
run: build
	@$(BIN)/mciassrv init -dir run
	exec $(BIN)/mciassrv serve -config run/mcias.toml

## test-deps: install what the tests need (Debian packages), idempotently.
test-deps:
	@scripts/test-deps.sh

## generate: regenerate the Go code of proto/ (a test fails when it is stale).
generate:
	@scripts/tools.sh
	@scripts/generate.sh

## lint: formatting and vet, for every module.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@for m in $(MODULES); do echo "go vet ($$m)"; (cd $$m && $(GO) vet ./...) || exit 1; done

## test: install test dependencies, then lint and run every test of every module with the race detector.
test: test-deps lint
	@for m in $(MODULES); do echo "go test -race ($$m)"; (cd $$m && $(GO) test -race -count=1 -timeout 15m ./...) || exit 1; done

## bench: Go benchmarks and the REST and gRPC load comparisons (see bench/README.md).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./core/
	$(GO) test -run '^$$' -bench . -benchmem ./plugins/...
	$(GO) run ./bench/restload -bin $(BIN)
	$(GO) run ./bench/grpcload -bin $(BIN)

clean:
	rm -rf $(BIN)
