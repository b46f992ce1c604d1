#!/usr/bin/env bash
# The whole test suite: lints, Rust unit/integration/property tests (the fuzz targets'
# committed corpora included, as tests/fuzz_corpus.rs), the bench smoke run, the deploy
# checks, then the end-to-end suite against a real LiteLLM. Works from a fresh clone.
# Longer fuzzing, which looks for new inputs, is `fuzz/run.sh` (not run here: it needs
# cargo-fuzz and an instrumented build of its own, 16 of 29 minutes on a fresh machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

# The e2e venv (pip: mostly downloads) is set up beside the Rust build (the CPU), and
# waited for before the end-to-end stage; its messages go to a log shown on failure.
venv_log="$(mktemp "${TMPDIR:-/tmp}/modelmap-venv-log.XXXXXX")"
tests/e2e/setup_venv.sh >"$venv_log" 2>&1 &
venv_pid=$!
stop_venv() { kill "$venv_pid" 2>/dev/null || true; }
trap stop_venv EXIT

echo "== cargo fmt / clippy" >&2
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

echo "== cargo test" >&2
cargo test --all-targets
echo "== bench smoke" >&2
bench/run.sh --smoke

echo "== deploy checks" >&2
deploy/ci/check.sh

echo "== end to end against a real LiteLLM" >&2
if ! wait "$venv_pid"; then
    cat "$venv_log" >&2
    echo "test: the e2e venv could not be set up" >&2
    exit 1
fi
trap - EXIT
sed 's/^/  /' "$venv_log" >&2
rm -f "$venv_log"
tests/e2e/run.sh

echo "== parity: modelmap against LiteLLM's own request reading (tests/parity)" >&2
tests/parity/run.sh
