#!/usr/bin/env python3
"""Sends exactly N requests, one after the other on one keep-alive connection, for
bench/callgrind.sh (which counts what the proxy executes for them).

usage: nreq.py HOST:PORT PATH BODY KEY N SENT

POSTs the file BODY (GETs when it is "-") N times; every answer must be 200 and, unless
SENT is "-", say (the mock's x-mock-model) that the gateway received model SENT. Gives
up after 10 minutes. Exits 1 on any wrong answer.
"""
import socket
import sys
import time

from idle import exchange

LIMIT = 600.0


def main():
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    addr, path, body, key, n, sent = sys.argv[1:]
    host, port = addr.rsplit(":", 1)
    if body == "-":
        request = (f"GET {path} HTTP/1.1\r\nhost: bench\r\n"
                   f"authorization: Bearer {key}\r\n\r\n").encode()
    else:
        with open(body, "rb") as f:
            data = f.read()
        request = (f"POST {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {key}\r\n"
                   f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
                   ).encode() + data
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=120) as s:
        for i in range(int(n)):
            if time.monotonic() - t0 > LIMIT:
                sys.exit(f"nreq.py: gave up after {LIMIT:.0f} s at request {i + 1} of {n}")
            status, headers = exchange(s, request)
            got = headers.get("x-mock-model", "")
            if status != 200 or (sent != "-" and got != sent):
                sys.exit(f"nreq.py: request {i + 1}: status {status}, gateway got model {got!r}, "
                         f"expected {sent!r}")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, IndexError) as e:
        sys.exit(f"nreq.py: {e}")
