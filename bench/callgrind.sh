#!/usr/bin/env bash
# Instructions per request (valgrind --tool=callgrind) of nginx and modelmap, for a GET,
# a 1 KiB POST and a 1 MiB POST: the CPU cost of one request without the noise of a
# shared machine. Run by hand, not in CI: a few minutes.
#
#   bench/callgrind.sh
#
# Each proxy runs alone under callgrind, one at a time, with one worker: nginx
# passthrough (bench/nginx.conf.in as bench/run.sh uses it, as one process:
# `master_process off`), modelmap release `--threads 1` with the bench mapping (access
# log on, as in bench/run.sh). The mock gateway (examples/mockgw.rs) and the client
# (bench/nreq.py: requests one after the other on one keep-alive connection) run
# outside valgrind, so only the proxy is counted, all of its threads. For each body:
# warm-up requests, counters zeroed, N requests, dump; zeroed again, 2N requests, dump;
# instructions per request = (second dump - first) / N, so what does not grow with the
# requests (the dump itself, timers) cancels out. Every answer must be 200 and the
# gateway must have received the right model.
#
# Environment: CALLGRIND_HOPS ("nginx modelmap"; also lua, njs, pingora: the other hops
# of bench/run.sh), CALLGRIND_SIZES ("get 1k 1m"), CALLGRIND_N (2000, for GET and
# 1 KiB), CALLGRIND_N_1M (50), BENCH_PORT (first of 7 ports, 18280), BENCH_OUT
# (directory for callgrind.tsv, the table and the dumps; a temporary one by default).
# Prints a Markdown table: request, instructions per request for each hop, ratio
# modelmap / nginx.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

HOPS=(${CALLGRIND_HOPS:-nginx modelmap})
SIZES=${CALLGRIND_SIZES:-"get 1k 1m"}
N_SMALL=${CALLGRIND_N:-2000}
N_1M=${CALLGRIND_N_1M:-50}
PORT=${BENCH_PORT:-18280}

KEY=sk-bench-0001
REQUESTED=gpt-4.1
INTERNAL=model_name_team-bench_f1c7df87-b987-416b-ba42-757afbcc5395
PATH_CHAT=/v1/chat/completions
declare -A PORTS=([direct]=$PORT [nginx]=$((PORT + 1)) [lua]=$((PORT + 2)) [njs]=$((PORT + 3)) [pingora]=$((PORT + 4)) [modelmap]=$((PORT + 5)))
ADMIN=$((PORT + 6))

log() { echo "callgrind: $*" >&2; }
die() { log "$*"; exit 1; }

command -v valgrind >/dev/null 2>&1 && command -v callgrind_control >/dev/null 2>&1 ||
    die "valgrind is not installed (apt-get install valgrind)"
for hop in "${HOPS[@]}"; do
    [[ -n ${PORTS[$hop]:-} && $hop != direct ]] || die "unknown hop $hop (nginx, lua, njs, pingora, modelmap)"
done
for p in "${PORTS[@]}" "$ADMIN"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is in use (set BENCH_PORT)"
    fi
done
bench/install.sh

log "building modelmap, mockgw, benchclient (release)"
cargo build -q --release --bin modelmap --example mockgw --example benchclient \
    $([[ " ${HOPS[*]} " == *" pingora "* ]] && echo --example pingora_passthrough)
BIN=$ROOT/target/release

WORK=$(mktemp -d /tmp/modelmap-callgrind.XXXXXX)
OUT=${BENCH_OUT:-$WORK}
mkdir -p "$OUT"
declare -A PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# --- inputs (as bench/run.sh makes them) ----------------------------------------------
mkdir -p "$WORK/mapping"
bench/mapping.sh "$KEY" "$REQUESTED" "$INTERNAL" >"$WORK/mapping/mapping.yaml"
declare -A BYTES=([get]=0 [1k]=1024 [64k]=65536 [1m]=1048576)
for s in $SIZES; do
    [[ -n ${BYTES[$s]:-} ]] || die "unknown size $s (get, 1k, 64k, 1m)"
    [[ $s == get ]] && continue
    "$BIN/examples/benchclient" gen "${BYTES[$s]}" "$REQUESTED" "$WORK/body-$s.json"
