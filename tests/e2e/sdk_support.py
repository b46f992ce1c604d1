"""Shared by the SDK end-to-end tests (test_sdk_*.py): names, fixtures and checks.

The SDK tests drive the real ``openai`` and ``anthropic`` Python SDKs through modelmap to
the real LiteLLM 1.106.2 (config-only) and the fake provider:

    SDK ──► modelmap ──► LiteLLM 1.106.2 (config-only) ──► fake_provider.py

For every call they check that
  1. the SDK call succeeds with the fake provider's answer, and modelmap refused none of
     the requests (``nothing_refused``, autouse in every SDK module: neither
     ``unreadable_request`` nor the guard's 403 counters move);
  2. LiteLLM routed on the team's INTERNAL name: ``gateway_recorder.py`` is a callback
     inside the real LiteLLM that logs the ``model`` of every request after parsing and
     auth, before routing (``assert_routed``). The fake provider alone cannot prove it:
     LiteLLM 1.106.2 also reaches a team deployment from its public name. The fake
     provider's log shows what served it (``assert_served``);
  3. where the answer carries a model, the client sees the public name, never
     ``model_name_team-abc_…``.

Test modules import the fixtures they use from here (pytest finds fixtures in a test
module's namespace). What is and is not covered: docs/sdk-e2e.md.
"""

from __future__ import annotations

import json
import re

import anthropic
import openai
import pytest

import stack

REPLY = "Hello from the fake provider."
MESSAGES = [{"role": "user", "content": "Say hello."}]
CHAT = stack.PUBLIC_MODEL_OK  # gpt-4.1-mini, served by the upstream "team-ok"
CHAT_INTERNAL = stack.INTERNAL_MODEL_OK
CLAUDE_NATIVE = "claude-haiku-4-5"  # an anthropic/ deployment: LiteLLM calls the provider's /v1/messages
EMBED, WHISPER, IMAGE, REALTIME, CLAUDE = (
    "text-embedding-3-small", "whisper-1", "gpt-image-1", "gpt-realtime", "claude-sonnet-4-5",
)


def internal(public: str) -> str:
    return stack.SDK_TEAM_MODELS[public][0]


def upstream(public: str) -> str:
    return stack.SDK_TEAM_MODELS[public][1]


# --- fixtures -----------------------------------------------------------------------
class GatewayLog:
    """What LiteLLM itself routed on (gateway_recorder.py's JSON lines), since mark()."""

    def __init__(self, path) -> None:
        self.path = path
        self.mark()

    def _lines(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def mark(self) -> None:
        self._seen = len(self._lines())

    def since_mark(self) -> list[dict]:
        return self._lines()[self._seen:]

    def models(self, call_type: str) -> list:
        return [e["model"] for e in self.since_mark() if e["call_type"] == call_type]


@pytest.fixture
def gateway_log(e2e_stack, litellm_url) -> GatewayLog:
    return GatewayLog(e2e_stack.gateway_log_path)


@pytest.fixture(scope="module")
def oai(modelmap_url) -> openai.OpenAI:
    with openai.OpenAI(base_url=modelmap_url + "/v1", api_key=stack.MASTER_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def oai_direct(litellm_url) -> openai.OpenAI:
    with openai.OpenAI(base_url=litellm_url + "/v1", api_key=stack.MASTER_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def claude(modelmap_url) -> anthropic.Anthropic:
    # The anthropic SDK sends its key as `x-api-key`, which LiteLLM accepts too.
    with anthropic.Anthropic(base_url=modelmap_url, api_key=stack.MASTER_KEY, max_retries=0, timeout=30) as c:
        yield c


# --- helpers ------------------------------------------------------------------------
def metric_samples(admin_url: str, http, name: str) -> list[tuple[dict, float]]:
    """(labels, value) of every sample of one metric on modelmap's /metrics."""
    out = []
    for line in http.get(admin_url + "/metrics", timeout=5).text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head[len(name):]))
        out.append((labels, float(value)))
    return out


REFUSALS = ("modelmap_unreadable_requests_total", "modelmap_guard_rejections_total")


@pytest.fixture(autouse=True)
def nothing_refused(e2e_stack, modelmap_url, http):
    """After every test here: modelmap refused none of the SDK's requests, neither as
    unreadable (400 `unreadable_request`) nor by the guard (403)."""
    def totals():
        return {m: sum(v for _, v in metric_samples(e2e_stack.admin_url, http, m)) for m in REFUSALS}

    assert metric_samples(e2e_stack.admin_url, http, REFUSALS[0]), f"modelmap's /metrics has no {REFUSALS[0]}"
    before = totals()
    yield
    after = totals()
    assert after == before, (
        f"modelmap refused SDK requests during this test: before {before}, after {after}; by reason: "
        f"{metric_samples(e2e_stack.admin_url, http, REFUSALS[0])}"
    )


def rewrites(e2e_stack, http, public: str, place: str) -> float:
    return sum(
        v for labels, v in metric_samples(e2e_stack.admin_url, http, "modelmap_rewrites_total")
        if labels.get("from") == public and labels.get("place") == place
    )


def sent(exc: Exception) -> str:
    """The request an SDK error came from, for the failure message (no key, body cut)."""
    req = getattr(exc, "request", None)
    if req is None:
        return repr(exc)
    headers = {k: ("<redacted>" if k.lower() in ("authorization", "x-api-key") else v) for k, v in req.headers.items()}
    try:
        body = bytes(req.content[:600])
    except Exception:  # a streamed upload has no .content
        body = b"<streamed>"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__} HTTP {status}: {exc}\n  sent: {req.method} {req.url}\n  headers: {headers}\n  body: {body!r}"


def call(fn, *args, **kwargs):
    """fn(...), failing the test with the exact request the SDK sent if it raises."""
    try:
        return fn(*args, **kwargs)
    except (openai.APIError, anthropic.APIError) as e:
        pytest.fail(f"the SDK call failed through modelmap:\n{sent(e)}", pytrace=False)


def no_internal_name(what: str, obj) -> None:
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    assert "model_name_" not in text, f"{what}: an internal name reached the client: {text[:2000]}"


def assert_routed(gateway_log: GatewayLog, call_type: str, public: str, internal_name: str) -> None:
    got = gateway_log.models(call_type)
    assert got == [internal_name], (
        f"LiteLLM should have routed {call_type} on the internal name {internal_name!r} "
        f"(modelmap maps {public!r}); it saw {got}. All calls since the test began: {gateway_log.since_mark()}"
    )


def assert_served(provider_log, path: str, model: str, **extra) -> dict:
    hits = [e for e in provider_log.since_mark() if e["path"] == path]
    assert len(hits) == 1 and hits[0]["model"] == model and hits[0]["status"] == 200, (
        f"expected the fake provider to serve one {path} for {model!r}: {provider_log.since_mark()}"
    )
    for k, v in extra.items():
        assert hits[0].get(k) == v, f"{path}: {k}={hits[0].get(k)!r}, expected {v!r}: {hits[0]}"
    return hits[0]



def error_of(fn, *args, **kwargs) -> tuple[int, str]:
    """(status, message) of an SDK call expected to fail; (200, "") if it worked."""
    try:
        fn(*args, **kwargs)
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return e.status_code, str(body.get("message") or body.get("error") or e)
    return 200, ""
