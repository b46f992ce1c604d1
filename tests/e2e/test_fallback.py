"""End to end against a real LiteLLM: what a user notices with and without modelmap.

The team model behind `gpt-4.1` is broken upstream (the fake provider answers 500 for
`primary-broken`) and its fallback to `backup-model` is keyed by the internal name
`model_name_team-abc_…`, as LiteLLM stores it. Sent straight to LiteLLM, `gpt-4.1`
therefore fails: the router looks the fallback up by the public name and finds none.
Through modelmap, the name is rewritten to the internal one, the fallback fires and the
request is served by `backup-ok`.
"""

from __future__ import annotations

import json

import openai
import pytest

import stack

CHAT = "/v1/chat/completions"
AUTH = {"Authorization": f"Bearer {stack.MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "Say hello."}]
REPLY = "Hello from the fake provider."
FALLBACK_HEADER = "x-litellm-attempted-fallbacks"


# --- helpers ----------------------------------------------------------------------
def post_chat(http, base_url: str, model: str, stream: bool = False):
    body = {"model": model, "messages": MESSAGES}
    if stream:
        body["stream"] = True
    return http.post(base_url + CHAT, headers=AUTH, json=body, stream=stream, timeout=30)


def error_message(resp) -> str:
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return resp.text[:2000]


def describe(resp) -> str:
    return f"HTTP {resp.status_code}, {FALLBACK_HEADER}={resp.headers.get(FALLBACK_HEADER)!r}, body: {resp.text[:2000]}"


def sse_data(resp) -> list[str]:
    """The `data:` payloads of an SSE response, in order (multi-line data joined by \\n)."""
    events, cur = [], []
    for line in resp.iter_lines(decode_unicode=True):
        if line == "":
            if cur:
                events.append("\n".join(cur))
                cur = []
        elif line.startswith("data:"):
            cur.append(line[5:].lstrip(" "))
    if cur:
        events.append("\n".join(cur))
    return events


def chunks_of(events: list[str]) -> list[dict]:
    return [json.loads(e) for e in events if e != "[DONE]"]


def streamed_text(chunks: list[dict]) -> str:
    return "".join(
        (c.get("delta") or {}).get("content") or "" for ch in chunks for c in ch.get("choices") or []
    )


def stream_failure(resp) -> str | None:
    """Why a streaming request failed as a user sees it, or None if it worked."""
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}: {error_message(resp)}"
    events = sse_data(resp)
    errors = [e for e in events if e != "[DONE]" and "error" in json.loads(e)]
    if errors:
        return f"HTTP 200 but error event(s) in the stream: {errors}"
    if not events or events[-1] != "[DONE]" or streamed_text(chunks_of(events)) != REPLY:
        return f"HTTP 200 but incomplete stream: {events}"
    return None


# --- the bug, straight at LiteLLM ---------------------------------------------------
def test_direct_litellm_public_name_fails(http, litellm_url, provider_log, record_property):
    resp = post_chat(http, litellm_url, stack.PUBLIC_MODEL)
    record_property("litellm_status", resp.status_code)
    record_property("litellm_error", error_message(resp))
    print(f"\nLiteLLM direct {stack.PUBLIC_MODEL!r}: HTTP {resp.status_code}: {error_message(resp)}")
    assert resp.status_code != 200, (
        f"expected LiteLLM {stack.PUBLIC_MODEL!r} to fail without modelmap (fallback keyed by internal name), "
        f"got {describe(resp)}"
    )
    assert stack.UPSTREAM_BACKUP not in provider_log.served_by(), (
        f"the backup served a direct request, so the bug did not reproduce: {provider_log.since_mark()}"
    )


def test_direct_litellm_public_name_stream_fails(http, litellm_url, provider_log):
    resp = post_chat(http, litellm_url, stack.PUBLIC_MODEL, stream=True)
    why = stream_failure(resp)
    print(f"\nLiteLLM direct {stack.PUBLIC_MODEL!r} stream: {why}")
    assert why is not None, f"expected the direct streaming request to fail, got {describe(resp)}"
    assert stack.UPSTREAM_BACKUP not in provider_log.served_by(), provider_log.since_mark()


def test_direct_litellm_internal_name_falls_back(http, litellm_url, provider_log):
    """The premise of modelmap: the internal name makes LiteLLM's fallback fire."""
    resp = post_chat(http, litellm_url, stack.INTERNAL_MODEL)
    assert resp.status_code == 200, f"LiteLLM with the internal name: {describe(resp)}"
    assert resp.headers.get(FALLBACK_HEADER) == "1", describe(resp)
    assert provider_log.served_by() == [stack.UPSTREAM_BACKUP], provider_log.since_mark()


# --- the fix, through modelmap ------------------------------------------------------
def test_modelmap_public_name_succeeds_via_fallback(http, modelmap_url, provider_log):
    resp = post_chat(http, modelmap_url, stack.PUBLIC_MODEL)
    assert resp.status_code == 200, f"through modelmap: {describe(resp)}"
    assert resp.headers.get(FALLBACK_HEADER) == "1", describe(resp)
    body = resp.json()
    assert body["object"] == "chat.completion", body
    assert body["choices"][0]["message"]["content"] == REPLY, body
    assert body["model"] != stack.INTERNAL_MODEL, f"internal name leaked to the client: {body}"
    log = provider_log.since_mark()
    assert [e["model"] for e in log] == [stack.UPSTREAM_BROKEN, stack.UPSTREAM_BACKUP], (
        f"expected the broken primary to be tried once, then the backup to serve it: {log}"
    )


