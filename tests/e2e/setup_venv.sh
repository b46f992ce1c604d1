#!/usr/bin/env bash
# Create (idempotently) the virtualenv for the end-to-end tests: a real LiteLLM proxy,
# the openai and anthropic SDKs, pytest and requests, pinned in requirements.txt beside this script.
#
#   tests/e2e/setup_venv.sh            # prints the venv path on its last line
#   MODELMAP_E2E_VENV=/some/dir tests/e2e/setup_venv.sh
#   PYTHON=python3.12 tests/e2e/setup_venv.sh
#
# Installation is skipped when the venv's stamp file holds the hash of requirements.txt
# (plus the interpreter version) and the pinned versions are really installed.
# Only PyPI is needed (about 40 s and 750 MB the first time).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
venv="${MODELMAP_E2E_VENV:-$HOME/.cache/modelmap/e2e-venv}"
stamp="$venv/.modelmap-e2e-stamp"

log() { echo "setup_venv: $*" >&2; }

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    for p in python3.11 python3; do
        if command -v "$p" >/dev/null 2>&1; then echo "$p"; return; fi
    done
    log "no python3 found; install python3 (3.10+) first"; exit 1
}

py="$(pick_python)"
py_version="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    log "$py is Python $py_version; LiteLLM 1.106.2 needs 3.10 or newer (set PYTHON=...)"
    exit 1
fi
want="$( { cat "$req"; echo "python=$py_version"; } | sha256sum | cut -d' ' -f1)"

# Every pinned name==version in requirements.txt, checked against what the venv has.
pins_installed() {
    "$venv/bin/python" - "$req" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)$", line)
    if not m:
        continue
    name, pinned = m.group(1), m.group(3)
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != pinned:
        bad.append(f"{name}: want {pinned}, have {have}")
if bad:
    print("setup_venv: venv differs from requirements.txt: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

if [[ -x "$venv/bin/python" && -x "$venv/bin/litellm" && -f "$stamp" ]] \
    && [[ "$(cat "$stamp")" == "$want" ]] && pins_installed; then
    log "venv up to date at $venv (stamp $want), nothing to install"
    echo "$venv"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating venv at $venv with $py (Python $py_version)"
    mkdir -p "$(dirname "$venv")"
    if ! "$py" -m venv "$venv"; then
        log "'$py -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv"
        exit 1
    fi
else
    log "reusing venv at $venv (stamp missing or outdated)"
fi
rm -f "$stamp"
log "installing pinned requirements from $req (from PyPI; ~40 s the first time)"
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q -r "$req" >&2
pins_installed
echo "$want" > "$stamp"
log "done in $(( $(date +%s) - start ))s: $("$venv/bin/python" -m pip --disable-pip-version-check freeze 2>/dev/null \
    | grep -iE '^(litellm|openai|anthropic|pytest|requests)==' | tr '\n' ' ')"
echo "$venv"
