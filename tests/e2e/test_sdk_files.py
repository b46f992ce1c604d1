"""The openai SDK's file uploads and batches through modelmap. Checks: sdk_support.py.
"""

from __future__ import annotations

import base64
import json

import pytest

import stack
from sdk_support import (  # noqa: F401 (fixtures are found by name)
    nothing_refused,
    gateway_log,
    oai,
    oai_direct,
    CHAT,
    CHAT_INTERNAL,
    MESSAGES,
    assert_served,
    call,
    error_of,
    no_internal_name,
    rewrites,
)


# --- files and batches --------------------------------------------------------------
def batch_jsonl(models: list[str]) -> bytes:
    return b"".join(
        json.dumps(
            {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": m, "messages": MESSAGES, "max_tokens": 16}}
        ).encode() + b"\n"
        for i, m in enumerate(models)
    )


# httpx sends a filename's `"` as %22 and non-ASCII as raw UTF-8 inside the quoted
# parameter; a `;` inside it must not end the parameter.
BATCH_FILENAMES = {"plain": "batch.jsonl", "semicolon-quotes-utf8": 'my;batch "v2" ñ.jsonl'}


@pytest.mark.parametrize("filename", BATCH_FILENAMES.values(), ids=BATCH_FILENAMES.keys())
def test_sdk_batch_file_upload_and_batch_create(oai, gateway_log, provider_log, filename):
    """`files.create(purpose="batch")` as the SDK sends it (no model anywhere but inside the
    JSONL), then `batches.create`. LiteLLM hands both to the provider in `files_settings`;
    the provider receives the file with every line's `body.model` mapped by modelmap."""
    content = batch_jsonl([CHAT, stack.PUBLIC_MODEL])
    # `expires_after` goes as the form fields `expires_after[anchor]` and `expires_after[seconds]`.
    uploaded = call(
        oai.files.create, file=(filename, content, "application/jsonl"), purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 86400},
    )
    assert uploaded.purpose == "batch" and uploaded.id.startswith("file-"), uploaded
    hit = assert_served(provider_log, "/files", CHAT_INTERNAL, purpose="batch")
    assert hit["filename"] == filename.replace('"', "%22"), hit
    assert hit["batch_models"] == [CHAT_INTERNAL, stack.INTERNAL_MODEL], (
        f"every batch line's body.model must reach the gateway mapped: {hit}"
    )

    batch = call(oai.batches.create, input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "validating" and batch.input_file_id == uploaded.id, batch
    assert [e["input_file_id"] for e in provider_log.since_mark() if e["path"] == "/batches"] == [uploaded.id]
    # Neither request names a model for LiteLLM to route on: the recorder sees None.
    assert gateway_log.models("acreate_file") == [None], gateway_log.since_mark()
    assert gateway_log.models("acreate_batch") == [None], gateway_log.since_mark()


def test_sdk_large_batch_file_with_crlf_lines(oai, provider_log):
    """3,000 lines (about 750 KiB) ending in CRLF, as a file written on Windows would."""
    models = [CHAT, stack.PUBLIC_MODEL] * 1500
    content = batch_jsonl(models).replace(b"\n", b"\r\n")
    uploaded = call(oai.files.create, file=("big.jsonl", content), purpose="batch")
    assert uploaded.purpose == "batch", uploaded
    hit = assert_served(provider_log, "/files", CHAT_INTERNAL, purpose="batch")
    assert hit["batch_models"] == [CHAT_INTERNAL, stack.INTERNAL_MODEL] * 1500, "a batch line reached the gateway unmapped"


def test_sdk_binary_file_upload_not_batch(oai, provider_log):
    """A non-batch upload (`purpose="user_data"`, a binary PDF-like file): no JSONL to read."""
    data = b"%PDF-1.4\n" + bytes(range(256)) * 800 + b"\r\n--not-a-boundary\r\n" + bytes(range(255, -1, -1)) * 10
    uploaded = call(oai.files.create, file=("doc.pdf", data, "application/pdf"), purpose="user_data")
    assert uploaded.purpose == "user_data" and uploaded.bytes == len(data), uploaded
    assert_served(provider_log, "/files", None, purpose="user_data")


@pytest.mark.xfail(
    strict=True,
    reason="modelmap maps body.model in uploaded batch files but does not restore it in "
    "GET /v1/files/{id}/content (reported in notes/sdk-report.md); strict: passes once it does",
)
def test_sdk_batch_file_download_shows_public_names(oai):
    """The client downloads the batch input file it uploaded: it should read the names it wrote."""
    content = batch_jsonl([CHAT])
    uploaded = call(oai.files.create, file=("batch.jsonl", content), purpose="batch")
    downloaded = call(oai.files.content, uploaded.id).content
    no_internal_name("downloaded batch input file", downloaded.decode())
    assert downloaded == content


def litellm_model_id(raw_id: str, model: str) -> str:
    """An id as LiteLLM 1.106.2's `encode_file_id_with_model` makes it (checked against an
    id LiteLLM really issued in test_sdk_batch_file_upload_routed_by_model)."""
    prefix = "batch_" if raw_id.startswith("batch_") else "file-"
    return prefix + base64.urlsafe_b64encode(f"litellm:{raw_id};model,{model}".encode()).decode().rstrip("=")


# LiteLLM's model-based file routing (no database needed): a model named by `?model=`
# or the `x-litellm-model` header picks the deployment whose credentials upload the
# file, and LiteLLM encodes that model into the returned file id, which batches.create
# routes on. The alias `AgentX-LLM` (modelmap: -> backup-model, a global deployment) is
# unknown to LiteLLM, so straight at LiteLLM it is refused and through modelmap it works
# only if modelmap maps the name in that place.
ROUTED_BY = {
    "query": {"extra_query": {"model": stack.ALIAS}},
    "header": {"extra_headers": {"x-litellm-model": stack.ALIAS}},
}


@pytest.mark.parametrize("place", ROUTED_BY)
def test_sdk_batch_file_upload_routed_by_model(oai, oai_direct, provider_log, place):
    content = batch_jsonl([stack.ALIAS])
    direct = error_of(oai_direct.files.create, file=("b.jsonl", content), purpose="batch", **ROUTED_BY[place])
    assert direct[0] == 400 and "Invalid model name" in direct[1], f"LiteLLM should not know the alias: {direct}"
    provider_log.mark()

    uploaded = call(oai.files.create, file=("b.jsonl", content), purpose="batch", **ROUTED_BY[place])
    assert uploaded.purpose == "batch", uploaded
    hit = assert_served(provider_log, "/files", stack.BACKUP_MODEL, purpose="batch")
    assert hit["batch_models"] == [stack.BACKUP_MODEL], f"the batch line's body.model must be mapped too: {hit}"
    assert uploaded.id == litellm_model_id(hit["file_id"], stack.BACKUP_MODEL), "LiteLLM's id format changed"

    batch = call(oai.batches.create, input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "validating", batch
    assert [e["input_file_id"] for e in provider_log.since_mark() if e["path"] == "/batches"] == [hit["file_id"]]
    # The ids LiteLLM handed out carry the model; they come back in path segments too.
    assert call(oai.batches.retrieve, batch.id).id == batch.id
    assert call(oai.files.retrieve, uploaded.id).id == uploaded.id
    assert call(oai.files.content, uploaded.id).content.count(b"\n") == 1


def test_sdk_batch_create_with_an_id_naming_the_callers_own_internal_name(oai, oai_direct):
    """In database mode a team's model-routed upload returns an id that encodes the team's
    internal name (LiteLLM's own `encode_file_id_with_model`); the SDK sends it back in
    `batches.create` and `batches.retrieve`. The guard reads names inside such ids and
    must let the caller's own team's name through: the answer is LiteLLM's, the same as
    straight from LiteLLM. (Config-only LiteLLM finds no team deployment for a key without
    a team, and its error handler then fails on the missing database module: a plain 500
    "Internal Server Error" both ways.)"""
    file_id = litellm_model_id("file-abc123", CHAT_INTERNAL)
    batch_id = litellm_model_id("batch_abc123", CHAT_INTERNAL)
    for what, fn, kw in (
        ("batches.create", "create", {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                      "completion_window": "24h"}),
        ("batches.retrieve", "retrieve", {"batch_id": batch_id}),
    ):
        direct = error_of(getattr(oai_direct.batches, fn), **kw)
        through = error_of(getattr(oai.batches, fn), **kw)
        assert through == direct, f"{what}: through modelmap {through}, straight from LiteLLM {direct}"


def test_sdk_file_upload_the_config_only_gateway_cannot_serve(oai, oai_direct, e2e_stack, http):
    """What config-only LiteLLM cannot serve gets the same answer through modelmap as
    straight from LiteLLM, not an `unreadable_request`:
    - a team model by `?model=` (model-based routing finds no team deployment for a key
      without a team, by either name), and
    - `target_model_names` (managed files need the database)."""
    content = batch_jsonl([CHAT])
    cases = {
        "team model by ?model=": {"extra_query": {"model": CHAT}},
        "target_model_names": {"extra_body": {"target_model_names": CHAT}},
    }
    for what, kw in cases.items():
        direct = error_of(oai_direct.files.create, file=("b.jsonl", content), purpose="batch", **kw)
        queried = rewrites(e2e_stack, http, CHAT, "query")
        through = error_of(oai.files.create, file=("b.jsonl", content), purpose="batch", **kw)
        assert direct[0] != 200, f"{what}: config-only LiteLLM was expected to refuse it: {direct}"
        # Same status and message: for ?model= LiteLLM was sent (and quoted) the internal
        # name, and modelmap restored it in the error.
        assert through == direct, f"{what}: through modelmap {through}, straight from LiteLLM {direct}"
        if "model" in kw.get("extra_query", {}):
            assert rewrites(e2e_stack, http, CHAT, "query") == queried + 1, f"{what}: ?model= was not mapped"
