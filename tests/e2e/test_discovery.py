"""End to end: no mapping file at all. The team model is declared only in LiteLLM's own
config (model_info.team_id + team_public_model_name), modelmap discovers it with
--discover-config, and the request that fails when sent straight to LiteLLM succeeds
through modelmap via the fallback keyed by the internal name.
"""

from __future__ import annotations

import stack

CHAT = "/v1/chat/completions"
AUTH = {"Authorization": f"Bearer {stack.MASTER_KEY}"}
TEAM = {stack.DISCOVERY_TEAM_HEADER: stack.TEAM_ID}
BODY = {"model": stack.PUBLIC_MODEL, "messages": [{"role": "user", "content": "Say hello."}]}


def test_a_config_declared_team_model_is_discovered_and_its_fallback_fires(
    http, litellm_url, discovering_modelmap, provider_log
):
    proxy, admin = discovering_modelmap
    direct = http.post(litellm_url + CHAT, headers=AUTH, json=BODY, timeout=30)
    assert direct.status_code >= 400, f"straight to LiteLLM it fails: {direct.status_code} {direct.text[:500]}"
    assert "fallback" in direct.text.lower(), direct.text[:2000]

    provider_log.mark()
    resp = http.post(proxy + CHAT, headers={**AUTH, **TEAM}, json=BODY, timeout=30)
    assert resp.status_code == 200, f"through modelmap: {resp.status_code} {resp.text[:2000]}"
    assert resp.headers.get("x-litellm-attempted-fallbacks") == "1", dict(resp.headers)
    assert stack.INTERNAL_MODEL not in resp.text, "the internal name never reaches the client"
    assert provider_log.served_by() == [stack.UPSTREAM_BACKUP]

    ready = http.get(admin + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert "absent (discovered rules only)" in ready.text and "discovery config: ok" in ready.text, ready.text
    metrics = http.get(admin + "/metrics", timeout=5).text
    assert 'modelmap_mapping_source_rules{source="config"} 2' in metrics, metrics


def test_without_the_team_header_nothing_is_mapped(http, discovering_modelmap):
    proxy, _ = discovering_modelmap
    resp = http.post(proxy + CHAT, headers=AUTH, json=BODY, timeout=30)
    assert resp.status_code >= 400, "no team: the public name goes through unchanged and fails as it does directly"
