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
# examples/pkcs11 tests against a real SoftHSM2 token; opensc gives pkcs11-tool.
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v openssl >/dev/null || need+=(openssl)

if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing Debian packages: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

"$(dirname "$0")/tools.sh"
