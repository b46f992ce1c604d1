#!/usr/bin/env bash
# The whole test suite: lints, Rust unit/integration/property tests, then the
# end-to-end suite against a real LiteLLM. Works from a fresh clone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

echo "== cargo fmt / clippy" >&2
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

echo "== cargo test" >&2
cargo test --all-targets
echo "== bench smoke" >&2
bench/run.sh --smoke

echo "== deploy checks" >&2
deploy/ci/check.sh

echo "== fuzz (bounded)" >&2
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" fuzz/run.sh

echo "== end to end against a real LiteLLM" >&2
tests/e2e/run.sh
