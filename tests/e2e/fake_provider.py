#!/usr/bin/env python3
"""A tiny OpenAI-compatible provider for the end-to-end tests (stdlib only).

LiteLLM forwards chat completions here. Every request's model is recorded and can be
read back at ``GET /_requests`` so a test can tell which upstream model served it.
Models named with ``--fail-model`` answer HTTP 500 with an OpenAI-shaped error body,
which is what makes LiteLLM's fallback kick in.

    python3 fake_provider.py --port 9000 --fail-model primary-broken

Routes:
    POST /v1/chat/completions, POST /chat/completions
        JSON chat.completion, or with ``"stream": true`` an SSE stream of
        chat.completion.chunk events ending with ``data: [DONE]``.
    GET  /_requests   JSON list of {"path", "model", "stream", "status"}, oldest first.
    DELETE /_requests clears that list.
    GET  /_health     200 "ok" (readiness probe).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
REPLY_TEXT = "Hello from the fake provider."


class State:
    def __init__(self, fail_models: set[str]) -> None:
        self.fail_models = fail_models
        self.lock = threading.Lock()
        self.requests: list[dict] = []

    def record(self, entry: dict) -> None:
        with self.lock:
            self.requests.append(entry)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, state: State) -> None:
        super().__init__(addr, handler)
        self.state = state

    def get_request(self):
        conn, addr = super().get_request()
        # Without this, small keep-alive responses wait for the peer's delayed ACK
        # (Nagle), and every request after the first on a connection stalls ~40 ms.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "fake-openai/1.0"

    def log_message(self, fmt, *args) -> None:  # one line per request on stderr
        if self.path.startswith("/_"):  # the tests' own probes are noise
            return
        sys.stderr.write("fake_provider: " + (fmt % args) + "\n")

    # -- helpers ---------------------------------------------------------------
    def _send_json(self, status: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routes ----------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == "/_requests":
            self._send_json(200, self.server.state.snapshot())
        elif self.path == "/_health":
            self._send_json(200, "ok")
        elif self.path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": []})
        else:
            self._send_json(404, _error(f"no route GET {self.path}", "invalid_request_error", "not_found"))

    def do_DELETE(self) -> None:
        if self.path == "/_requests":
            self.server.state.clear()
            self._send_json(200, [])
        else:
            self._send_json(404, _error(f"no route DELETE {self.path}", "invalid_request_error", "not_found"))

    def do_POST(self) -> None:
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        if path not in CHAT_PATHS:
            self._send_json(404, _error(f"no route POST {path}", "invalid_request_error", "not_found"))
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as e:
            self._send_json(400, _error(f"invalid JSON body: {e}", "invalid_request_error", "invalid_json"))
            return
        model = req.get("model")
        stream = bool(req.get("stream"))
        state: State = self.server.state

        if model in state.fail_models:
            state.record({"path": path, "model": model, "stream": stream, "status": 500})
            self._send_json(
                500,
                _error(
                    f"The upstream model '{model}' is broken (fake provider, --fail-model).",
                    "server_error",
                    "internal_server_error",
                ),
            )
            return

        state.record({"path": path, "model": model, "stream": stream, "status": 200})
        if stream:
            self._stream(req, model)
        else:
            self._send_json(200, _completion(req, model))

    def _stream(self, req: dict, model) -> None:
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = REPLY_TEXT.split(" ")
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        for delta in deltas:
            self._write_chunk(_sse(_chunk(cid, created, model, delta, None)))
        self._write_chunk(_sse(_chunk(cid, created, model, {}, "stop")))
        opts = req.get("stream_options") or {}
        if isinstance(opts, dict) and opts.get("include_usage"):
            last = _chunk(cid, created, model, {}, None)
            last["choices"] = []
            last["usage"] = _usage()
            self._write_chunk(_sse(last))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # terminating zero-length chunk


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _usage() -> dict:
    return {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}


def _chunk(cid: str, created: int, model, delta: dict, finish) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _completion(req: dict, model) -> dict:
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
    }


def _error(message: str, etype: str, code: str) -> dict:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0 = any free port)")
    ap.add_argument(
        "--fail-model", action="append", default=[], metavar="NAME",
        help="upstream model name that answers HTTP 500 (repeatable)",
    )
    args = ap.parse_args(argv)
    server = Server(("127.0.0.1", args.port), Handler, State(set(args.fail_model)))
    print(
        f"fake_provider listening on http://127.0.0.1:{server.server_address[1]} "
        f"fail_models={sorted(args.fail_model)}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
