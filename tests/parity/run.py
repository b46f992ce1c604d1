#!/usr/bin/env python3
"""Differential test: modelmap in front of LiteLLM's own request reading (the oracle).

    client (this script, raw bytes) ──► modelmap ──► oracle.py (LiteLLM's app on uvicorn)
                                   └──────────────► oracle control port (records)

For every generated request the oracle records the model names LiteLLM would authorize
and route on. The invariant, per request:

- modelmap refused it itself (a 4xx with an OpenAI error body) and the oracle received
  nothing for its id; or
- the oracle's names hold, for the team-less key, no internal name of any team, and for
  the ``t-own`` key, no internal name of ``t-other`` and no ``t-own`` public name (which
  modelmap should have rewritten).

Runs the generated requests plus the fixed corpus against modelmap with each uvicorn HTTP
implementation (h11, httptools), then the self-check: the same harness against modelmap
with ``--guard=false`` must report disagreements.

    run.py [--seed S] [--count N] [--report FILE] [--md FILE] [--bin PATH]
Prints `N passed, M failed`; exit 0 only with no disagreement and a self-check that caught one.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import threading
import urllib.request
from pathlib import Path

import h11

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import gen  # noqa: E402

WORKERS = 8
REQ_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


class Proc:
    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None) -> None:
        self.name = name
        self.log = log
        self.f = open(log, "wb")
        self.p = subprocess.Popen(argv, stdout=self.f, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, url: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.p.returncode}):\n{self.log.read_text(errors='replace')[-3000:]}")
            if get(url)[0] == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.f.close()


def start_oracle(python: str, http: str, work: Path) -> tuple[Proc, int, int]:
    port, ctl = free_port(), free_port()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    p = Proc(f"oracle-{http}", [python, str(HERE / "oracle.py"), "--port", str(port), "--control-port", str(ctl),
                                "--http", http], work / f"oracle-{http}.log", env)
    return p, port, ctl


def start_modelmap(binary: str, upstream: int, mapping: Path, work: Path, tag: str, guard: bool) -> tuple[Proc, int]:
    port, admin = free_port(), free_port()
    argv = [binary, "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--upstream",
            f"http://127.0.0.1:{upstream}", "--mapping", str(mapping), "--identity-lookup=false",
            f"--guard={'true' if guard else 'false'}", "--log-level", "warn"]
    p = Proc(f"modelmap-{tag}", argv, work / f"modelmap-{tag}.log")
    p.wait_ready(f"http://127.0.0.1:{admin}/readyz", 30)
    return p, port


def _complete(data: bytes) -> bool:
    """Whether `data` holds one whole HTTP/1.1 response (so no need to wait for a close)."""
    if b"\r\n\r\n" not in data:
        return False
    head, rest = data.split(b"\r\n\r\n", 1)
    if head.startswith(b"HTTP/1.1 101"):
        return True  # an accepted upgrade stays open: the head is all there is to read
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        fields.setdefault(k.strip().lower(), v.strip())
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return rest.endswith(b"0\r\n\r\n")
    if fields.get(b"content-length", b"").isdigit():
        return len(rest) >= int(fields[b"content-length"])
    return False


def send(port: int, raw: bytes, half_close: bool = False) -> tuple[int | None, bytes, str]:
    """Send raw bytes on a fresh connection; read one response (bounded in size and time)."""
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REQ_TIMEOUT) as s:
            s.sendall(raw)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            end = time.monotonic() + REQ_TIMEOUT
            while time.monotonic() < end and len(data) < 1 << 20 and not _complete(data):
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return None, b"", f"{type(e).__name__}: {e}"
    status = None
    if data.startswith(b"HTTP/1."):
        try:
            status = int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            pass
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    return status, body, ""


class Tap:
    """A byte-for-byte TCP relay between modelmap and the oracle that keeps what modelmap
    sent on each upstream connection, so the stream can be re-read with h11 (uvicorn's
    parser): every request must end exactly where the next begins. A request framed so
    that the gateway reads more, less or other requests than modelmap sent is a
    disagreement even when no name is involved (it desyncs a pooled connection)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.streams: list[bytearray] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            buf = bytearray()
            with self.lock:
                self.streams.append(buf)
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                c.close()
                continue
            for s in (c, u):  # without it every small write waits for a delayed ACK (40 ms)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(c, u, buf), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, None), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if keep is not None:
                    keep += d
                dst.sendall(d)
        except OSError:
            pass
        # One side ended: end both, as the gateway does when it closes a connection (a
        # half-open relay would leave modelmap waiting on a pooled connection).
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def reset(self) -> None:
        with self.lock:
            self.streams = []

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def misframed(self) -> dict[str, str]:
        """pid -> what h11 made of the bytes that followed that request on its connection."""
        bad: dict[str, str] = {}
        with self.lock:
            streams = [bytes(s) for s in self.streams]
        for data in streams:
            last_pid = "<first request on the connection>"
            while data:
                conn = h11.Connection(h11.SERVER)
                conn.receive_data(data)
                pid, upgraded, done = None, False, False
                try:
                    while True:
                        ev = conn.next_event()
                        if ev is h11.NEED_DATA or ev is h11.PAUSED:
                            break
                        if isinstance(ev, h11.Request):
                            hd = {k.lower(): v for k, v in ev.headers}
                            pid = hd.get(b"x-parity-id", b"?").decode("latin-1")
                            upgraded = b"upgrade" in hd
                        if isinstance(ev, h11.EndOfMessage):
                            done = True
                            break
                except h11.RemoteProtocolError as e:
                    if last_pid.startswith("<"):
                        m = re.search(rb"x-parity-id: ([^\r\n]+)", data)
                        last_pid = m.group(1).decode("latin-1") if m else last_pid
                    bad[last_pid] = f"the bytes after it on the upstream connection do not parse: {e}: {data[:120]!r}"
                    break
                if upgraded or not done:
                    break  # an upgraded stream, or the connection ended mid-request (the client went away)
                last_pid = pid or last_pid
                data = conn.trailing_data[0]
        return bad