done
MAP_JSON="{\"$REQUESTED\": \"$INTERNAL\"}"
sed "s|__MAP__|$MAP_JSON|" bench/rewrite.js >"$WORK/rewrite.js"
sed "s|__MAP__|$MAP_JSON|" bench/rewrite.lua >"$WORK/mm_rewrite.lua"
nginx_conf() { # NAME LOAD_MODULE HTTP_EXTRA LOCATION_EXTRA
    mkdir -p "$WORK/nginx-$1-tmp"
    sed -e "s|@WORK@|$WORK|g" -e "s|@NAME@|$1|g" -e "s|@PORT@|${PORTS[$1]}|g" \
        -e "s|@UPSTREAM_PORT@|${PORTS[direct]}|g" -e "s|@LOAD_MODULE@|$2|" \
        -e "s|@HTTP_EXTRA@|$3|" -e "s|@LOCATION_EXTRA@|$4|" -e "s|@WORKER_CONNECTIONS@|1024|" \
        bench/nginx.conf.in >"$WORK/nginx-$1.conf"
}
nginx_conf nginx "" "" "proxy_request_buffering off; client_body_buffer_size 128k;"
nginx_conf njs "load_module $(bench/install.sh --module js);" \
    "js_path \"$WORK\"; js_import rw from rewrite.js; js_set \$mm_body rw.body;" \
    "client_body_buffer_size 2m; client_body_in_single_buffer on; proxy_set_body \$mm_body;"
nginx_conf lua "load_module $(bench/install.sh --module ndk); load_module $(bench/install.sh --module lua);" \
    "lua_package_path \"$WORK/?.lua;;\"; init_by_lua_block { require(\"mm_rewrite\") }" \
    "client_body_buffer_size 2m; client_body_in_single_buffer on; access_by_lua_block { require(\"mm_rewrite\").body() }"

wait_port() { # PORT SECONDS
    local i
    for i in $(seq 1 $((10 * $2))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1 after $2 s (logs in $WORK)"
}

"$BIN/examples/mockgw" "127.0.0.1:${PORTS[direct]}" 2>"$WORK/mock.stderr" &
PIDS[direct]=$!
wait_port "${PORTS[direct]}" 10

# --- counting -------------------------------------------------------------------------
# The newest dump's total instruction count, once callgrind has finished writing it.
dump() { # HOP PID COUNT(dumps so far, this one included)
    local file="$WORK/cg-$1.out.$3" i
    timeout 60 callgrind_control --dump "$2" >/dev/null 2>>"$WORK/callgrind_control.log" ||
        die "callgrind_control --dump $2 failed (see $WORK/callgrind_control.log)"
    for i in $(seq 1 300); do
        if [[ -f $file ]] && grep -q '^totals:' "$file"; then
            awk '/^summary:/ { print $2; exit }' "$file"
            return 0
        fi
        sleep 0.1
    done
    die "no dump $file after 30 s"
}
zero() { # PID
    timeout 60 callgrind_control --zero "$1" >/dev/null 2>>"$WORK/callgrind_control.log" ||
        die "callgrind_control --zero $1 failed (see $WORK/callgrind_control.log)"
}
requests() { # HOP SIZE COUNT
    local path body sent
    path=$([[ $2 == get ]] && echo /health || echo "$PATH_CHAT")
    body=$([[ $2 == get ]] && echo - || echo "$WORK/body-$2.json")
    case $1 in
        nginx | pingora) sent=$REQUESTED ;;
        modelmap) sent=$INTERNAL ;;
        # cjson reorders keys: the mock parses the whole body to find the top-level model.
        lua | njs) sent=$INTERNAL path+="?whole=1" ;;
    esac
    [[ $2 == get ]] && sent=-
    python3 bench/nreq.py "127.0.0.1:${PORTS[$1]}" "$path" "$body" "$KEY" "$3" "$sent" ||
        die "$1 $2: wrong answer (logs in $WORK)"
}

