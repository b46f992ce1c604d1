#!/usr/bin/env bash
# Installs what the benchmark harness needs on a fresh Debian machine, if missing:
# nginx (the reference proxy), its njs module and its Lua module with lua-cjson (the two
# reference rewrites), wrk (the load generator), util-linux's taskset (pinning) and curl.
# Idempotent: does nothing when all are there. Runs `apt-get update` only when
# something has to be installed.
#
# `bench/install.sh --module NAME` prints the path of an installed nginx module
# (js, lua, ndk) and exits 1 if it is not there: bench/run.sh loads them from there.
set -euo pipefail

module() { # js | lua | ndk
    local file
    case $1 in
        js) file=ngx_http_js_module.so ;;
        lua) file=ngx_http_lua_module.so ;;
        ndk) file=ndk_http_module.so ;;
        *) return 1 ;;
    esac
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
        [[ -f $d/$file ]] && { echo "$d/$file"; return 0; }
    done
    return 1
}

# Lua's cjson, as the Lua module's LuaJIT finds it (Debian's lua-cjson puts it in the
# multiarch Lua 5.1 directory).
cjson() {
    local d
    for d in /usr/lib/x86_64-linux-gnu/lua/5.1 /usr/lib/aarch64-linux-gnu/lua/5.1 \
        /usr/lib/"$(uname -m)"-linux-gnu/lua/5.1 /usr/local/lib/lua/5.1 /usr/lib/lua/5.1; do
        [[ -f $d/cjson.so ]] && { echo "$d/cjson.so"; return 0; }
    done
    return 1
}

if [[ ${1:-} == --module ]]; then
    module "${2:?usage: bench/install.sh --module js|lua|ndk}"
    exit
fi

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
module js >/dev/null || missing+=(libnginx-mod-http-js)
# The Lua module needs the NDK module (loaded before it) and lua-resty-core, which
# its package depends on.
module ndk >/dev/null || missing+=(libnginx-mod-http-ndk)
module lua >/dev/null || missing+=(libnginx-mod-http-lua)
cjson >/dev/null || missing+=(lua-cjson)
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
for m in js ndk lua; do
    module "$m" >/dev/null || { echo "bench/install: nginx $m module not found after install" >&2; exit 1; }
done
cjson >/dev/null || { echo "bench/install: lua-cjson not found after install" >&2; exit 1; }
