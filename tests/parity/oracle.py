#!/usr/bin/env python3
"""The gateway stand-in for the parity harness: LiteLLM 1.106.2's own request reading.

Serves LiteLLM's real FastAPI app (``litellm.proxy.proxy_server.app``, with every lazy
feature router registered) on real uvicorn, h11 or httptools, so framing, path decoding,
routing, middleware and parameter binding are the gateway's. The one change: LiteLLM's
auth dependencies (``user_api_key_auth``, ``user_api_key_auth_websocket``) are replaced
by a recorder. FastAPI calls it exactly where it would call auth, after routing and
before the handler; it runs LiteLLM's own functions on the request and records every
model name LiteLLM would authorize or route on:

- ``read_request_body`` (content type dispatch, orjson/json, Starlette forms),
- ``get_model_from_request`` with the request's headers and query (what auth checks),
- ``request_fallback_model_names`` (fallbacks, context_window_fallbacks, ...),
- the handler's own ``model``/``model_name`` parameter as FastAPI binds it (path template
  ``{model:path}`` or query string), which ``resolve_inference_model`` prefers to the
  body model, and ``model`` on the realtime websocket,
- managed resource ids in path parameters (``/v1/files/{file_id}``), decoded by
  ``_extract_models_from_managed_resource_id``.

Names are normalised as LiteLLM does (``_append_model_candidates``: comma split,
``str.strip()``). Then the recorder stops the request with a small JSON 200, so no
handler, provider or database runs.

Records are keyed by the request header ``x-parity-id`` and served on a separate control
port (``GET /records``, ``POST /reset``) that only the runner talks to.

    python oracle.py --port P --control-port C [--http h11|httptools]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import traceback

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOG", "CRITICAL")

import uvicorn  # noqa: E402
from fastapi import Request, WebSocket, WebSocketException  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

import litellm.proxy.proxy_server as proxy_server  # noqa: E402
from litellm.proxy._lazy_features import register_all_features  # noqa: E402
from litellm.proxy.auth import auth_utils  # noqa: E402
from litellm.proxy.auth.user_api_key_auth import (  # noqa: E402
    user_api_key_auth,
    user_api_key_auth_websocket,
)
from litellm.proxy.common_utils.http_parsing_utils import (  # noqa: E402
    read_request_body,
    safe_get_request_headers,
    safe_get_request_query_params,
)
from fastapi.dependencies.utils import request_params_to_args  # noqa: E402

ID_HEADER = "x-parity-id"
# Handler parameters that name the model the router serves (FastAPI binds them from the
# path template or the query string; resolve_inference_model prefers them to the body).
MODEL_PARAMS = ("model", "model_name")

_lock = threading.Lock()
_records: dict[str, list[dict]] = {}


def _store(pid: str | None, rec: dict) -> None:
    with _lock:
        _records.setdefault(pid or "<none>", []).append(rec)


class ParityDone(Exception):
    """Raised by the recorder to end the request before any handler runs."""


def _names(*values: object) -> list[str]:
    out: list[str] = []
    for v in values:
        auth_utils._append_model_candidates(out, v)
    return auth_utils._dedupe_model_candidates(out)


def _handler_params(scope: dict, path_params: dict, query_params) -> dict[str, object]:
    """The handler's own model parameters, bound by FastAPI's own code."""
    route = scope.get("route")
    dependant = getattr(route, "dependant", None)
    found: dict[str, object] = {}
    if dependant is None:
        return found
    for fields, received, where in (
        (dependant.path_params, path_params, "path"),
        (dependant.query_params, query_params, "query"),
    ):
        wanted = [f for f in fields if f.name in MODEL_PARAMS or f.name in auth_utils._MODEL_ROUTING_ID_FIELDS]
        if not wanted:
            continue
        values, _errors = request_params_to_args(wanted, received)
        for k, v in values.items():
            if v is not None:
                found[f"{where}:{k}"] = v
    return found


async def _record_http(request: Request):
    pid = request.headers.get(ID_HEADER)
    rec: dict = {"kind": "http", "path": request.scope.get("path"), "method": request.method}
    try:
        route = auth_utils.get_request_route(request)
        rec["route"] = route
        tmpl = getattr(request.scope.get("route"), "path", None)
        rec["template"] = tmpl
        try:
            body = await read_request_body(request)
        except Exception as e:  # LiteLLM answers 400 itself: nothing is routed
            rec["litellm_rejects"] = f"{type(e).__name__}: {getattr(e, 'message', e)}"[:300]
            rec["names"] = []
            _store(pid, rec)
            raise ParityDone()
        if not isinstance(body, dict):
            rec["litellm_rejects"] = f"body is {type(body).__name__}"
            rec["names"] = []
            _store(pid, rec)
            raise ParityDone()
        rec["body_keys"] = sorted(str(k) for k in body.keys())[:40]
        headers = safe_get_request_headers(request)
        query = safe_get_request_query_params(request)
        auth = auth_utils.get_model_from_request(
            request_data=body,
            route=route,
            request_headers=headers,
            request_query_params=query,
            llm_router=None,
            request=request,
        )
        rec["auth"] = auth
        try:
            fallbacks = list(auth_utils.request_fallback_model_names(body))
        except ValueError as e:
            fallbacks = []
            rec["fallbacks_rejected"] = str(e)[:200]
        rec["fallbacks"] = fallbacks
        params = _handler_params(request.scope, request.path_params, request.query_params)
        rec["handler_params"] = {k: (v if isinstance(v, str) else repr(v)) for k, v in params.items()}
        routed: list[object] = []
        for k, v in params.items():
            name = k.split(":", 1)[1]
            if name in MODEL_PARAMS:
                routed.append(v)
            else:
                routed.append(auth_utils._extract_models_from_managed_resource_id(v, resource_id_field=name))
        # resolve_inference_model picks the handler model over the body model: both are
        # names the gateway may act on, so both are recorded.
        rec["names"] = _names(auth, fallbacks, *routed, body.get("model"))
        # Names that come out of managed ids (body id fields, id path parameters): the runner
        # holds them to the guard only (an id cannot be rewritten without forging it).
        id_names: list[str] = []
        for f in auth_utils._MODEL_ROUTING_ID_FIELDS:
            id_names += auth_utils._extract_models_from_managed_resource_id(body.get(f), resource_id_field=f)
        for k, v in params.items():
            if k.split(":", 1)[1] in auth_utils._MODEL_ROUTING_ID_FIELDS:
                id_names += auth_utils._extract_models_from_managed_resource_id(v, resource_id_field=k.split(":", 1)[1])
        rec["id_names"] = _names(id_names)
    except ParityDone:
        raise
    except Exception as e:
        rec["oracle_error"] = "".join(traceback.format_exception_only(type(e), e))[:500]
        rec.setdefault("names", [])
    _store(pid, rec)
    raise ParityDone(rec["names"][0] if rec["names"] else None)


async def _record_ws(websocket: WebSocket):
    pid = websocket.headers.get(ID_HEADER)
    params = _handler_params(websocket.scope, websocket.path_params, websocket.query_params)
    auth_model = websocket.query_params.get("model")
    rec = {
        "kind": "websocket",
        "path": websocket.scope.get("path"),
        "route": auth_utils.get_request_route(websocket),  # type: ignore[arg-type]
        "handler_params": {k: str(v) for k, v in params.items()},
        "names": _names(auth_model, *[v for k, v in params.items() if k.split(":", 1)[1] in MODEL_PARAMS]),
    }
    _store(pid, rec)
    # Refuse the handshake (403): nothing past auth runs.
    raise WebSocketException(code=1008)


async def _parity_done(request, exc):  # noqa: ARG001
    """Answer like a served request: LiteLLM stamps the model it served on the JSON body
    and on `x-litellm-model-group`, so modelmap's response restoring runs too."""
    model = exc.args[0] if exc.args else None
    headers = {}
    if isinstance(model, str) and model and all(0x20 <= ord(c) < 0x7F for c in model):
        headers["x-litellm-model-group"] = model
    return JSONResponse({"parity": "recorded", "model": model}, status_code=200, headers=headers)