RESULTS=$OUT/callgrind.tsv
printf 'hop\tsize\tn\tinstr_n\tinstr_2n\tinstr_per_req\n' >"$RESULTS"
VG=(valgrind --tool=callgrind --log-file="$WORK/valgrind-%p.log")
for hop in "${HOPS[@]}"; do
    out="$WORK/cg-$hop.out"
    case $hop in
        nginx | lua | njs)
            "${VG[@]}" --callgrind-out-file="$out" \
                nginx -p "$WORK" -c "$WORK/nginx-$hop.conf" -g "master_process off;" \
                2>"$WORK/$hop.stderr" &
            ;;
        pingora)
            "${VG[@]}" --callgrind-out-file="$out" "$BIN/examples/pingora_passthrough" \
                "127.0.0.1:${PORTS[pingora]}" "127.0.0.1:${PORTS[direct]}" 2>"$WORK/$hop.stderr" &
            ;;
        modelmap)
            "${VG[@]}" --callgrind-out-file="$out" "$BIN/modelmap" \
                --listen "127.0.0.1:${PORTS[modelmap]}" --admin "127.0.0.1:$ADMIN" \
                --upstream "http://127.0.0.1:${PORTS[direct]}" \
                --mapping "$WORK/mapping/mapping.yaml" --threads 1 2>"$WORK/$hop.stderr" &
            ;;
    esac
    pid=$!
    PIDS[$hop]=$pid
    wait_port "${PORTS[$hop]}" 120
    log "$hop (pid $pid) under callgrind"
    dumps=0
    for s in $SIZES; do
        n=$([[ $s == 1m ]] && echo "$N_1M" || echo "$N_SMALL")
        requests "$hop" "$s" $(((n + 9) / 10))
        zero "$pid"
        requests "$hop" "$s" "$n"
        dumps=$((dumps + 1))
        a=$(dump "$hop" "$pid" "$dumps")
        zero "$pid"
        requests "$hop" "$s" $((2 * n))
        dumps=$((dumps + 1))
        b=$(dump "$hop" "$pid" "$dumps")
        per=$(((b - a) / n))
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$hop" "$s" "$n" "$a" "$b" "$per" >>"$RESULTS"
        log "  $s: $per instructions per request ($n requests: $a, $((2 * n)): $b)"
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$hop]"
done

# --- table ----------------------------------------------------------------------------
python3 - "$RESULTS" <<'EOF' | tee "$OUT/callgrind.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
hops = list(dict.fromkeys(r["hop"] for r in rows))
sizes = list(dict.fromkeys(r["size"] for r in rows))
name = {"get": "GET, no body", "1k": "1 KiB POST", "64k": "64 KiB POST", "1m": "1 MiB POST"}
per = {(r["hop"], r["size"]): int(r["instr_per_req"]) for r in rows}
ratio = "nginx" in hops and "modelmap" in hops
print("| request | " + " | ".join(f"{h} instr/req" for h in hops) + (" | modelmap / nginx |" if ratio else " |"))
print("|---" * (1 + len(hops) + ratio) + "|")
for s in sizes:
    cells = [name.get(s, s)] + [f"{per[(h, s)] / 1000:,.1f}k" if (h, s) in per else "–" for h in hops]
    if ratio:
        ng, mm = per.get(("nginx", s)), per.get(("modelmap", s))
        cells.append(f"{mm / ng:.2f}×" if ng and mm else "–")
    print("| " + " | ".join(cells) + " |")
EOF
log "results in $OUT (dumps, for callgrind_annotate, and logs in $WORK)"
