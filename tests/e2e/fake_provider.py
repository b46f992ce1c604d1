#!/usr/bin/env python3
"""A tiny OpenAI-compatible provider for the end-to-end tests (stdlib only).

LiteLLM forwards requests here. Every request's model is recorded and can be read back
at ``GET /_requests`` so a test can tell which upstream model served it. Models named
with ``--fail-model`` answer HTTP 500 with an OpenAI-shaped error body, which is what
makes LiteLLM's fallback kick in. Bodies follow OpenAI's documented shapes
(fake_shapes.py), so the openai SDK and LiteLLM's own parsers accept them.

    python3 fake_provider.py --port 9000 --fail-model primary-broken

Routes (each also without the ``/v1`` prefix):
    POST /v1/chat/completions   JSON chat.completion, or with ``"stream": true`` SSE
                                chat.completion.chunk events ending with ``data: [DONE]``.
    POST /v1/embeddings         float or base64 (``encoding_format``) embeddings.
    POST /v1/responses          a Responses API ``response``, or its SSE events.
    POST /v1/audio/transcriptions, POST /v1/images/edits
                                multipart/form-data; the form field ``model`` is recorded.
    POST /v1/files              multipart upload; for ``purpose=batch`` every JSONL line's
                                ``body.model`` is recorded as ``batch_models``.
    GET  /v1/files/{id}, GET /v1/files/{id}/content
    POST /v1/batches, GET /v1/batches/{id}
    POST /v1/messages           Anthropic's Messages API: a message, or its SSE events.
    POST /v1/messages/count_tokens
    GET  /v1/realtime?model=    websocket: sends ``session.created``, answers
                                ``session.update`` with ``session.updated`` and any other
                                client event with an ``error`` event naming it.
    GET  /_requests   JSON list of {"path", "model", "stream", "status", ...}, oldest first.
    DELETE /_requests clears that list.
    GET  /_health     200 "ok" (readiness probe).
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fake_shapes as shapes
import fake_websocket as ws

REPLY_TEXT = shapes.REPLY_TEXT


def _route(path: str) -> str:
    """The path without query and without a leading /v1 (LiteLLM sends both forms)."""
    path = path.split("?", 1)[0]
    return path[3:] if path.startswith("/v1/") else path


class State:
    def __init__(self, fail_models: set[str]) -> None:
        self.fail_models = fail_models
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        # Uploaded files by id: {"object", "content", "batch_models"}; batches by id.
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}

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

    def _send_bytes(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _not_found(self) -> None:
        self._send_json(404, shapes.error(f"no route {self.command} {self.path}", "invalid_request_error", "not_found"))

    def _record(self, path: str, model, status: int, **extra) -> None:
        self.server.state.record({"path": path, "model": model, "stream": extra.pop("stream", False),
                                  "status": status, **extra})

    def _failing(self, path: str, model, **extra) -> bool:
        """Answer 500 (and record it) if `model` is one of the --fail-model names."""
        if model not in self.server.state.fail_models:
            return False
        self._record(path, model, 500, **extra)
        self._send_json(
            500,
            shapes.error(
                f"The upstream model '{model}' is broken (fake provider, --fail-model).",
                "server_error",
                "internal_server_error",
            ),
        )
        return True

    # -- routes ----------------------------------------------------------------
    def do_GET(self) -> None:
        route = _route(self.path)
        state: State = self.server.state
        if self.path == "/_requests":
            self._send_json(200, state.snapshot())
        elif self.path == "/_health":
            self._send_json(200, "ok")
        elif route == "/models":
            self._send_json(200, {"object": "list", "data": []})
        elif route == "/realtime" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._realtime()
        elif route.startswith("/files/"):
            fid, _, rest = route[len("/files/"):].partition("/")
            f = state.files.get(fid)
            if f is None:
                self._send_json(404, shapes.error(f"No such File object: {fid}", "invalid_request_error", None))
            elif rest == "content":
                self._send_bytes(200, "application/octet-stream", f["content"])
            elif rest == "":
                self._send_json(200, f["object"])
            else:
                self._not_found()
        elif route.startswith("/batches/"):
            b = state.batches.get(route[len("/batches/"):])
            if b is None:
                self._send_json(404, shapes.error("No such batch", "invalid_request_error", None))
            else:
                self._send_json(200, b)
        else:
            self._not_found()

    def do_DELETE(self) -> None:
        if self.path == "/_requests":
            self.server.state.clear()
            self._send_json(200, [])
        else:
            self._not_found()

    def do_POST(self) -> None:
        raw = self._read_body()
        route = _route(self.path)
        content_type = self.headers.get("Content-Type", "")
        if route in MULTIPART_ROUTES:
            try:
                fields, files, multi = parse_multipart(content_type, raw)
            except ValueError as e:
                self._send_json(400, shapes.error(f"invalid multipart body: {e}", "invalid_request_error", None))
                return
            MULTIPART_ROUTES[route](self, route, fields, files, multi)
            return
        handler = JSON_ROUTES.get(route)
        if handler is None:
            self._not_found()
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as e:
            self._send_json(400, shapes.error(f"invalid JSON body: {e}", "invalid_request_error", "invalid_json"))
            return
        handler(self, route, req)

    # -- JSON routes -----------------------------------------------------------
    def _chat(self, route: str, req: dict) -> None:
        model, stream = req.get("model"), bool(req.get("stream"))
        if self._failing(route, model, stream=stream):
            return
        self._record(route, model, 200, stream=stream)
        if stream:
            self._start_sse()
            for chunk in shapes.chat_stream(req, model):
                self._write_chunk(_sse(chunk))
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")  # terminating zero-length chunk
        else:
            self._send_json(200, shapes.chat_completion(model))

    def _embeddings(self, route: str, req: dict) -> None:
        model = req.get("model")
        if self._failing(route, model):
            return
        self._record(route, model, 200, encoding_format=req.get("encoding_format"))
        self._send_json(200, shapes.embeddings(req, model))

    def _responses(self, route: str, req: dict) -> None:
        model, stream = req.get("model"), bool(req.get("stream"))
        if self._failing(route, model, stream=stream):
            return
        self._record(route, model, 200, stream=stream)
        events = shapes.response_events(model)
        if stream:
            self._start_sse()
            for e in events:
                self._write_chunk(b"event: " + e["type"].encode() + b"\n" + _sse(e))
            self._write_chunk(b"")
        else:
            self._send_json(200, events[-1]["response"])

    def _messages(self, route: str, req: dict) -> None:
        """Anthropic's Messages API (LiteLLM calls it for `anthropic/` deployments)."""
        model, stream = req.get("model"), bool(req.get("stream"))
        if model in self.server.state.fail_models:
            self._record(route, model, 500, stream=stream)
            self._send_json(500, shapes.anthropic_error(f"The upstream model '{model}' is broken (fake provider)."))
            return
        self._record(route, model, 200, stream=stream, anthropic_version=self.headers.get("anthropic-version"))
        if stream:
            self._start_sse()
            for e in shapes.anthropic_events(model):
                self._write_chunk(b"event: " + e["type"].encode() + b"\n" + _sse(e))
            self._write_chunk(b"")
        else:
            self._send_json(200, shapes.anthropic_message(model))

    def _count_tokens(self, route: str, req: dict) -> None:
        self._record(route, req.get("model"), 200)
        self._send_json(200, {"input_tokens": 9})

    def _batches(self, route: str, req: dict) -> None:
        state: State = self.server.state
        fid = req.get("input_file_id")
        f = state.files.get(fid)
        if f is None:
            self._record(route, None, 400, input_file_id=fid)
            self._send_json(400, shapes.error(f"No such File object: {fid}", "invalid_request_error", None))
            return
        # A batch's models are the ones its input file's lines name.
        models = f["batch_models"]
        self._record(route, models[0] if models else None, 200, input_file_id=fid, batch_models=models)
        batch = shapes.batch_object(req, shapes.new_id("batch_"))
        state.batches[batch["id"]] = batch
        self._send_json(200, batch)

    # -- multipart routes ------------------------------------------------------
    def _transcriptions(self, route: str, fields: dict, files: dict, multi: dict) -> None:
        model = fields.get("model")
        granularities = multi.get("timestamp_granularities[]", [])
        extra = {"file_bytes": sum(len(c) for _, c in files.get("file", [])),
                 "response_format": fields.get("response_format"), "timestamp_granularities": granularities}
        if self._failing(route, model, **extra):
            return
        self._record(route, model, 200, **extra)
        ctype, body = shapes.transcription(fields.get("response_format"), granularities)
        self._send_bytes(200, ctype, body)

    def _image_edits(self, route: str, fields: dict, files: dict, multi: dict) -> None:
        model = fields.get("model")
        images = files.get("image", []) + files.get("image[]", [])
        extra = {"images": len(images), "masks": len(files.get("mask", [])), "prompt": fields.get("prompt")}
        if self._failing(route, model, **extra):
            return
        self._record(route, model, 200, **extra)
        self._send_json(200, shapes.image_edit())

    def _files(self, route: str, fields: dict, files: dict, multi: dict) -> None:
        state: State = self.server.state
        purpose = fields.get("purpose")
        uploads = files.get("file", [])
        if not purpose or len(uploads) != 1:
            self._send_json(400, shapes.error("purpose and one file are required", "invalid_request_error", None))
            return
        filename, content = uploads[0]
        batch_models = []
        if purpose == "batch":
            try:
                batch_models = [json.loads(line)["body"]["model"] for line in content.splitlines() if line.strip()]
            except (ValueError, KeyError, TypeError) as e:
                self._record(route, None, 400, purpose=purpose)
                self._send_json(400, shapes.error(f"invalid batch file: {e}", "invalid_request_error", None))
                return
        fid = shapes.new_id("file-")
        obj = shapes.file_object(fid, filename, len(content), purpose, int(time.time()))
        state.files[fid] = {"object": obj, "content": content, "batch_models": batch_models}
        self._record(route, batch_models[0] if batch_models else None, 200, purpose=purpose,
                     batch_models=batch_models, file_id=fid, filename=filename)
        self._send_json(200, obj)

    # -- websocket -------------------------------------------------------------
    def _realtime(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        model = (query.get("model") or [None])[0]
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self._send_json(400, shapes.error("missing Sec-WebSocket-Key", "invalid_request_error", None))
            return
        if self._failing("/realtime", model, websocket=True):
            return
        self._record("/realtime", model, 101, websocket=True,
                     beta=self.headers.get("OpenAI-Beta"))
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws.accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        session = shapes.realtime_session(model)
        try:
            ws.send_text(self.wfile, json.dumps(shapes.realtime_event("session.created", session=session)))
            while True:
                opcode, payload = ws.read_message(self.rfile, self.wfile)
                try:
                    event = json.loads(payload)
                    etype = event.get("type") if isinstance(event, dict) else None
                except ValueError:
                    etype = None
                self.server.state.record({"path": "/realtime", "model": model, "stream": False,
                                          "status": 0, "websocket_event": etype})
                if etype == "session.update":
                    update = event.get("session") if isinstance(event.get("session"), dict) else {}
                    session.update({k: v for k, v in update.items() if k != "model"})
                    reply = shapes.realtime_event("session.updated", session=session)
                else:
                    reply = shapes.realtime_event(
                        "error",
                        error={"type": "invalid_request_error", "code": "unknown_event",
                               "message": f"fake provider: unsupported event {etype!r}", "param": None,
                               "event_id": event.get("event_id") if etype else None},
                    )
                ws.send_text(self.wfile, json.dumps(reply))
        except (ws.Closed, OSError):
            pass


JSON_ROUTES = {
    "/chat/completions": Handler._chat,
    "/embeddings": Handler._embeddings,
    "/responses": Handler._responses,
    "/batches": Handler._batches,
    "/messages": Handler._messages,
    "/messages/count_tokens": Handler._count_tokens,
}
MULTIPART_ROUTES = {
    "/audio/transcriptions": Handler._transcriptions,
    "/images/edits": Handler._image_edits,
    "/files": Handler._files,
}


def parse_multipart(content_type: str, body: bytes) -> tuple[dict, dict, dict]:
    """({field: last text}, {field: [(filename, bytes)]}, {field: [every text]}) of a
    multipart/form-data body (repeated fields such as `timestamp_granularities[]`)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError(f"content type {content_type!r} is not multipart/form-data")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        raise ValueError("no parts")
    fields: dict = {}
    files: dict = {}
    multi: dict = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            raise ValueError("a part without a name")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files.setdefault(name, []).append((filename, data))
        else:
            fields[name] = data.decode("utf-8")
            multi.setdefault(name, []).append(fields[name])
    return fields, files, multi


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


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