app = proxy_server.app
register_all_features(app)
app.dependency_overrides[user_api_key_auth] = _record_http
app.dependency_overrides[user_api_key_auth_websocket] = _record_ws
app.add_exception_handler(ParityDone, _parity_done)


class Front:
    """Every request gets a record, also those that never reached an auth dependency."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":  # LiteLLM's startup (DB, config) is not wanted
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        pid = None
        for k, v in scope.get("headers", []):
            if k == ID_HEADER.encode():
                pid = v.decode("latin-1")
                break
        with _lock:
            before = len(_records.get(pid or "<none>", []))
        status = {}

        async def send2(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.inner(scope, receive, send2)
        finally:
            with _lock:
                after = len(_records.get(pid or "<none>", []))
            if after == before:
                _store(
                    pid,
                    {
                        "kind": scope["type"],
                        "path": scope.get("path"),
                        "no_auth_dependency": True,
                        "status": status.get("code"),
                        "names": [],
                    },
                )


async def control(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    if scope["path"] == "/reset":
        with _lock:
            _records.clear()
        body = b"{}"
    elif scope["path"] == "/healthz":
        body = b'{"ok": true}'
    else:
        with _lock:
            body = json.dumps(_records, default=repr).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--http", choices=("h11", "httptools"), default="h11")
    a = ap.parse_args()
    front = uvicorn.Server(
        uvicorn.Config(Front(app), host="127.0.0.1", port=a.port, http=a.http, log_level="warning", access_log=False)
    )
    ctl = uvicorn.Server(
        uvicorn.Config(control, host="127.0.0.1", port=a.control_port, log_level="warning", access_log=False)
    )
    # Both servers install signal handlers; one SIGTERM must stop both.
    front.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    ctl.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    import signal

    loop = asyncio.get_running_loop()

    def stop() -> None:
        front.should_exit = True
        ctl.should_exit = True

    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)
    print(f"oracle: litellm app on 127.0.0.1:{a.port} ({a.http}), control on {a.control_port}", file=sys.stderr)
    await asyncio.gather(front.serve(), ctl.serve())


if __name__ == "__main__":
    asyncio.run(main())