def modelmap_refusal(status: int | None, body: bytes) -> bool:
    """modelmap's own refusal: 4xx with an OpenAI error body carrying a code."""
    if status is None or not 400 <= status < 500:
        return False
    try:
        start = body.index(b"{")
        err = json.loads(body[start : body.rindex(b"}") + 1]).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(err, dict) and bool(err.get("code")) and "message" in err


def run_once(reqs: list[gen.Req], mm_port: int, ctl: int, deadline: float, tap: Tap) -> tuple[list[dict], int]:
    get(f"http://127.0.0.1:{ctl}/reset")
    tap.reset()
    results: dict[str, tuple] = {}

    def one(r: gen.Req):
        if time.monotonic() > deadline:
            return r.pid, (None, b"", "skipped: time budget")
        return r.pid, send(mm_port, r.raw(), r.half_close)

    with cf.ThreadPoolExecutor(WORKERS) as ex:
        for pid, res in ex.map(one, reqs):
            results[pid] = res
    time.sleep(0.3)  # a smuggled or late request still lands in the records
    status, data = get(f"http://127.0.0.1:{ctl}/records", timeout=10)
    records = json.loads(data) if status == 200 else {}
    misframed = tap.misframed()
    outcomes = []
    sent = {r.pid for r in reqs}
    skipped = 0
    for r in reqs:
        st, body, err = results[r.pid]
        if err.startswith("skipped"):
            skipped += 1
            continue
        recs = records.get(r.pid, [])
        o = {"req": r, "status": st, "body": body[:300], "err": err, "records": recs}
        if recs:
            names = [n for rec in recs for n in rec.get("names", [])]
            id_names = frozenset(n for rec in recs for n in rec.get("id_names", []))
            bad = gen.forbidden(names, r.key, id_names)
            o["ok"] = not bad
            o["why"] = f"oracle saw {bad}" if bad else ("forwarded" if not modelmap_refusal(st, body) else "forwarded")
            if not bad and st is not None and st >= 500 and not any(rec.get("no_auth_dependency") for rec in recs):
                o["ok"] = False
                o["why"] = f"the gateway served it (answered 200) but modelmap answered {st}"
            # modelmap refuses before anything goes upstream, answers every client, and
            # forwards a half-closed client's body: anything else is a failure.
            if modelmap_refusal(st, body) and not any(rec.get("no_auth_dependency") for rec in recs):
                # The oracle answers 200 to every request that reaches auth: an OpenAI error
                # here is modelmap's, sent after the request head had already gone upstream.
                o["ok"] = False
                o["why"] = (f"modelmap refused it ({st}) after the head had gone upstream "
                            f"(body keys seen: {sorted({k for rec in recs for k in rec.get('body_keys', [])})[:6]})")
            if o["ok"] and st is None and not err:
                o["ok"] = False
                o["why"] = "the gateway got it, but modelmap sent the client no answer"
            if o["ok"] and r.body and r.method == "POST" and not any(rec.get("body_keys") for rec in recs) \
                    and not any(rec.get("litellm_rejects") or rec.get("no_auth_dependency") for rec in recs) \
                    and r.family in ("half-close",):
                o["ok"] = False
                o["why"] = "after a half-close the gateway got the request without its body"
            if len(recs) > 1:
                o["note"] = f"{len(recs)} requests reached the oracle under this id"
        elif modelmap_refusal(st, body):
            o["ok"], o["why"] = True, "refused by modelmap"
        elif b"Invalid HTTP request received" in body:
            o["ok"] = False
            o["why"] = "uvicorn could not parse what modelmap forwarded (400 Invalid HTTP request received)"
        else:
            o["ok"] = False
            o["why"] = f"not forwarded and not refused with an error body (status {st}, {err or body[:80]!r})"
        if r.pid in misframed:
            o["ok"] = False
            o["why"] = "modelmap's upstream framing: " + misframed[r.pid]
        outcomes.append(o)
    for pid, why in misframed.items():
        if pid not in sent:
            fake = gen.Req("framing-upstream", f"upstream stream after {pid!r}", gen.KEY_NONE, "?", "?")
            outcomes.append({"req": fake, "status": None, "body": b"", "err": "", "records": [], "ok": False,
                             "why": "modelmap's upstream framing: " + why})
    for pid, recs in records.items():
        if pid in sent:
            continue
        names = [n for rec in recs for n in rec.get("names", [])]
        bad = gen.forbidden(names, gen.KEY_NONE)
        if bad:
            fake = gen.Req("unexpected-id", f"requests under unknown id {pid!r}", gen.KEY_NONE, "?", "?")
            outcomes.append({"req": fake, "status": None, "body": b"", "err": "", "records": recs, "ok": False,
                             "why": f"oracle got a request modelmap's client never sent as such; saw {bad}"})
    return outcomes, skipped


