#!/usr/bin/env bash
# The benchmark harness: modelmap beside plain nginx, nginx + njs and nginx + Lua, in one run.
#
#   bench/run.sh            full run (release build, several rounds; a few minutes)
#   bench/run.sh --smoke    seconds: checks every hop answers correctly, one short round
#
# Starts (all on 127.0.0.1, each with one worker):
#   direct    the mock gateway alone (examples/mockgw.rs): the no-hop baseline
#   nginx     nginx proxy_pass, no rewrite
#   pingora   stock Pingora with no filters (examples/pingora_passthrough.rs): what the
#             proxy framework modelmap is built on costs by itself
#   njs       nginx + njs: JSON.parse, map the model, JSON.stringify
#   lua       nginx + Lua + cjson, the OpenResty way (Debian's libnginx-mod-http-lua):
#             ngx.req.read_body, cjson.decode, map the model, cjson.encode,
#             ngx.req.set_body_data, then proxy_pass
#   modelmap  modelmap --threads 1, the bench key's team maps the model (keys table)
# then checks that each hop delivers the right model (the mock echoes what it got), and
# runs wrk against each hop in turn, round after round. Pinning: the servers (proxy and
# mock) share CPU $BENCH_CPU_SERVER (0), the load generator runs on $BENCH_CPU_LOAD (1),
# so a proxy's cost shows directly in throughput, as with "one proxy worker, one core".
# Last, memory per idle keep-alive connection: a fresh nginx and a fresh modelmap each
# get $BENCH_IDLE_CONNS connections (10,000; 200 in smoke mode) that made one request
# each and then stay open (bench/idle.py; the worker's VmRSS before and after).
#
# Environment: BENCH_ROUNDS, BENCH_DURATION (s per wrk run), BENCH_CONNS (32),
# BENCH_SIZES ("get 1k 64k 1m"; get: a GET without a body on a route with no model, the
# cost of the hop itself), BENCH_PORT (first of 12 ports, 18080), BENCH_PROFILE
# (release; debug in smoke mode, which reuses what `cargo test` built),
# BENCH_EXTRA_HOPS ("modelmap-nolog": modelmap with the access log filtered out),
# BENCH_IDLE_CONNS (idle connections per server; 0 skips that step),
# BENCH_OUT (directory for the results; a temporary one by default).
# Exits 1 if any hop answers wrongly, or serves nothing or has errors in any timed run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MODE=full
for arg in "$@"; do
    case $arg in
        --smoke) MODE=smoke ;;
        *) echo "usage: bench/run.sh [--smoke]" >&2; exit 64 ;;
    esac
done

if [[ $MODE == smoke ]]; then
    ROUNDS=${BENCH_ROUNDS:-1}
    DURATION=${BENCH_DURATION:-1}
    SIZES=${BENCH_SIZES:-"1k 1m"}
    PROFILE=${BENCH_PROFILE:-debug}
    LAT_DURATION=1
    SSE_STREAMS=2
    UPLOADS=4
    UPLOAD_SIZE=$((4 * 1024 * 1024))
    IDLE_CONNS=${BENCH_IDLE_CONNS:-200}
    IDLE_BUDGET=30
else
    ROUNDS=${BENCH_ROUNDS:-5}
    DURATION=${BENCH_DURATION:-3}
    SIZES=${BENCH_SIZES:-"get 1k 64k 1m"}
    PROFILE=${BENCH_PROFILE:-release}
    LAT_DURATION=2
    SSE_STREAMS=20
    UPLOADS=32
    UPLOAD_SIZE=$((16 * 1024 * 1024))
    IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
    IDLE_BUDGET=120
fi
CONNS=${BENCH_CONNS:-32}
SSE_EVENTS=20
SSE_GAP_US=2000
PORT=${BENCH_PORT:-18080}
CPU_SERVER=${BENCH_CPU_SERVER:-0}
CPU_LOAD=${BENCH_CPU_LOAD:-1}
if (($(nproc) < 2)); then CPU_LOAD=$CPU_SERVER; fi
EXTRA_HOPS=${BENCH_EXTRA_HOPS:-}

