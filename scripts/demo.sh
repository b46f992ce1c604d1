#!/usr/bin/env bash
# modelmap doing its real job: a real LiteLLM fails a request for `gpt-4.1` directly,
# and the same request succeeds through modelmap. Everything runs on 127.0.0.1.
#
# On a fresh machine the two slow steps are the first debug build (the CPU) and the
# Python venv with LiteLLM (mostly downloads): they run side by side here, then
# tests/e2e/demo.sh finds the venv ready and uses the binary just built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh

venv_log="$(mktemp "${TMPDIR:-/tmp}/modelmap-venv-log.XXXXXX")"
tests/e2e/setup_venv.sh >/dev/null 2>"$venv_log" &
venv_pid=$!
stop_venv() {
    kill "$venv_pid" 2>/dev/null || true
    wait "$venv_pid" 2>/dev/null || true
    rm -f "$venv_log"
}
trap stop_venv EXIT

if [[ -z "${MODELMAP_BIN:-}" ]]; then
    echo "demo: cargo build --bin modelmap, with the Python venv being set up beside it" >&2
    cargo build --bin modelmap
    target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$PWD/$target"
    export MODELMAP_BIN="$target/debug/modelmap"
fi
echo "demo: waiting for the Python venv" >&2
if ! wait "$venv_pid"; then
    cat "$venv_log" >&2
    echo "demo: the Python venv could not be set up" >&2
    exit 1
fi
sed 's/^/  /' "$venv_log" >&2
trap - EXIT
rm -f "$venv_log"
exec tests/e2e/demo.sh "$@"