def recheck_unanswered(outs: list[dict], oracle_port: int, ctl: int) -> None:
    """A request neither forwarded nor refused is sent straight to the oracle: when the
    gateway itself records nothing for it (uvicorn drops it: for example a websocket
    upgrade whose request line is over 8 KiB gets no answer at all), no name reached
    LiteLLM and modelmap only relayed the gateway's silence."""
    todo = [o for o in outs if not o["ok"] and o["why"].startswith("not forwarded and not refused")]
    if not todo:
        return
    get(f"http://127.0.0.1:{ctl}/reset")
    def one(o: dict) -> None:
        r = o["req"]
        d = gen.Req(r.family, r.desc, r.key, r.method, r.target, r.headers, r.body, r.framing, r.pid + "-direct",
                    r.half_close)
        st, _, err = send(oracle_port, d.raw(), r.half_close)
        o["direct"] = (st, err)

    with cf.ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(one, todo))
    time.sleep(0.2)
    status, data = get(f"http://127.0.0.1:{ctl}/records", timeout=10)
    records = json.loads(data) if status == 200 else {}
    for o in todo:
        if not records.get(o["req"].pid + "-direct"):
            o["ok"] = True
            o["why"] = f"the gateway does not read it either (sent straight to it: status {o['direct'][0]}, no record)"