KEY=sk-bench-0001
REQUESTED=gpt-4.1
INTERNAL=model_name_team-bench_f1c7df87-b987-416b-ba42-757afbcc5395
PATH_CHAT=/v1/chat/completions

# PORT + 4 and + 6 are modelmap's admin ports; + 9 to + 11 serve the idle-connection step.
declare -A PORTS=([direct]=$PORT [nginx]=$((PORT + 1)) [njs]=$((PORT + 2)) [modelmap]=$((PORT + 3)) [modelmap-nolog]=$((PORT + 5)) [pingora]=$((PORT + 7)) [lua]=$((PORT + 8)))
HOPS=(direct nginx njs lua pingora modelmap $EXTRA_HOPS)
declare -A PIDS=()

log() { echo "bench: $*" >&2; }
T0=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

bench/install.sh

log "building modelmap, mockgw, benchclient ($PROFILE)"
if [[ $PROFILE == release ]]; then
    cargo build -q --release --bin modelmap --example mockgw --example benchclient \
        --example pingora_passthrough
    BIN=$ROOT/target/release
else
    cargo build -q --bin modelmap --example mockgw --example benchclient \
        --example pingora_passthrough
    BIN=$ROOT/target/debug
fi
CLIENT=$BIN/examples/benchclient

WORK=$(mktemp -d /tmp/modelmap-bench.XXXXXX)
OUT=${BENCH_OUT:-$WORK}
mkdir -p "$OUT"

KEEP_WORK=1
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if ((!KEEP_WORK)); then rm -rf "$WORK"; fi
}
trap cleanup EXIT

