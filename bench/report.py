#!/usr/bin/env python3
"""Turns bench/run.sh's raw results into the Markdown tables and the target verdicts.

usage: report.py RESULTS.tsv MEMORY.tsv [IDLE.tsv] [--smoke]

Exits 1 (after the tables) if any hop served nothing or had errors in any run: a
table with a dead hop in it is no measurement, and a smoke run must not pass with one.
"""
import csv
import statistics
import sys
from collections import defaultdict

SIZE_ORDER = {"get": 0, "1k": 1, "64k": 2, "1m": 3}
SIZE_NAME = {"get": "GET, no body", "1k": "1 KiB", "64k": "64 KiB", "1m": "1 MiB"}
HOP_NAME = {
    "direct": "none (client → mock)",
    "nginx": "nginx `proxy_pass`",
    "njs": "nginx + njs rewrite",
    "lua": "nginx + Lua + cjson rewrite",
    "pingora": "stock Pingora, no filters",
    "modelmap": "modelmap (rewrite + restore)",
    "modelmap-nolog": "modelmap, access log off",
}


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def fmt_us(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.1f} µs"


def fmt_rate(v):
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def dead_runs(rows):
    """Every run in which a hop served no request (or stream event) or had errors."""
    dead = []
    for r in rows:
        served = int(r["requests"])
        errors = int(r["errors"])
        if served == 0 or errors > 0:
            what = "events" if r["kind"] == "sse" else "requests"
            dead.append(f"{r['kind']} {r['hop']} {r['size']} round {r['round']}: "
                        f"{served} {what}, {errors} errors")
    return dead


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    smoke = "--smoke" in sys.argv
    rows = read(args[0])
    memory = read(args[1]) if len(args) > 1 else []
    idle = read(args[2]) if len(args) > 2 else []
    load = defaultdict(list)
    lat = defaultdict(list)
    sse = defaultdict(list)
    hops = []
    for r in rows:
        if r["hop"] not in hops:
            hops.append(r["hop"])
        key = (r["hop"], r["size"])
        {"load": load, "latency": lat, "sse": sse}[r["kind"]][key].append(r)
    sizes = sorted({s for (_, s) in load}, key=lambda s: SIZE_ORDER.get(s, 9))

    stats = {}
    for key, rs in load.items():
        rates = [int(r["requests"]) / float(r["seconds"]) for r in rs]
        reqs = sum(int(r["requests"]) for r in rs)
        cpu = sum(float(r["cpu_s"]) for r in rs)
        lat_rs = lat.get(key, [])
        stats[key] = {
            "rps": statistics.median(rates),
            "rps_min": min(rates),
            "rps_max": max(rates),
            "p50": statistics.median(float(r["p50_us"]) for r in rs),
            "p99": statistics.median(float(r["p99_us"]) for r in rs),
            "cpu": cpu / reqs * 1e6 if reqs else None,
            "peak": max(int(r["peak_kib"]) for r in rs),
            "errors": sum(int(r["errors"]) for r in rs),
            "one": statistics.median(float(r["p50_us"]) for r in lat_rs) if lat_rs else None,
        }

    print("| body | hop | req/s (median) | min–max | p50 | p99 | 1-conn added latency | proxy CPU/req | peak RSS | vs nginx | vs njs | vs Lua |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        base = stats.get(("direct", s))
        ng = stats.get(("nginx", s))
        njs = stats.get(("njs", s))
        lua = stats.get(("lua", s))
        for h in hops:
            st = stats.get((h, s))
            if not st:
                continue
            added = None
            if base and st["one"] is not None and base["one"] is not None and h != "direct":
                added = st["one"] - base["one"]
            direct = h == "direct"
            cells = [
                SIZE_NAME.get(s, s),
                HOP_NAME.get(h, h),
                fmt_rate(st["rps"]),
                f"{fmt_rate(st['rps_min'])}–{fmt_rate(st['rps_max'])}",
                fmt_us(st["p50"]),
                fmt_us(st["p99"]),
                f"{fmt_us(st['one'])} (1-conn p50)" if direct else fmt_us(added),
                "–" if direct else fmt_us(st["cpu"]),
                "–" if direct else f"{st['peak'] / 1024:.1f} MiB",
                "–" if direct or not ng else f"{st['rps'] / ng['rps']:.2f}×",
                "–" if direct or not njs else f"{st['rps'] / njs['rps']:.2f}×",
                "–" if direct or not lua else f"{st['rps'] / lua['rps']:.2f}×",
            ]
            if st["errors"]:
                cells[1] += f" ({st['errors']} errors!)"
            print("| " + " | ".join(cells) + " |")

    sse_stats = {}
    for (h, _), rs in sse.items():
        p50s = [float(r["p50_us"]) for r in rs]
        sse_stats[h] = {
            "p50": statistics.median(p50s),
            "spread": max(p50s) - min(p50s),
            "p99": statistics.median(float(r["p99_us"]) for r in rs),
            "mean": statistics.median(float(r["mean_us"]) for r in rs),
            "events": sum(int(r["requests"]) for r in rs),
        }
    if sse_stats:
        print()
        print("Streams (SSE, 20 events each, one every 2 ms): delay of each event from the mock's write to the client's read")
        print()
        print("| hop | events | p50 | p99 | mean | p50 added over direct |")
        print("|---|---|---|---|---|---|")
        d = sse_stats.get("direct")
        for h in hops:
            st = sse_stats.get(h)
            if not st:
                continue
            added = "–" if h == "direct" or not d else fmt_us(st["p50"] - d["p50"])
            print(f"| {HOP_NAME.get(h, h)} | {st['events']} | {fmt_us(st['p50'])} | {fmt_us(st['p99'])} | {fmt_us(st['mean'])} | {added} |")

    if memory:
        print()
        print("Memory: concurrent uploads through the hop (proxy process peak RSS, VmHWM)")
        print()
        print("| hop | uploads | body | idle RSS | peak RSS | time |")
        print("|---|---|---|---|---|---|")
        for m in memory:
            print(f"| {HOP_NAME.get(m['hop'], m['hop'])} | {m['uploads']} | {int(m['size']) // (1 << 20)} MiB | {int(m['idle_kib']) / 1024:.1f} MiB | {int(m['peak_kib']) / 1024:.1f} MiB | {float(m['seconds']):.2f} s |")

    if idle:
        print()
        print("Idle keep-alive connections: a fresh process, each connection made after the one before "
              "answered its one GET, then left open (worker VmRSS)")
        print()
        print("| hop | connections | still open | RSS before | RSS with them idle | RSS after closing | per idle connection | time to open |")
        print("|---|---|---|---|---|---|---|---|")
        for m in idle:
            print(f"| {HOP_NAME.get(m['hop'], m['hop'])} | {m['conns']} | {m['open']} | "
                  f"{int(m['rss_before_kib']) / 1024:.1f} MiB | {int(m['rss_idle_kib']) / 1024:.1f} MiB | "
                  f"{int(m['rss_closed_kib']) / 1024:.1f} MiB | {float(m['kib_per_conn']):.1f} KiB | "
                  f"{float(m['seconds']):.1f} s |")

    print()
    if smoke:
        print("Targets: not judged in smoke mode (debug build, one short round).")
        return
    print("Targets (issue 15):")

    def verdict(ok, text):
        print(f"- {'MET' if ok else 'NOT MET'}: {text}")

    def hop(h, s):
        return stats.get((h, s))

    mm1, ng1, njs1, lua1 = hop("modelmap", "1k"), hop("nginx", "1k"), hop("njs", "1k"), hop("lua", "1k")
    if mm1 and lua1:
        r = mm1["rps"] / lua1["rps"]
        verdict(r >= 1.3, f"1 KiB throughput {r:.2f}× nginx+Lua (≥ 1.3×)")
    if mm1 and njs1:
        r = mm1["rps"] / njs1["rps"]
        verdict(r >= 1.3, f"1 KiB throughput {r:.2f}× nginx+njs (≥ 1.3×)")
    if mm1 and ng1:
        r = mm1["rps"] / ng1["rps"]
        verdict(r >= 0.8, f"1 KiB throughput {r:.2f}× nginx passthrough (≥ 0.8×)")
        r = mm1["cpu"] / ng1["cpu"]
        verdict(r <= 1.25, f"1 KiB proxy CPU per request {fmt_us(mm1['cpu'])} vs nginx {fmt_us(ng1['cpu'])}: "
                           f"{r:.2f}× (≤ 1.25×)")
    for s in ("64k", "1m"):
        if hop("modelmap", s) and hop("nginx", s):
            r = hop("modelmap", s)["rps"] / hop("nginx", s)["rps"]
            verdict(r >= 1.0, f"{SIZE_NAME[s]} throughput {r:.2f}× nginx passthrough (≥ 1.0×)")
    base = stats.get(("direct", "1m"))
    mm, ng = hop("modelmap", "1m"), hop("nginx", "1m")
    if base and mm and ng and None not in (base["one"], mm["one"], ng["one"]):
        a_mm = mm["one"] - base["one"]
        a_ng = ng["one"] - base["one"]
        verdict(a_mm <= 1.5 * a_ng, f"1 MiB one-connection added latency {fmt_us(a_mm)} vs nginx "
                                    f"{fmt_us(a_ng)} (≤ 1.5×: {fmt_us(1.5 * a_ng)})")
    if "modelmap" in sse_stats and "nginx" in sse_stats:
        m, n = sse_stats["modelmap"], sse_stats["nginx"]
        d = m["p50"] - n["p50"]
        verdict(d <= 20, f"SSE per-event p50 {fmt_us(m['p50'])} vs nginx {fmt_us(n['p50'])}: "
                         f"{fmt_us(d)} more (≤ 20 µs)")
    pg = lambda s: stats.get(("pingora", s))
    for s in ("1k", "1m"):
        if hop("modelmap", s) and pg(s) and hop("nginx", s):
            print(f"- context: at {SIZE_NAME[s]}, stock Pingora alone runs at {pg(s)['rps'] / hop('nginx', s)['rps']:.2f}× nginx "
                  f"(CPU/req {fmt_us(pg(s)['cpu'])}); modelmap at {hop('modelmap', s)['rps'] / pg(s)['rps']:.2f}× stock Pingora "
                  f"(CPU/req {fmt_us(hop('modelmap', s)['cpu'])})")
    for m in idle:
        if m["hop"] == "modelmap":
            per = float(m["kib_per_conn"])
            verdict(per <= 8 and int(m["open"]) == int(m["conns"]),
                    f"{per:.1f} KiB RSS per idle keep-alive connection ({m['open']} of {m['conns']} open; ≤ 8 KiB)")
    for m in memory:
        if m["hop"] == "modelmap":
            peak = int(m["peak_kib"]) / 1024
            verdict(peak < 64, f"peak RSS {peak:.1f} MiB under {m['uploads']} concurrent {int(m['size']) // (1 << 20)} MiB uploads (< 64 MiB)")

if __name__ == "__main__":
    main()
    dead = dead_runs(read([a for a in sys.argv[1:] if not a.startswith("--")][0]))
    if dead:
        print()
        for d in dead:
            print(f"FAILED: {d}")
        sys.exit(1)
