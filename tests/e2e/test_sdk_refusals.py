"""How an SDK user sees a request modelmap refuses, and that the refusal is counted.

The other SDK modules check after every test that modelmap's refusal counters did not
move (`nothing_refused`). This module shows that check can fail: a request modelmap
cannot read (a `Content-Encoding` on the body) is refused before it goes upstream, the
openai SDK raises `BadRequestError` with the OpenAI error shape and the code
`unreadable_request`, and `modelmap_unreadable_requests_total` moves by one. It does not
use `nothing_refused`.
"""

from __future__ import annotations

import openai
import pytest

from sdk_support import (  # noqa: F401 (fixtures are found by name)
    CHAT,
    MESSAGES,
    REFUSALS,
    gateway_log,
    metric_samples,
    oai,
)


def unreadable_total(e2e_stack, http) -> float:
    return sum(v for _, v in metric_samples(e2e_stack.admin_url, http, REFUSALS[0]))


def test_sdk_sees_unreadable_request_as_bad_request(oai, e2e_stack, http, gateway_log, provider_log):
    before = unreadable_total(e2e_stack, http)
    with pytest.raises(openai.BadRequestError) as refused:
        # The body is plain JSON, but the header says it is compressed: modelmap cannot
        # read names in a compressed body, so with the guard on it refuses.
        oai.chat.completions.create(model=CHAT, messages=MESSAGES, extra_headers={"Content-Encoding": "br"})
    err = refused.value
    assert err.status_code == 400 and err.code == "unreadable_request", (err.status_code, err.body)
    assert err.type == "invalid_request_error" and "Content-Encoding" in err.message, err.body
    assert unreadable_total(e2e_stack, http) == before + 1, "the refusal was not counted"
    assert gateway_log.since_mark() == [] and provider_log.since_mark() == [], "the refused request went upstream"