for p in "${PORTS[@]}" $((PORT + 4)) $((PORT + 6)) $((PORT + 9)) $((PORT + 10)) $((PORT + 11)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "bench: port $p is in use (set BENCH_PORT)" >&2
        exit 1
    fi
done

# --- inputs -----------------------------------------------------------------
# The mapping gets a directory of its own: modelmap watches the mapping's directory, and
# the logs written next to it would wake the watcher on every request.
mkdir -p "$WORK/mapping"
bench/mapping.sh "$KEY" "$REQUESTED" "$INTERNAL" >"$WORK/mapping/mapping.yaml"

declare -A BYTES=([get]=0 [1k]=1024 [64k]=65536 [1m]=1048576)
for s in $SIZES; do
    [[ $s == get ]] && continue
    "$CLIENT" gen "${BYTES[$s]}" "$REQUESTED" "$WORK/body-$s.json"
done
body_of() { [[ $1 == get ]] && echo - || echo "$WORK/body-$1.json"; }
path_of() { [[ $1 == get ]] && echo /health || echo "$PATH_CHAT"; }
DELTA=$((${#INTERNAL} - ${#REQUESTED}))

MAP_JSON="{\"$REQUESTED\": \"$INTERNAL\"}"
sed "s|__MAP__|$MAP_JSON|" bench/rewrite.js >"$WORK/rewrite.js"
sed "s|__MAP__|$MAP_JSON|" bench/rewrite.lua >"$WORK/mm_rewrite.lua"
NJS_MODULE=$(bench/install.sh --module js)
# The Lua module needs the NDK module loaded before it (undefined symbol otherwise).
NDK_MODULE=$(bench/install.sh --module ndk)
LUA_MODULE=$(bench/install.sh --module lua)
nginx_conf() { # NAME PORT LOAD_MODULE HTTP_EXTRA LOCATION_EXTRA [WORKER_CONNECTIONS]
    mkdir -p "$WORK/nginx-$1-tmp"
    sed -e "s|@WORK@|$WORK|g" -e "s|@NAME@|$1|g" -e "s|@PORT@|$2|g" \
        -e "s|@UPSTREAM_PORT@|${PORTS[direct]}|g" -e "s|@LOAD_MODULE@|$3|" \
        -e "s|@HTTP_EXTRA@|$4|" -e "s|@LOCATION_EXTRA@|$5|" \
        -e "s|@WORKER_CONNECTIONS@|${6:-4096}|" \
        bench/nginx.conf.in >"$WORK/nginx-$1.conf"
}
# Passthrough streams the request body (as modelmap does) instead of spooling it to disk,
# through a 128 KiB buffer: with the default 16 KiB one nginx writes a 1 MiB body in 64
# pieces and loses half its throughput; the baseline should be nginx at its best.
nginx_conf nginx "${PORTS[nginx]}" "" "" "proxy_request_buffering off; client_body_buffer_size 128k;"
nginx_conf njs "${PORTS[njs]}" "load_module $NJS_MODULE;" \
    "js_path \"$WORK\"; js_import rw from rewrite.js; js_set \$mm_body rw.body;" \
    "client_body_buffer_size 2m; client_body_in_single_buffer on; proxy_set_body \$mm_body;"
# Lua: the module is loaded once, by the master when it reads the configuration (the
# workers run as another user, who cannot read $WORK), and the workers inherit it; the
# body is read into one memory buffer as for njs.
nginx_conf lua "${PORTS[lua]}" "load_module $NDK_MODULE; load_module $LUA_MODULE;" \
    "lua_package_path \"$WORK/?.lua;;\"; init_by_lua_block { require(\"mm_rewrite\") }" \
    "client_body_buffer_size 2m; client_body_in_single_buffer on; access_by_lua_block { require(\"mm_rewrite\").body() }"

# --- servers ------------------------------------------------------------------
wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on port $1 after 10 s" >&2
    return 1
}
start() { # HOP COMMAND...
    local hop=$1
    shift
    taskset -c "$CPU_SERVER" "$@" 2>"$WORK/$hop.stderr" &
    PIDS[$hop]=$!
}
start direct "$BIN/examples/mockgw" "127.0.0.1:${PORTS[direct]}"
start nginx nginx -p "$WORK" -c "$WORK/nginx-nginx.conf"
start pingora "$BIN/examples/pingora_passthrough" "127.0.0.1:${PORTS[pingora]}" \
    "127.0.0.1:${PORTS[direct]}"
start njs nginx -p "$WORK" -c "$WORK/nginx-njs.conf"
start lua nginx -p "$WORK" -c "$WORK/nginx-lua.conf"
start modelmap "$BIN/modelmap" --listen "127.0.0.1:${PORTS[modelmap]}" \
    --admin "127.0.0.1:$((PORT + 4))" --upstream "http://127.0.0.1:${PORTS[direct]}" \
    --mapping "$WORK/mapping/mapping.yaml" --threads 1
if [[ " ${HOPS[*]} " == *" modelmap-nolog "* ]]; then
    start modelmap-nolog "$BIN/modelmap" --listen "127.0.0.1:${PORTS[modelmap-nolog]}" \
        --admin "127.0.0.1:$((PORT + 6))" --upstream "http://127.0.0.1:${PORTS[direct]}" \
        --mapping "$WORK/mapping/mapping.yaml" --threads 1 --log-level "warn,modelmap::access=off"
fi
for hop in "${HOPS[@]}"; do wait_port "${PORTS[$hop]}"; done

# The process that does a hop's work: nginx's one worker, else the process itself.
worker_of() { # PID IS_NGINX
    local pid=$1 child=""
    if (($2)); then
        for _ in $(seq 1 50); do
            child=$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -m1 . || true)
            [[ -n $child ]] && break
            sleep 0.1
        done
        pid=$child
    fi
    echo "$pid"
}
is_nginx() { [[ $1 == nginx || $1 == njs || $1 == lua ]] && echo 1 || echo 0; }
declare -A WORKER=()
for hop in "${HOPS[@]}"; do
    WORKER[$hop]=$(worker_of "${PIDS[$hop]}" "$(is_nginx "$hop")")
done
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
peak_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

# --- correctness ----------------------------------------------------------------
log "checking every hop's answers"
FAILED=0
check() { # HOP what-the-gateway-should-get what-the-client-should-get bytes SIZE
    local hop=$1 sent=$2 returned=$3 bytes=$4 body path out
    body=$(body_of "$5")
    path=$(path_of "$5")
    # The mock parses the whole body and reports its top-level model, wherever it is
    # (cjson reorders keys); the timed runs below do without.
    [[ $5 == get ]] || path+="?whole=1"
    if out=$(taskset -c "$CPU_LOAD" "$CLIENT" check "127.0.0.1:${PORTS[$hop]}" "$path" \
        "$body" "$KEY" "$sent" "$returned" "$bytes"); then
        log "  $hop $5: $out"
    else
        log "  $hop $5: $out"
        FAILED=1
    fi
}
for s in $SIZES; do
    n=${BYTES[$s]}
    if [[ $s == get ]]; then
        for hop in "${HOPS[@]}"; do check "$hop" - - 0 "$s"; done
        continue
    fi
    check direct "$REQUESTED" "$REQUESTED" "$n" "$s"
    check nginx "$REQUESTED" "$REQUESTED" "$n" "$s"
    check pingora "$REQUESTED" "$REQUESTED" "$n" "$s"
    # njs and Lua re-serialise (escapes normalised), so only the model is checked there.
    check njs "$INTERNAL" "$INTERNAL" - "$s"
    check lua "$INTERNAL" "$INTERNAL" - "$s"
    for hop in modelmap $EXTRA_HOPS; do
        check "$hop" "$INTERNAL" "$REQUESTED" $((n + DELTA)) "$s"
    done
done
sse() { # HOP STREAMS RETURNED
    taskset -c "$CPU_LOAD" "$CLIENT" sse "127.0.0.1:${PORTS[$1]}" "$KEY" "$REQUESTED" \
        "$2" "$SSE_EVENTS" "$SSE_GAP_US" "$3"
}
declare -A SSE_RETURNS=([direct]=$REQUESTED [nginx]=$REQUESTED [njs]=$INTERNAL [lua]=$INTERNAL [pingora]=$REQUESTED [modelmap]=$REQUESTED [modelmap-nolog]=$REQUESTED)
for hop in "${HOPS[@]}"; do
    if out=$(sse "$hop" 1 "${SSE_RETURNS[$hop]}"); then
        log "  $hop stream: $out"
    else
        log "  $hop stream: $out"
        FAILED=1
    fi
done
if ((FAILED)); then
    log "FAILED: a hop answered wrongly (logs in $WORK)"
    trap - EXIT
    cleanup
    exit 1
fi

# --- throughput ---------------------------------------------------------------------
RESULTS=$OUT/results.tsv
printf 'kind\thop\tsize\tround\trequests\tseconds\tp50_us\tp99_us\tmean_us\tcpu_s\tpeak_kib\tmock_cpu_s\terrors\n' >"$RESULTS"
wrk_run() { # KIND HOP SIZE ROUND CONNS SECONDS
    local kind=$1 hop=$2 size=$3 round=$4 conns=$5 secs=$6
    local worker=${WORKER[$hop]} mock=${WORKER[direct]} c0 c1 m0 m1 out line
    reset_peak "$worker"
    c0=$(cpu_ticks "$worker")
    m0=$(cpu_ticks "$mock")
    out=$(BENCH_BODY=$(body_of "$size") BENCH_KEY=$KEY taskset -c "$CPU_LOAD" \
        wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s -s bench/post.lua \
        "http://127.0.0.1:${PORTS[$hop]}$(path_of "$size")")
    c1=$(cpu_ticks "$worker")
    m1=$(cpu_ticks "$mock")
    line=$(grep '^RESULT' <<<"$out") || { log "wrk printed no result: $out"; return 1; }
    eval "$(sed 's/^RESULT //; s/ /;/g' <<<"$line")"
    # shellcheck disable=SC2154 # set by the eval of wrk's RESULT line
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$hop" "$size" "$round" \
        "$requests" "$(awk "BEGIN { print $duration_us / 1e6 }")" "$p50_us" "$p99_us" "$mean_us" \
        "$(awk "BEGIN { print ($c1 - $c0) / $CLK_TCK }")" "$(peak_kib "$worker")" \
        "$(awk "BEGIN { print ($m1 - $m0) / $CLK_TCK }")" "$((socket_errors + status_errors))" >>"$RESULTS"
}

log "throughput: $ROUNDS round(s) x ${DURATION}s per hop and body, $CONNS connections"
for round in $(seq 1 "$ROUNDS"); do
    for s in $SIZES; do
        # Rotate the order each round so no hop always runs first (or after another).
        n=${#HOPS[@]}
        for i in $(seq 0 $((n - 1))); do
            hop=${HOPS[$(((i + round - 1) % n))]}
            wrk_run load "$hop" "$s" "$round" "$CONNS" "$DURATION"
        done
    done
    log "  round $round done"
done

log "one-connection latency"
LAT_ROUNDS=$(((ROUNDS + 1) / 2))
for round in $(seq 1 "$LAT_ROUNDS"); do
    for s in $SIZES; do
        for hop in "${HOPS[@]}"; do
            wrk_run latency "$hop" "$s" "$round" 1 "$LAT_DURATION"
        done
    done
done

log "streams: $SSE_STREAMS stream(s) of $SSE_EVENTS events, one every ${SSE_GAP_US}us"
SSE_ROUNDS=$(((ROUNDS + 1) / 2))
for round in $(seq 1 "$SSE_ROUNDS"); do
    for hop in "${HOPS[@]}"; do
        out=$(sse "$hop" "$SSE_STREAMS" "${SSE_RETURNS[$hop]}") || { log "$hop: $out"; FAILED=1; continue; }
        eval "$(sed 's/^SSE //; s/ /;/g' <<<"$out")"
        # shellcheck disable=SC2154
        printf 'sse\t%s\tsse\t%s\t%s\t0\t%s\t%s\t%s\t0\t0\t0\t0\n' "$hop" "$round" "$events" \
            "$p50_us" "$p99_us" "$mean_us" >>"$RESULTS"
    done
done

log "memory: $UPLOADS concurrent uploads of $((UPLOAD_SIZE / 1024 / 1024)) MiB"
MEMORY=$OUT/memory.tsv
printf 'hop\tuploads\tsize\tidle_kib\tpeak_kib\tseconds\n' >"$MEMORY"
for hop in modelmap nginx; do
    worker=${WORKER[$hop]}
    idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$worker/status")
    reset_peak "$worker"
    sent=$([[ $hop == modelmap ]] && echo "$INTERNAL" || echo "$REQUESTED")
    if out=$(taskset -c "$CPU_LOAD" "$CLIENT" upload "127.0.0.1:${PORTS[$hop]}" "$KEY" \
        "$REQUESTED" "$UPLOADS" "$UPLOAD_SIZE" "$sent"); then
        secs=$(sed 's/.*secs=//' <<<"$out")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$hop" "$UPLOADS" "$UPLOAD_SIZE" "$idle" \
            "$(peak_kib "$worker")" "$secs" >>"$MEMORY"
    else
        log "$hop upload: $out"
        FAILED=1
    fi
done

# --- idle keep-alive connections -----------------------------------------------------
# A fresh nginx passthrough and a fresh modelmap (what the runs above left in their heaps
# would be reused and hide the cost), IDLE_CONNS connections each, made one after the
# other, each after one GET: the worker's VmRSS grows by what an idle connection costs.
IDLE=$OUT/idle.tsv
printf 'hop\tconns\topen\trss_before_kib\trss_idle_kib\trss_closed_kib\tkib_per_conn\tseconds\n' >"$IDLE"
stop() { # HOP
    kill "${PIDS[$1]}" 2>/dev/null || true
    wait "${PIDS[$1]}" 2>/dev/null || true
    unset "PIDS[$1]"
}
if ((IDLE_CONNS > 0)); then
    # Each idle connection is a descriptor in the server and one in the client: raise
    # the limit (the servers started below inherit it), or measure fewer if it cannot be.
    need=$((IDLE_CONNS + 512))
    if [[ $(ulimit -n) != unlimited ]] && (($(ulimit -n) < need)); then
        ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    fi
    limit=$(ulimit -n)
    [[ $limit == unlimited ]] && limit=$((need + 1))
    if ((limit < need)); then
        log "idle: open-file limit $limit: measuring $((limit - 512)) connections instead of $IDLE_CONNS"
        IDLE_CONNS=$((limit - 512))
    fi
    log "idle: $IDLE_CONNS idle keep-alive connections to a fresh nginx and a fresh modelmap"
    # nginx starts closing idle keep-alive connections when fewer than 1/16 of its
    # connection slots are free ("worker_connections are not enough, reusing
    # connections"): twice the slots needed keeps it from that.
    nginx_conf nginx-idle $((PORT + 9)) "" "" \
        "proxy_request_buffering off; client_body_buffer_size 128k;" $((2 * IDLE_CONNS + 256))
    start nginx-idle nginx -p "$WORK" -c "$WORK/nginx-nginx-idle.conf"
    start modelmap-idle "$BIN/modelmap" --listen "127.0.0.1:$((PORT + 10))" \
        --admin "127.0.0.1:$((PORT + 11))" --upstream "http://127.0.0.1:${PORTS[direct]}" \
        --mapping "$WORK/mapping/mapping.yaml" --threads 1
    for spec in "nginx-idle:nginx:$((PORT + 9)):1" "modelmap-idle:modelmap:$((PORT + 10)):0"; do
        IFS=: read -r hop name port nginx <<<"$spec"
        wait_port "$port"
        worker=$(worker_of "${PIDS[$hop]}" "$nginx")
        if taskset -c "$CPU_LOAD" python3 bench/idle.py "$name" "127.0.0.1:$port" /health "$KEY" \
            "$worker" "$IDLE_CONNS" "$IDLE_BUDGET" >>"$IDLE" 2>"$WORK/idle-$name.stderr"; then
            log "  $name: $(tail -1 "$IDLE" | cut -f7) KiB per idle connection"
        else
            log "  $name: $(cat "$WORK/idle-$name.stderr")"
            FAILED=1
        fi
        stop "$hop"
    done
fi

# --- report -------------------------------------------------------------------------
# The report exits 1 if a hop served nothing or had errors in any run.
REPORT_OK=1
python3 bench/report.py "$RESULTS" "$MEMORY" "$IDLE" $([[ $MODE == smoke ]] && echo --smoke) \
    >"$OUT/report.md" || REPORT_OK=0
{
    echo "modelmap benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), mode $MODE, $PROFILE build"
    echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -sr); load average at start: $LOAD_BEFORE, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: servers (proxy + mock) on CPU $CPU_SERVER, wrk on CPU $CPU_LOAD; $CONNS connections; $ROUNDS round(s) of ${DURATION}s"
    echo
    cat "$OUT/report.md"
} | tee "$OUT/table.md"
if ((!REPORT_OK)); then
    log "FAILED: a hop served nothing or had errors (see the table; logs in $WORK)"
    exit 1
fi
if ((FAILED)); then
    log "FAILED: a hop answered wrongly (logs in $WORK)"
    exit 1
fi
if [[ $MODE == smoke && $OUT == "$WORK" ]]; then
    # A passing smoke run leaves nothing behind (CI runs it every time).
    KEEP_WORK=0
    log "smoke run passed ($((SECONDS - T0)) s)"
else
    log "results in $OUT ($((SECONDS - T0)) s)"
fi
