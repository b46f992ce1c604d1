"""Response bodies of the fake provider, in the shapes OpenAI's API documents.

Each function builds one JSON object (or one stream of events) the way api.openai.com
answers, with the fields the openai SDK's models and LiteLLM's parsers read: chat
completions and chunks, embeddings (float or base64), Responses API objects and their
SSE events, transcriptions, image edits, files, batches and realtime session events.
Every body carries the upstream model name it was asked for, so a test can tell which
deployment LiteLLM picked.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid

REPLY_TEXT = "Hello from the fake provider."
# A 1x1 transparent PNG: what an image edit "returns".
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
EMBEDDING_DIMS = 8


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def usage() -> dict:
    return {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}


def error(message: str, etype: str, code: str) -> dict:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


# --- chat -------------------------------------------------------------------------
def chat_chunk(cid: str, created: int, model, delta: dict, finish) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def chat_stream(req: dict, model) -> list[dict]:
    cid, created = new_id("chatcmpl-"), int(time.time())
    words = REPLY_TEXT.split(" ")
    deltas = [{"role": "assistant", "content": ""}]
    deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
    chunks = [chat_chunk(cid, created, model, d, None) for d in deltas]
    chunks.append(chat_chunk(cid, created, model, {}, "stop"))
    opts = req.get("stream_options") or {}
    if isinstance(opts, dict) and opts.get("include_usage"):
        last = chat_chunk(cid, created, model, {}, None)
        last["choices"] = []
        last["usage"] = usage()
        chunks.append(last)
    return chunks


def chat_completion(model) -> dict:
    return {
        "id": new_id("chatcmpl-"),
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
        "usage": usage(),
    }


# --- embeddings -------------------------------------------------------------------
def embeddings(req: dict, model) -> dict:
    inputs = req.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
    vector = [round(0.1 * (i + 1), 3) for i in range(EMBEDDING_DIMS)]
    if req.get("encoding_format") == "base64":
        # What OpenAI sends for base64: little-endian float32s, base64-encoded.
        value = base64.b64encode(struct.pack(f"<{EMBEDDING_DIMS}f", *vector)).decode()
    else:
        value = vector
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": value} for i in range(count)],
        "model": model,
        "usage": {"prompt_tokens": 4 * count, "total_tokens": 4 * count},
    }


# --- Responses API ----------------------------------------------------------------
def response_object(model, rid: str, status: str, with_output: bool) -> dict:
    msg = {
        "type": "message",
        "id": "msg_" + rid[5:],
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": REPLY_TEXT, "annotations": [], "logprobs": []}],
    }
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [msg] if with_output else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": (
            {
                "input_tokens": 9,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 6,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 15,
            }
            if with_output
            else None
        ),
        "user": None,
        "metadata": {},
    }


def response_events(model) -> list[dict]:
    """The SSE events of a streamed response, in OpenAI's order, each with `type`."""
    rid = new_id("resp_")
    mid = "msg_" + rid[5:]
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    item = {"type": "message", "id": mid, "status": "in_progress", "role": "assistant", "content": []}
    done_part = dict(part, text=REPLY_TEXT)
    events = [
        {"type": "response.created", "response": response_object(model, rid, "in_progress", False)},
        {"type": "response.in_progress", "response": response_object(model, rid, "in_progress", False)},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": mid, "output_index": 0, "content_index": 0, "part": part},
    ]
    words = REPLY_TEXT.split(" ")
    for i, w in enumerate(words):
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": mid,
                "output_index": 0,
                "content_index": 0,
                "delta": w if i == 0 else " " + w,
                "logprobs": [],
            }
        )
    events += [
        {"type": "response.output_text.done", "item_id": mid, "output_index": 0, "content_index": 0,
         "text": REPLY_TEXT, "logprobs": []},
        {"type": "response.content_part.done", "item_id": mid, "output_index": 0, "content_index": 0,
         "part": done_part},
        {"type": "response.output_item.done", "output_index": 0,
         "item": dict(item, status="completed", content=[done_part])},
        {"type": "response.completed", "response": response_object(model, rid, "completed", True)},
    ]
    for n, e in enumerate(events):
        e["sequence_number"] = n
    return events


# --- Anthropic Messages API ------------------------------------------------------
def anthropic_usage(output_tokens: int = 6) -> dict:
    return {"input_tokens": 9, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "service_tier": "standard"}


def anthropic_message(model) -> dict:
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(),
    }


def anthropic_events(model) -> list[dict]:
    """A streamed message as Anthropic sends it; each event has its `type`."""
    start = dict(anthropic_message(model), content=[], stop_reason=None, usage=anthropic_usage(1))
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    for i, w in enumerate(REPLY_TEXT.split(" ")):
        events.append({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": w if i == 0 else " " + w}})
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 6}},
        {"type": "message_stop"},
    ]
    return events


def anthropic_error(message: str) -> dict:
    return {"type": "error", "error": {"type": "api_error", "message": message}}


# --- audio, images ----------------------------------------------------------------
def transcription(response_format: str | None, granularities: list[str]) -> tuple[str, bytes]:
    """(content type, body) of a transcription, per `response_format` (default json)."""
    import json

    if response_format in ("text", "srt", "vtt"):
        return "text/plain; charset=utf-8", REPLY_TEXT.encode()
    body: dict = {"text": REPLY_TEXT, "usage": {"type": "duration", "seconds": 1}}
    if response_format == "verbose_json":
        words = REPLY_TEXT.split(" ")
        body.update(task="transcribe", language="english", duration=1.0)
        if "word" in granularities:
            body["words"] = [{"word": w, "start": i * 0.2, "end": i * 0.2 + 0.2} for i, w in enumerate(words)]
        if "segment" in granularities or not granularities:
            body["segments"] = [{
                "id": 0, "seek": 0, "start": 0.0, "end": 1.0, "text": REPLY_TEXT, "tokens": [1, 2, 3],
                "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.0,
            }]
    return "application/json", json.dumps(body).encode()


def image_edit() -> dict:
    return {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(PNG_1X1).decode(), "revised_prompt": None}],
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"image_tokens": 5, "text_tokens": 5},
            "output_tokens": 20,
            "total_tokens": 30,
        },
    }


# --- files, batches ---------------------------------------------------------------
def file_object(fid: str, filename: str, size: int, purpose: str, created: int) -> dict:
    return {
        "id": fid,
        "object": "file",
        "bytes": size,
        "created_at": created,
        "expires_at": None,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
    }


def batch_object(req: dict, bid: str) -> dict:
    now = int(time.time())
    return {
        "id": bid,
        "object": "batch",
        "endpoint": req.get("endpoint"),
        "errors": None,
        "input_file_id": req.get("input_file_id"),
        "completion_window": req.get("completion_window", "24h"),
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + 86400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": req.get("metadata"),
    }


# --- realtime ---------------------------------------------------------------------
def realtime_session(model) -> dict:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess_"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
    }


def realtime_event(etype: str, **fields) -> dict:
    return {"type": etype, "event_id": new_id("event_"), **fields}
