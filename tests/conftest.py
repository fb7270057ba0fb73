"""Shared fixtures: a throwaway engine home with its own runbooks and inventory; the
``requires`` marker (tests/support/requires.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.support.engine_actions` is loaded by name
    sys.path.insert(0, str(ROOT))

from tests.support.engine_env import EngineEnv  # noqa: E402

pytest_plugins = ["pytester", "tests.support.requires", "tests.support.ansible_fixtures",
                  "tests.support.cli_env", "tests.support.fleet",
                  "tests.support.openwebui_fixtures", "tests.support.state_backends",
                  "tests.support.browser"]


@pytest.fixture(scope="session", autouse=True)
def ansible_display() -> None:
    """ansible-core's Display wraps sys.stdout and sys.stderr the first time one is made,
    and warns where it cannot: on the StringIO a test redirects them to. An in-process
    ``recovery validate`` would report that warning as a problem of the inventory when it
    happens to be the first to load Ansible. Made once here, on the streams pytest gives."""
    from ansible.utils.display import Display

    Display()


@pytest.fixture(scope="session")
def redis_store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real ``redis-server`` for the session, AOF on (settings a store accepts), on a
    free port, never the machine's own on 6379: a test keeps to a key prefix of its own."""
    from tests.support.redis_servers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis-store"), appendonly="yes").start()
    yield server
    server.stop()


@pytest.fixture
def engine_env(tmp_path: Path, state_url: str | None) -> EngineEnv:
    """The engine home; its state on the test's backend (``both_backends``, else SQLite)."""
    return EngineEnv(tmp_path, state_url=state_url)


@pytest.fixture
def serve(engine_env: EngineEnv, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``serve(*args)``: a ``recovery serve`` (tests/support/service.py) on ``engine_env``, not
    started yet; everything it started is killed at the end, even when the test fails."""
    from tests.support.service import GRACE, Served, free_port

    started: list[Served] = []
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                            "graceful_timeout: 2s}")

    def make(*args: str) -> Served:
        served = Served(engine_env, tmp_path / "home", free_port(), *args)
        started.append(served)
        return served

    yield make
    for served in started:
        served.kill_all()


@pytest.fixture
def run_incident() -> Callable:
    """Open an incident for a request and carry its attempt in this thread."""
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    def go(ctx, runbook: str, target: str = "localhost", **kw):
        opened = open_incident(ctx, TriggerRequest(runbook=runbook, target=target, **kw))
        if opened.incident is None:
            return opened
        if opened.claimed:
            advance(ctx, opened.incident.id)
        opened.incident = ctx.store.get_incident(opened.incident.id)
        return opened

    return go
