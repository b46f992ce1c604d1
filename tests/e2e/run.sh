#!/usr/bin/env bash
# Run the end-to-end suite: a real LiteLLM with and without modelmap in front of it.
#
#   tests/e2e/run.sh                      # venv (cached), cargo build, pytest -v
#   tests/e2e/run.sh -k stream            # extra arguments go to pytest
#   MODELMAP_BIN=/path/to/modelmap tests/e2e/run.sh   # test that binary, skip cargo build
#
# Exit code: pytest's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

venv="$("$here/setup_venv.sh")"

if [[ -z "${MODELMAP_BIN:-}" ]]; then
    echo "run.sh: cargo build (in $repo)" >&2
    (cd "$repo" && cargo build)
    target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$repo/$target"
    export MODELMAP_BIN="$target/debug/modelmap"
fi
echo "run.sh: modelmap binary: $MODELMAP_BIN" >&2

export PYTHONDONTWRITEBYTECODE=1
set +e
"$venv/bin/python" -m pytest "$here" -v "$@"
status=$?
set -e
exit "$status"
