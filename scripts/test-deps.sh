#!/usr/bin/env bash
# Installs the external programs the tests cross-check against. Idempotent:
# does nothing when they are already present. Tests fail (never skip) when
# one is missing, so CI on a fresh machine relies on this script.
set -euo pipefail

need=()
command -v oathtool >/dev/null || need+=(oathtool)
command -v argon2 >/dev/null || need+=(argon2)
command -v curl >/dev/null || need+=(curl)
command -v protoc >/dev/null || need+=(protobuf-compiler)
# The Postgres tests start a throwaway server (internal/pgtest) from these
# binaries, as the unprivileged user the package creates.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing Debian packages: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

"$(dirname "$0")/tools.sh"
