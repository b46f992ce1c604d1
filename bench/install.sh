#!/usr/bin/env bash
# Installs what the benchmark harness needs on a fresh Debian machine, if missing:
# nginx (the reference proxy), its njs module (the reference rewrite), wrk (the load
# generator) and util-linux's taskset (pinning). Idempotent: does nothing when all are
# there. Runs `apt-get update` only when something has to be installed.
set -euo pipefail

njs_module() {
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
        [[ -f $d/ngx_http_js_module.so ]] && { echo "$d/ngx_http_js_module.so"; return 0; }
    done
    return 1
}

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
njs_module >/dev/null || missing+=(libnginx-mod-http-js)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v curl >/dev/null 2>&1 || missing+=(curl)

if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "bench/install: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    # The nginx package would start a system nginx on :80; the harness runs its own.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    # Stop the distribution's service if the package started one (no systemd in most
    # containers: then there is nothing to stop).
    if [[ -f /run/nginx.pid ]]; then
        $sudo kill "$(cat /run/nginx.pid)" 2>/dev/null || true
    fi
fi
njs_module >/dev/null || { echo "bench/install: njs module not found after install" >&2; exit 1; }
