#!/usr/bin/env bash
# Differential test of modelmap against LiteLLM's own request reading (issue 13).
#
#   tests/parity/run.sh                         # venv (cached), cargo build, run
#   MODELMAP_BIN=/path/to/modelmap tests/parity/run.sh   # test that binary, skip cargo build
#   PARITY_SEED=7 PARITY_COUNT=3000 tests/parity/run.sh  # other seed / size
#   PARITY_MD=/some/report.md tests/parity/run.sh        # also write the markdown summary
#
# Uses the e2e venv (real LiteLLM 1.106.2, plus httptools). Prints `N passed, M failed`;
# the full report goes to target/parity-report.txt. Exit code: run.py's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

venv="$("$repo/tests/e2e/setup_venv.sh")"

if [[ -z "${MODELMAP_BIN:-}" ]]; then
    echo "parity: cargo build (in $repo)" >&2
    (cd "$repo" && cargo build)
    target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$repo/$target"
    export MODELMAP_BIN="$target/debug/modelmap"
fi
export PARITY_REPORT="${PARITY_REPORT:-$repo/target/parity-report.txt}"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" "$here/run.py" "$@"
