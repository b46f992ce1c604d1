"""A LiteLLM callback that records the model name LiteLLM itself is about to route on.

Loaded by the real LiteLLM proxy from its config (``litellm_settings.callbacks:
gateway_recorder.recorder``; stack.py copies this file next to the config). LiteLLM
calls ``async_pre_call_hook`` after auth and before routing, with the request data it
parsed (JSON body, form fields, ``?model=`` on realtime). One JSON line per call goes to
the file named by ``MODELMAP_E2E_GATEWAY_LOG``: the call type and the ``model`` (and
``target_model_names`` if any), never keys or message content.

The fake provider only sees the upstream deployment name, which LiteLLM reaches from a
team's public name as well as from its internal one, so this log is what proves that
modelmap handed LiteLLM the internal name.
"""

from __future__ import annotations

import json
import os
import threading

from litellm.integrations.custom_logger import CustomLogger

_LOCK = threading.Lock()


class GatewayRecorder(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        path = os.environ.get("MODELMAP_E2E_GATEWAY_LOG")
        if path and isinstance(data, dict):
            entry = {"call_type": str(call_type), "model": data.get("model")}
            if data.get("target_model_names"):
                entry["target_model_names"] = data.get("target_model_names")
            line = json.dumps(entry, default=str) + "\n"
            with _LOCK, open(path, "a", encoding="utf-8") as f:
                f.write(line)
        return data


recorder = GatewayRecorder()