def replay_refused(outs: list[dict], oracle_port: int, ctl: int) -> None:
    """Send what modelmap refused straight to the oracle, to learn what LiteLLM would have
    read: a refusal is needed when that holds a forbidden name, and costs a legitimate
    request when it holds only names the caller may use (over-refusal, reported)."""
    refused = [o for o in outs if o.get("why") == "refused by modelmap"]
    if not refused:
        return
    get(f"http://127.0.0.1:{ctl}/reset")
    direct = []
    for o in refused:
        r = o["req"]
        d = gen.Req(r.family, r.desc, r.key, r.method, r.target, r.headers, r.body, r.framing, r.pid + "-direct",
                    r.half_close)
        direct.append((o, d))
    with cf.ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(lambda od: send(oracle_port, od[1].raw(), od[1].half_close), direct))
    time.sleep(0.2)
    status, data = get(f"http://127.0.0.1:{ctl}/records", timeout=10)
    records = json.loads(data) if status == 200 else {}
    for o, d in direct:
        recs = records.get(d.pid, [])
        names = [n for rec in recs for n in rec.get("names", [])]
        needed = [n for n in gen.forbidden(names, d.key) if not (d.key == gen.KEY_OWN and n in gen.OWN_PUBLIC)]
        o["direct_names"] = names
        if not recs:
            o["refusal"] = "uvicorn itself refuses it"
        elif needed:
            o["refusal"] = "needed"
        elif any(rec.get("litellm_rejects") for rec in recs):
            o["refusal"] = "LiteLLM rejects it too"
        elif d.key == gen.KEY_OWN and any(n in gen.OWN_PUBLIC for n in names):
            o["refusal"] = "over: an own public name modelmap could have mapped"
        else:
            o["refusal"] = "over: only names this caller may use"


def short_record(recs: list[dict]) -> str:
    keep = ("path", "route", "template", "names", "auth", "fallbacks", "handler_params", "litellm_rejects", "body_keys",
            "no_auth_dependency", "status", "oracle_error", "id_names")
    out = [{k: rec[k] for k in keep if k in rec} for rec in recs]
    s = json.dumps(out, ensure_ascii=False)
    return s if len(s) < 1500 else s[:1500] + "…"


def _kind(o: dict) -> str:
    why = o["why"]
    if why.startswith("modelmap's upstream framing"):
        return "upstream framing: " + why.split(": ", 2)[-1].split(":")[0][:60]
    if why.startswith("oracle saw"):
        r = o["req"]
        who = "t-own key" if r.key == gen.KEY_OWN else "team-less key"
        what = "own public name unmapped" if any(n in gen.OWN_PUBLIC for n in re.findall(r"'([^']+)'", why)) \
            else "another team's internal name"
        return f"{who}: {what} reached LiteLLM"
    return why.split(" (")[0][:80]


