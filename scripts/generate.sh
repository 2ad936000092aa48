#!/usr/bin/env bash
# Regenerates the Go code of every .proto under proto/ (make generate).
#
#   scripts/generate.sh [OUTDIR]
#
# OUTDIR defaults to the repository root; the staleness test passes a
# temporary directory and compares. Plugin protocols (proto/mcias/plugin/...)
# belong to the sdk module, everything else to the root module; each .proto
# names its Go package with option go_package.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root}"
export PATH="$root/.tools/bin:$PATH"
for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
	command -v "$tool" >/dev/null || { echo "generate: $tool not found; run make test-deps" >&2; exit 1; }
done

[ -d "$root/proto" ] || exit 0
cd "$root/proto"
mapfile -t dirs < <(find . -name '*.proto' -printf '%h\n' | sed 's|^\./||' | sort -u)
for dir in "${dirs[@]}"; do
	case "$dir" in
	mcias/plugin/*) module=github.com/metacircular/mcias/sdk dest="$out/sdk" ;;
	*) module=github.com/metacircular/mcias dest="$out" ;;
	esac
	mkdir -p "$dest"
	protoc -I . \
		--go_out="$dest" --go_opt=module="$module" \
		--go-grpc_out="$dest" --go-grpc_opt=module="$module" \
		"$dir"/*.proto
done
