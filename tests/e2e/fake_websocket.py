"""The server side of RFC 6455 websockets, as much as the fake provider's realtime route needs.

Stdlib only, like the rest of the fake provider: the opening handshake (the
``Sec-WebSocket-Accept`` digest), reading masked client frames (text, binary, ping,
close; fragmented messages joined) and writing unmasked server frames. No extensions
are negotiated, so ``permessage-deflate`` offered by a client is declined and frames
arrive uncompressed.
"""

from __future__ import annotations

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 16 * 1024 * 1024  # a realtime event is small; refuse anything silly


class Closed(Exception):
    """The peer closed the connection (close frame or EOF)."""


def accept_key(client_key: str) -> str:
    return base64.b64encode(hashlib.sha1(client_key.strip().encode() + GUID).digest()).decode()


def _read_exact(rfile, n: int) -> bytes:
    data = rfile.read(n)
    if data is None or len(data) < n:
        raise Closed("EOF inside a frame")
    return data


def read_frame(rfile) -> tuple[bool, int, bytes]:
    """One frame: (fin, opcode, unmasked payload)."""
    b0, b1 = _read_exact(rfile, 2)
    fin, opcode, masked, length = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(rfile, 8))
    if length > MAX_MESSAGE:
        raise Closed(f"frame of {length} bytes")
    mask = _read_exact(rfile, 4) if masked else b""
    payload = _read_exact(rfile, length)
    if masked:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return fin, opcode, payload


def write_frame(wfile, opcode: int, payload: bytes) -> None:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    wfile.write(head + payload)
    wfile.flush()


def read_message(rfile, wfile) -> tuple[int, bytes]:
    """The next text or binary message; answers pings; raises Closed on a close frame."""
    parts: list[bytes] = []
    first_op = None
    while True:
        fin, opcode, payload = read_frame(rfile)
        if opcode == OP_PING:
            write_frame(wfile, OP_PONG, payload)
            continue
        if opcode == OP_PONG:
            continue
        if opcode == OP_CLOSE:
            try:
                write_frame(wfile, OP_CLOSE, payload[:2])
            except OSError:
                pass
            raise Closed("close frame")
        if opcode != OP_CONT:
            first_op = opcode
        parts.append(payload)
        if sum(map(len, parts)) > MAX_MESSAGE:
            raise Closed("message too large")
        if fin:
            return first_op or OP_TEXT, b"".join(parts)


def send_text(wfile, text: str) -> None:
    write_frame(wfile, OP_TEXT, text.encode())


def send_close(wfile, code: int = 1000) -> None:
    write_frame(wfile, OP_CLOSE, struct.pack("!H", code))
