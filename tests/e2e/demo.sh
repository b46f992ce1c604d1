#!/usr/bin/env bash
# A newcomer's demo of what modelmap fixes, on loopback only:
#
#   fake provider (primary-broken: HTTP 500, backup-ok: fine)
#     ◄── real LiteLLM (team model gpt-4.1 = model_name_team-abc_…, fallback -> backup-model)
#           ◄── modelmap (gpt-4.1 -> model_name_team-abc_…)
#
# Then the same curl request for `gpt-4.1` is sent straight to LiteLLM (it fails: the
# fallback is keyed by the internal name) and through modelmap (it succeeds via the fallback).
#
#   tests/e2e/demo.sh
#   MODELMAP_BIN=/path/to/modelmap tests/e2e/demo.sh    # skip cargo build
#   MODELMAP_E2E_KEEP_LOGS=1 tests/e2e/demo.sh          # keep configs and logs
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

bold "1. Python venv with a real LiteLLM (cached after the first run)"
venv="$("$here/setup_venv.sh")"
py="$venv/bin/python"

if [[ -z "${MODELMAP_BIN:-}" ]]; then
    bold "2. cargo build"
    (cd "$repo" && cargo build)
    target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$repo/$target"
    export MODELMAP_BIN="$target/debug/modelmap"
else
    bold "2. using MODELMAP_BIN=$MODELMAP_BIN"
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/modelmap-demo.XXXXXX")"
stack_pid=""
cleanup() {
    local rc=$?
    if [[ -n "$stack_pid" ]] && kill -0 "$stack_pid" 2>/dev/null; then
        bold "Stopping the stack"
        kill -TERM "$stack_pid" 2>/dev/null || true
        wait "$stack_pid" 2>/dev/null || true
    fi
    if [[ "${MODELMAP_E2E_KEEP_LOGS:-}" == 1 || $rc -ne 0 ]]; then
        echo "configs and logs kept in $workdir"
    else
        rm -rf "$workdir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold "3. Starting fake provider, LiteLLM and modelmap on 127.0.0.1 (LiteLLM takes ~5-10 s)"
export PYTHONDONTWRITEBYTECODE=1
"$py" "$here/stack.py" up "$workdir" "$workdir/stack.env" &
stack_pid=$!
for _ in $(seq 1 1200); do
    [[ -f "$workdir/stack.env" ]] && break
    if ! kill -0 "$stack_pid" 2>/dev/null; then
        wait "$stack_pid" || true
        stack_pid=""
        echo "demo: the stack failed to start (see above)" >&2
        exit 1
    fi
    sleep 0.1
done
[[ -f "$workdir/stack.env" ]] || { echo "demo: the stack did not come up in 120 s" >&2; exit 1; }
# shellcheck disable=SC1091
source "$workdir/stack.env"

echo
echo "LiteLLM config ($LITELLM_CONFIG):"
sed 's/^/    /' "$LITELLM_CONFIG"
echo "modelmap mapping ($MAPPING):"
sed 's/^/    /' "$MAPPING"

body="{\"model\": \"$PUBLIC_MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello.\"}]}"

# send URL -> prints status; leaves headers and body in $workdir
send() {
    curl -sS -o "$workdir/body" -D "$workdir/headers" -w '%{http_code}' \
        -H "Authorization: Bearer $MASTER_KEY" -H 'Content-Type: application/json' \
        -d "$body" "$1/v1/chat/completions"
}
header() { grep -i "^$1:" "$workdir/headers" | head -1 | cut -d: -f2- | tr -d ' \r'; }

bold "4. Straight to LiteLLM: POST $LITELLM_URL/v1/chat/completions  model=$PUBLIC_MODEL"
echo "    curl -H 'Authorization: Bearer \$MASTER_KEY' -d '$body' $LITELLM_URL/v1/chat/completions"
status="$(send "$LITELLM_URL")"
echo "HTTP status: $status"
echo "error message:"
"$py" -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["error"]["message"])
except Exception: print(open(sys.argv[1]).read())' "$workdir/body" | sed 's/^/    /'

bold "5. Through modelmap: POST $MODELMAP_URL/v1/chat/completions  model=$PUBLIC_MODEL"
echo "    curl -H 'Authorization: Bearer \$MASTER_KEY' -d '$body' $MODELMAP_URL/v1/chat/completions"
status2="$(send "$MODELMAP_URL")"
echo "HTTP status: $status2"
echo "x-litellm-attempted-fallbacks: $(header x-litellm-attempted-fallbacks)"
echo "x-litellm-model-group: $(header x-litellm-model-group)"
echo "response:"
"$py" -m json.tool "$workdir/body" 2>/dev/null | sed 's/^/    /' || sed 's/^/    /' "$workdir/body"
echo "the fake provider saw (oldest first):"
curl -sS "$PROVIDER_URL/_requests" | "$py" -c 'import json,sys
for e in json.load(sys.stdin): print("    %-16s stream=%-5s -> HTTP %s" % (e["model"], e["stream"], e["status"]))'

if [[ "$status" != 200 && "$status2" == 200 ]]; then
    bold "Result: LiteLLM alone answered $status; through modelmap the same request succeeded via the fallback."
else
    bold "Result: unexpected (direct $status, via modelmap $status2); logs are in $workdir"
    exit 1
fi