def write_reports(all_runs: dict[str, list[dict]], report: Path, md: Path | None, meta: str) -> None:
    lines = [f"# parity report: {meta}", ""]
    md_lines = [f"# Parity report (tests/parity/run.py)", "", meta, ""]
    for label, outs in all_runs.items():
        fails = [o for o in outs if not o["ok"]]
        lines.append(f"## {label}: {len(outs) - len(fails)} passed, {len(fails)} failed")
        by_fam: dict[str, list[dict]] = collections.defaultdict(list)
        for o in fails:
            by_fam[o["req"].family].append(o)
        totals = collections.Counter(o["req"].family for o in outs)
        md_lines.append(f"## {label}: {len(outs) - len(fails)} passed, {len(fails)} failed")
        md_lines.append("")
        refused = collections.Counter(o["req"].family for o in outs if o.get("why") == "refused by modelmap")
        md_lines.append("| family | failed | refused by modelmap | run |")
        md_lines.append("| --- | --- | --- | --- |")
        for fam in sorted(totals):
            md_lines.append(f"| {fam} | {len(by_fam.get(fam, []))} | {refused.get(fam, 0)} | {totals[fam]} |")
        md_lines.append("")
        refusals = collections.Counter(o["refusal"] for o in outs if "refusal" in o)
        if refusals:
            md_lines.append("Refusals, replayed straight to the oracle: " + "; ".join(f"{k} ×{c}" for k, c in refusals.most_common()))
            md_lines.append("")
            over = [o for o in outs if o.get("refusal", "").startswith("over")]
            over_fam = collections.defaultdict(list)
            for o in over:
                over_fam[o["req"].family].append(o)
            if over_fam:
                md_lines.append("Over-refusals (not failures: fail-closed is allowed; each costs a request LiteLLM would have served), one example per family:")
                md_lines.append("")
                for fam in sorted(over_fam):
                    ex = min(over_fam[fam], key=lambda o: len(o["req"].raw()))
                    md_lines.append(f"- {fam} ×{len(over_fam[fam])}: {ex['req'].desc}; LiteLLM would read {ex['direct_names'][:4]}; "
                                    f"modelmap said `{ex['body'][:160]!r}`; request `{ex['req'].raw()[:400]!r}`")
                md_lines.append("")
        kinds = collections.Counter(_kind(o) for o in fails)
        if kinds:
            md_lines.append("Disagreements by kind: " + "; ".join(f"{k} ×{c}" for k, c in kinds.most_common()))
            md_lines.append("")
        for fam in sorted(by_fam):
            fl = by_fam[fam]
            ex = min(fl, key=lambda o: len(o["req"].raw()) if o["req"].method != "?" else 0)
            md_lines.append(f"### {fam} ({len(fl)} failed)")
            md_lines.append("")
            md_lines.append(f"- {ex['req'].desc}; key: {'t-own' if ex['req'].key == gen.KEY_OWN else 'no team'}; "
                            f"modelmap answered {ex['status']}; {ex['why']}")
            raw = ex["req"].raw() if ex["req"].method != "?" else b""
            md_lines.append(f"- request: `{raw[:700]!r}`" + (" …" if len(raw) > 700 else ""))
            md_lines.append(f"- oracle: `{short_record(ex['records'])}`")
            descs = collections.Counter(o["req"].desc.split(" ", 1)[-1][:70] for o in fl)
            md_lines.append(f"- variants seen: " + "; ".join(f"{d} ×{c}" for d, c in descs.most_common(8)))
            md_lines.append("")
        for o in fails:
            r = o["req"]
            lines.append(f"- [{r.family}] {r.pid} {r.desc} key={'t-own' if r.key == gen.KEY_OWN else 'none'} "
                         f"status={o['status']} {o['why']}")
            if r.method != "?":
                lines.append(f"  request: {r.raw()[:2000]!r}")
            lines.append(f"  oracle: {short_record(o['records'])}")
            if o.get("body"):
                lines.append(f"  modelmap body: {o['body'][:200]!r}")
        lines.append("")
    report.write_text("\n".join(lines) + "\n")
    if md is not None:
        md.write_text("\n".join(md_lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=int(os.environ.get("PARITY_SEED", "13")))
    ap.add_argument("--count", type=int, default=int(os.environ.get("PARITY_COUNT", "2000")))
    ap.add_argument("--bin", default=os.environ.get("MODELMAP_BIN", str(REPO / "target/debug/modelmap")))
    ap.add_argument("--report", type=Path, default=Path(os.environ.get("PARITY_REPORT", "target/parity-report.txt")))
    ap.add_argument("--md", type=Path, default=os.environ.get("PARITY_MD") and Path(os.environ["PARITY_MD"]))
    ap.add_argument("--http", default=os.environ.get("PARITY_HTTP", "h11,httptools"))
    ap.add_argument("--budget", type=float, default=float(os.environ.get("PARITY_BUDGET_SECONDS", "110")))
    ap.add_argument("--no-self-check", action="store_true")
    a = ap.parse_args()
    t0 = time.monotonic()
    deadline = t0 + a.budget
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="modelmap-parity-"))
    mapping = work / "mapping.yaml"
    mapping.write_text(gen.mapping_yaml())
    reqs = gen.corpus() + gen.generate(a.seed, a.count)
    impls = [h for h in a.http.split(",") if h]
    procs: list[Proc] = []
    runs: dict[str, list[dict]] = {}
    skipped_total = 0
    try:
        oracles = {}
        for h in impls:
            p, port, ctl = start_oracle(python, h, work)
            procs.append(p)
            oracles[h] = (p, port, ctl)
        for h, (p, port, ctl) in oracles.items():
            p.wait_ready(f"http://127.0.0.1:{ctl}/healthz", 90)
        print(f"parity: oracles up in {time.monotonic() - t0:.1f}s; {len(reqs)} requests "
              f"({len(reqs) - a.count} corpus + {a.count} generated, seed {a.seed}) per run", file=sys.stderr)
        for h, (_, port, ctl) in oracles.items():
            tap = Tap(port)
            mm, mm_port = start_modelmap(a.bin, tap.port, mapping, work, h, guard=True)
            procs.append(mm)
            t = time.monotonic()
            outs, skipped = run_once(reqs, mm_port, ctl, deadline - 15, tap)
            skipped_total += skipped
            recheck_unanswered(outs, port, ctl)
            if h == impls[0]:
                replay_refused(outs, port, ctl)
            runs[f"guard on, uvicorn {h}"] = outs
            print(f"parity: {h}: {sum(o['ok'] for o in outs)} passed, {sum(not o['ok'] for o in outs)} failed, "
                  f"{skipped} skipped, {time.monotonic() - t:.1f}s", file=sys.stderr)
            mm.stop()
        caught = None
        if not a.no_self_check:
            h, (_, port, ctl) = next(iter(oracles.items()))
            tap = Tap(port)
            mm, mm_port = start_modelmap(a.bin, tap.port, mapping, work, "noguard", guard=False)
            procs.append(mm)
            sample = gen.corpus()
            outs, _ = run_once(sample, mm_port, ctl, deadline + 30, tap)
            caught = sum(not o["ok"] for o in outs)
            runs[f"self-check: --guard=false, uvicorn {h} (must fail)"] = outs
            mm.stop()
    finally:
        for p in procs:
            p.stop()
    meta = (f"seed {a.seed}, {len(reqs)} requests per run, modelmap {a.bin}, {time.monotonic() - t0:.1f}s, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    a.report.parent.mkdir(parents=True, exist_ok=True)
    write_reports(runs, a.report, a.md, meta)
    main_runs = [o for k, v in runs.items() if not k.startswith("self-check") for o in v]
    passed = sum(o["ok"] for o in main_runs)
    failed = len(main_runs) - passed
    print(f"parity: report in {a.report}" + (f" and {a.md}" if a.md else ""), file=sys.stderr)
    ok = failed == 0 and skipped_total == 0
    if caught is not None:
        print(f"parity: self-check with --guard=false: {caught} disagreements "
              f"({'caught, as it must' if caught else 'NONE: the harness would miss a hole'})", file=sys.stderr)
        ok = ok and caught > 0
    if skipped_total:
        print(f"parity: {skipped_total} requests skipped: over the time budget", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
