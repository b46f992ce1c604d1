#!/usr/bin/env python3
"""Memory per idle keep-alive connection, for bench/run.sh.

usage: idle.py HOP HOST:PORT PATH KEY PID CONNS BUDGET_S

Warms the server up (a few requests on a few connections, closed again), reads the
VmRSS of process PID (the proxy's worker), then opens CONNS connections one after the
other, each sending one GET of PATH and reading its whole answer (which must be 200)
and then left open and idle. One at a time, so that the proxy's upstream pool stays
at one connection and what grows is the downstream side alone. After a pause it reads
VmRSS again, counts the connections the server still holds open (a peek that finds no
end of stream), closes them all and reads VmRSS a last time.

Prints one tab-separated row:
  hop conns open rss_before_kib rss_idle_kib rss_closed_kib kib_per_conn seconds
where kib_per_conn = (rss_idle - rss_before) / open. Gives up opening connections
after BUDGET_S seconds (the row then says how many it opened). Exits 1 if fewer than
CONNS connections were opened and still open at the measurement, or any answer was
wrong: the row is printed all the same.
"""
import errno
import socket
import sys
import time

TIMEOUT = 5.0
SETTLE = 1.0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def exchange(sock, request):
    """Sends one request, reads one whole answer; returns its status code and its
    headers (names in lower case). Also used by bench/nreq.py."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the answer's head")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("answer head larger than 64 KiB")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        left = int(headers["content-length"]) - len(rest)
        while left > 0:
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                raise ConnectionError("connection closed inside the answer's body")
            left -= len(chunk)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside the chunked body")
            rest = rest[-16:] + chunk
    else:
        raise ConnectionError("answer without a length: cannot stay open")
    if headers.get("connection", "").lower() == "close":
        raise ConnectionError("the server closes the connection after one answer")
    return status, headers


def still_open(sock):
    # Non-blocking: a socket with a timeout would wait for data that never comes.
    sock.setblocking(False)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return True
        return False
    return len(data) > 0


def main():
    if len(sys.argv) != 8:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    hop, addr, path, key, pid, conns, budget = sys.argv[1:]
    host, port = addr.rsplit(":", 1)
    target = (host, int(port))
    pid, conns, budget = int(pid), int(conns), float(budget)
    request = (f"GET {path} HTTP/1.1\r\nhost: bench\r\n"
               f"authorization: Bearer {key}\r\n\r\n").encode()
    failures = []

    # Warm-up: what the first requests allocate once is not a per-connection cost.
    for _ in range(4):
        with socket.create_connection(target, timeout=TIMEOUT) as s:
            for _ in range(5):
                exchange(s, request)
    time.sleep(SETTLE)
    before = rss_kib(pid)

    t0 = time.monotonic()
    socks = []
    for i in range(conns):
        if time.monotonic() - t0 > budget:
            failures.append(f"gave up after {budget:.0f} s with {len(socks)} connections open")
            break
        try:
            s = socket.create_connection(target, timeout=TIMEOUT)
        except OSError as e:
            failures.append(f"connection {i + 1}: {e}")
            break
        socks.append(s)
        try:
            status, _ = exchange(s, request)
        except (OSError, ValueError, IndexError) as e:
            failures.append(f"connection {i + 1}: {e}")
            break
        if status != 200:
            failures.append(f"connection {i + 1}: status {status}")
            break
    opened = time.monotonic() - t0
    time.sleep(SETTLE)
    idle = rss_kib(pid)
    alive = sum(1 for s in socks if still_open(s))
    if alive < conns and not failures:
        failures.append(f"the server closed {len(socks) - alive} of {len(socks)} idle connections")
    for s in socks:
        s.close()
    time.sleep(SETTLE)
    closed = rss_kib(pid)
    per = (idle - before) / alive if alive else 0.0
    print(f"{hop}\t{conns}\t{alive}\t{before}\t{idle}\t{closed}\t{per:.2f}\t{opened:.2f}")
    for f in failures:
        print(f"idle.py {hop}: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError, ValueError) as e:
        print(f"idle.py: {e}", file=sys.stderr)
        sys.exit(1)
