"""Fixtures for the tests of the openwebui runbook: the OpenWebUI stand-in and the
direct model API stand-in (tests/support/openwebui_standin.py), started once per test
module and reset for each test, and an engine home whose webui-1 points at them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine_env import EngineEnv
from tests.support.openwebui_standin import DirectModelApi, OpenWebUIStandin, User
from tests.support.shipped import install_runbook

EMAIL, PASSWORD = "admin@example.org", "s3cret-pw-for-the-standin"
API_KEY = "sk-standin0123456789abcdef"
USER_EMAIL, USER_PASSWORD = "user@example.org", "another-s3cret-pw"
MODE = "openwebui_unavailable"


@pytest.fixture(scope="module")
def openwebui_standins() -> Iterator[tuple[OpenWebUIStandin, DirectModelApi]]:
    webui = OpenWebUIStandin(
        models=["llama3", "mistral", "phi3"], default="llama3",
        users=[User(EMAIL, PASSWORD), User(USER_EMAIL, USER_PASSWORD, role="user")],
        api_keys={API_KEY: EMAIL}).start()
    direct = DirectModelApi(["llama3", "mistral", "phi3"]).start()
    yield webui, direct
    webui.stop()
    direct.stop()


@pytest.fixture
def webui(openwebui_standins, monkeypatch) -> OpenWebUIStandin:
    """The stand-in, reset: every model up, llama3 the default, credentials in the env."""
    webui, direct = openwebui_standins
    with webui.lock:
        webui.default_models, webui.model_order = "llama3", ["llama3", "mistral", "phi3"]
        webui.unhealthy, webui.signins = False, 0
        webui.requests.clear()
    webui.model_up(*webui.models)
    direct.down = False
    monkeypatch.setenv("OPENWEBUI_EMAIL", EMAIL)
    monkeypatch.setenv("OPENWEBUI_PASSWORD", PASSWORD)
    monkeypatch.delenv("OPENWEBUI_API_KEY", raising=False)
    return webui


@pytest.fixture
def direct_api(openwebui_standins) -> DirectModelApi:
    return openwebui_standins[1]


@pytest.fixture
def openwebui_env(engine_env: EngineEnv, openwebui_standins) -> EngineEnv:
    """The engine home: the shipped openwebui runbook, webui-1 pointing at the stand-ins."""
    webui, direct = openwebui_standins
    (engine_env.root / "inventory" / "hosts.yml").write_text(f"""
all:
  hosts:
    localhost:
      ansible_connection: local
    webui-1:
      ansible_connection: local
      instance_aliases: ["webui-1:8080"]
      openwebui_url: "{webui.url}"
      openwebui_direct_api_url: "{direct.url}/v1"
      openwebui_fallback_models: [gone-model, mistral, phi3]
""")
    install_runbook("openwebui", engine_env.root)
    engine_env.config_path.write_text(
        "home: var\nrunbooks: runbooks\nplaybooks: playbooks\ninventory: inventory\n"
        "lock: {lease: 3s}\nworkers: {poll_interval: 0.2s, threads: 2}\n"
        "degraded_modes:\n"
        f"  {MODE}:\n"
        "    description: OpenWebUI does not answer; callers use the direct model API.\n"
        "    capabilities: {chat_ui: false, direct_model_api: true}\n")
    engine_env.home = engine_env.root / "var"
    return engine_env


def assert_no_secret_under(home: Path, *secrets: str) -> None:
    for path in home.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for secret in secrets:
                assert secret not in text, f"a secret landed in {path}"