def test_modelmap_public_name_stream_succeeds_via_fallback(http, modelmap_url, provider_log):
    resp = post_chat(http, modelmap_url, stack.PUBLIC_MODEL, stream=True)
    assert resp.status_code == 200, f"through modelmap: {describe(resp)}"
    assert resp.headers.get("content-type", "").startswith("text/event-stream"), dict(resp.headers)
    assert resp.headers.get(FALLBACK_HEADER) == "1", dict(resp.headers)
    events = sse_data(resp)
    assert events and events[-1] == "[DONE]", f"stream must end with [DONE]: {events}"
    chunks = chunks_of(events)
    assert chunks and all(c.get("object") == "chat.completion.chunk" for c in chunks), events
    assert streamed_text(chunks) == REPLY, events
    assert all(c.get("model") != stack.INTERNAL_MODEL for c in chunks), f"internal name leaked: {events}"
    assert provider_log.served_by() == [stack.UPSTREAM_BACKUP], provider_log.since_mark()


def test_openai_sdk_direct_at_litellm_raises(litellm_url):
    client = openai.OpenAI(base_url=litellm_url + "/v1", api_key=stack.MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model=stack.PUBLIC_MODEL, messages=MESSAGES)
    print(f"\nopenai SDK direct at LiteLLM: {type(exc.value).__name__} (HTTP {exc.value.status_code})")


def test_openai_sdk_through_modelmap(modelmap_url, provider_log):
    client = openai.OpenAI(base_url=modelmap_url + "/v1", api_key=stack.MASTER_KEY, max_retries=0, timeout=30)

    raw = client.chat.completions.with_raw_response.create(model=stack.PUBLIC_MODEL, messages=MESSAGES)
    assert raw.headers.get(FALLBACK_HEADER) == "1", dict(raw.headers)
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY, completion

    stream = client.chat.completions.create(model=stack.PUBLIC_MODEL, messages=MESSAGES, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == REPLY

    assert provider_log.served_by() == [stack.UPSTREAM_BACKUP, stack.UPSTREAM_BACKUP], provider_log.since_mark()


# --- global aliases -----------------------------------------------------------------
def test_direct_litellm_alias_fails(http, litellm_url):
    resp = post_chat(http, litellm_url, stack.ALIAS)
    print(f"\nLiteLLM direct {stack.ALIAS!r}: HTTP {resp.status_code}: {error_message(resp)}")
    assert resp.status_code != 200, f"LiteLLM does not know the alias {stack.ALIAS!r}, yet: {describe(resp)}"


def test_modelmap_alias_succeeds(http, modelmap_url, provider_log):
    resp = post_chat(http, modelmap_url, stack.ALIAS)
    assert resp.status_code == 200, f"alias through modelmap: {describe(resp)}"
    assert resp.json()["choices"][0]["message"]["content"] == REPLY, resp.text
    assert provider_log.served_by() == [stack.UPSTREAM_BACKUP], provider_log.since_mark()

    provider_log.mark()
    resp = post_chat(http, modelmap_url, stack.ALIAS, stream=True)
    why = stream_failure(resp)
    assert why is None, f"streaming alias through modelmap: {why}"
    assert provider_log.served_by() == [stack.UPSTREAM_BACKUP], provider_log.since_mark()


# --- response restoring -------------------------------------------------------------
def test_response_model_is_the_requested_name_never_the_internal_one(http, modelmap_url):
    """The client never sees `model_name_team-abc_…`, in JSON, in any SSE chunk or in
    `x-litellm-model-group`.

    On a healthy team model (`gpt-4.1-mini`) LiteLLM stamps the name it received (the
    internal one), so modelmap must restore the public name. After a fallback LiteLLM
    reports the backup's name, which is left as it is.
    """
    for model in (stack.PUBLIC_MODEL, stack.PUBLIC_MODEL_OK):
        resp = post_chat(http, modelmap_url, model)
        assert resp.status_code == 200, f"{model}: {describe(resp)}"
        seen = resp.json().get("model")
        assert not str(seen).startswith("model_name_"), f"{model} JSON: model={seen!r}"
        group = resp.headers.get("x-litellm-model-group", "")
        assert not group.startswith("model_name_"), f"{model}: x-litellm-model-group={group!r}"
        if model == stack.PUBLIC_MODEL_OK:
            assert seen == model, f"healthy team model: expected {model!r}, got {seen!r}"

        resp = post_chat(http, modelmap_url, model, stream=True)
        assert resp.status_code == 200, f"{model} stream: {describe(resp)}"
        chunks = list(chunks_of(sse_data(resp)))
        assert chunks, f"{model} stream had no chunks"
        for chunk in chunks:
            got = str(chunk.get("model"))
            assert not got.startswith("model_name_"), f"{model} SSE chunk: model={got!r}"
            if model == stack.PUBLIC_MODEL_OK:
                assert got == model, f"{model} SSE chunk: model={got!r}"
