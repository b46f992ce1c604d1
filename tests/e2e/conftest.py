"""Session fixtures for the end-to-end suite: fake provider, real LiteLLM, modelmap.

The processes are started once per session by stack.py (shared with demo.sh) and killed
at the end. Their logs live in a temp dir; they are attached to the report of any test
that fails, and included in the error when a process fails to start.

Environment:
    MODELMAP_BIN                  modelmap binary (default <repo>/target/debug/modelmap)
    MODELMAP_E2E_LITELLM          litellm executable (default: beside this venv's python)
    MODELMAP_E2E_STARTUP_TIMEOUT  seconds LiteLLM may take to become ready (default 90)
    MODELMAP_E2E_KEEP_LOGS=1      keep the temp dir with configs and logs after the run
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402

_STACK: stack.Stack | None = None


@pytest.fixture(scope="session")
def e2e_stack():
    """The Stack object with nothing started yet; the fixtures below start its parts."""
    global _STACK
    workdir = Path(tempfile.mkdtemp(prefix="modelmap-e2e-"))
    _STACK = stack.Stack(workdir)
    print(f"\n[e2e] configs and logs in {workdir}")
    try:
        yield _STACK
    finally:
        _STACK.stop()
        if os.environ.get("MODELMAP_E2E_KEEP_LOGS") == "1":
            print(f"\n[e2e] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _start(what, fn):
    try:
        return fn()
    except stack.StartupError as e:
        error = str(e)
    pytest.fail(f"could not start {what}:\n{error}", pytrace=False)


@pytest.fixture(scope="session")
def provider_url(e2e_stack) -> str:
    return _start("the fake provider", e2e_stack.start_provider)


@pytest.fixture(scope="session")
def litellm_url(e2e_stack, provider_url) -> str:
    url = _start("LiteLLM", e2e_stack.start_litellm)
    print(f"\n[e2e] LiteLLM ready after {e2e_stack.services['litellm'].ready_after:.1f}s at {url}")
    return url


@pytest.fixture(scope="session")
def modelmap_url(e2e_stack, litellm_url) -> str:
    """modelmap in front of LiteLLM. A missing binary fails the tests that need it (no skip)."""
    url = _start("modelmap", e2e_stack.start_modelmap)
    print(f"\n[e2e] modelmap ready after {e2e_stack.services['modelmap'].ready_after:.1f}s at {url}")
    return url


@pytest.fixture(scope="session")
def discovering_modelmap(e2e_stack, litellm_url) -> tuple[str, str]:
    """modelmap with no mapping file, discovering LiteLLM's config: (proxy URL, admin URL)."""
    return _start("modelmap (discovering)", e2e_stack.start_modelmap_discovering)


@pytest.fixture(scope="session")
def http() -> requests.Session:
    with requests.Session() as s:
        yield s


class ProviderLog:
    """Reads the fake provider's request log: which upstream models served what."""

    def __init__(self, url: str, http: requests.Session) -> None:
        self.url = url
        self.http = http
        self.mark()

    def mark(self) -> None:
        self._seen = len(self._all())

    def _all(self) -> list[dict]:
        r = self.http.get(self.url + "/_requests", timeout=5)
        r.raise_for_status()
        return r.json()

    def since_mark(self) -> list[dict]:
        """Requests the provider got since the last mark(), oldest first."""
        return self._all()[self._seen:]

    def served_by(self) -> list[str]:
        """Upstream models that answered 200 since the mark."""
        return [e["model"] for e in self.since_mark() if e["status"] == 200]


@pytest.fixture
def provider_log(provider_url, http) -> ProviderLog:
    return ProviderLog(provider_url, http)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # Startup failures carry their own log in the error; test failures get all of them.
    if rep.when == "call" and rep.failed and _STACK is not None and _STACK.services:
        rep.sections.append(("e2e process logs", _STACK.logs()))
