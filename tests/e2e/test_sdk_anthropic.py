"""The anthropic SDK through modelmap: messages, streaming, the beta client, count_tokens.
Checks: sdk_support.py.
"""

from __future__ import annotations

import anthropic
import pytest

from sdk_support import (  # noqa: F401 (fixtures are found by name)
    nothing_refused,
    gateway_log,
    claude,
    CLAUDE,
    CLAUDE_NATIVE,
    MESSAGES,
    REPLY,
    assert_routed,
    assert_served,
    call,
    internal,
    no_internal_name,
    rewrites,
    sent,
    upstream,
)


# --- anthropic: messages ------------------------------------------------------------
# Two kinds of team deployment behind a Claude name: an OpenAI-compatible one (LiteLLM
# bridges /v1/messages to the provider's Responses API) and an Anthropic one (LiteLLM
# forwards to the provider's own /v1/messages).
DEPLOYMENTS = {
    "openai-deployment": (CLAUDE, "/responses"),
    "anthropic-deployment": (CLAUDE_NATIVE, "/messages"),
}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_anthropic_messages(claude, gateway_log, provider_log, deployment):
    model, upstream_path = DEPLOYMENTS[deployment]
    message = call(claude.messages.create, model=model, max_tokens=64, messages=MESSAGES)
    assert "".join(b.text for b in message.content if b.type == "text") == REPLY, message
    assert message.model == model, f"the client must see the public name: {message.model!r}"
    assert_routed(gateway_log, "anthropic_messages", model, internal(model))
    assert_served(provider_log, upstream_path, upstream(model), stream=False)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_anthropic_messages_stream(claude, gateway_log, provider_log, deployment):
    model, upstream_path = DEPLOYMENTS[deployment]
    try:
        with claude.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream:
            events = list(stream)
            final = stream.get_final_message()
    except anthropic.APIError as e:
        pytest.fail(f"the SDK call failed through modelmap:\n{sent(e)}", pytrace=False)
    starts = [e for e in events if e.type == "message_start"]
    assert len(starts) == 1 and starts[0].message.model == model, f"message_start must carry the public name: {starts}"
    assert "".join(b.text for b in final.content if b.type == "text") == REPLY, final
    assert final.model == model, final
    for e in events:
        no_internal_name(f"Anthropic event {e.type}", e.model_dump())
    assert_routed(gateway_log, "anthropic_messages", model, internal(model))
    assert_served(provider_log, upstream_path, upstream(model), stream=True)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_anthropic_beta_messages(claude, gateway_log, provider_log, deployment):
    """The beta client: `POST /v1/messages?beta=true` with an `anthropic-beta` header."""
    model, upstream_path = DEPLOYMENTS[deployment]
    message = call(
        claude.beta.messages.create, model=model, max_tokens=64, messages=MESSAGES,
        betas=["context-1m-2025-08-07"],
    )
    assert "".join(b.text for b in message.content if b.type == "text") == REPLY, message
    assert message.model == model, message
    assert_routed(gateway_log, "anthropic_messages", model, internal(model))
    assert_served(provider_log, upstream_path, upstream(model), stream=False)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_anthropic_count_tokens(claude, e2e_stack, http, deployment):
    """`/v1/messages/count_tokens`: LiteLLM 1.106.2 counts locally for both kinds (no
    provider call, no pre-call hook), so modelmap's own rewrite counter is the proof the
    name was mapped."""
    model, _ = DEPLOYMENTS[deployment]
    before = rewrites(e2e_stack, http, model, "body")
    count = call(claude.messages.count_tokens, model=model, messages=MESSAGES)
    assert count.input_tokens > 0, count
    assert rewrites(e2e_stack, http, model, "body") == before + 1, "modelmap did not map the body's model"
