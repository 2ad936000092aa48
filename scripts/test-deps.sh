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
# examples/pkcs11 tests against a real SoftHSM2 token; opensc gives pkcs11-tool.
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v openssl >/dev/null || need+=(openssl)
# The syslog audit sink is tested against a real rsyslogd (internal/rsyslogtest).
[ -x /usr/sbin/rsyslogd ] || command -v rsyslogd >/dev/null || need+=(rsyslog)
# e2e verifies tokens with PyJWT in a virtualenv (below).
command -v python3 >/dev/null || need+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing Debian packages: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/venv"
if ! cmp -s "$root/scripts/requirements-test.txt" "$venv/requirements-test.txt"; then
	echo "installing Python test packages into .tools/venv"
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
	cp "$root/scripts/requirements-test.txt" "$venv/requirements-test.txt"
fi

"$(dirname "$0")/tools.sh"
