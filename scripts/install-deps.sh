#!/usr/bin/env bash
# Installs what building and testing modelmap needs on a fresh Debian machine with a
# Rust toolchain: cmake (pingora's zlib-ng build needs it) and postgresql (the
# discovery tests start a private Postgres server; tests/common/postgres.rs). Python
# packages for the end-to-end suite are installed by tests/e2e/setup_venv.sh into a
# cached venv.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)

if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "install-deps: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
