"""``recovery status`` with several replicas on one store: the backend and its URL
(never a password), this replica's name, every replica seen with its set and when, and a
warning line when live replicas run different sets. On SQLite and on a real
redis-server alike."""

from __future__ import annotations

import time
import uuid

import pytest

from engine.store import open_store
from engine.store.replicas import ReplicaSeen
from tests.support.cli_env import Env


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.requires(
    "redis-server"))])
def backend(request: pytest.FixtureRequest, cli_env: Env) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{cli_env.root / 'shared.db'}"
    else:
        server = request.getfixturevalue("redis_store_server")
        url = f"{server.url}?prefix=status-{uuid.uuid4().hex}:"
    cli_env.write_config(f'state_url: "{url}"\nreplica: here\n')
    store = open_store(url)
    now = time.time()
    store.record_replica(ReplicaSeen("here", "a" * 64, now - 600, now - 1, "host-1"))
    store.record_replica(ReplicaSeen("there", "b" * 64, now - 300, now - 2, "host-2"))
    store.record_replica(ReplicaSeen("old", "c" * 64, now - 9000, now - 7200, "host-3"))
    store.close()
    return request.param


def test_status_names_the_backend_and_warns_when_live_replicas_run_different_sets(
        cli_env: Env, backend: str):
    r = cli_env.cli("status")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith(f"store: {backend} {backend}://")
    assert "replica: here" in lines
    assert any(line.startswith("  here (this one): set aaaaaaaaaaaa") and "(live)" in line
               for line in lines)
    assert any(line.startswith("  old: set cccccccccccc") and "NOT SEEN LATELY" in line
               for line in lines)
    warning = [line for line in lines if line.startswith("warning: ")]
    assert len(warning) == 1
    assert "aaaaaaaaaaaa on here" in warning[0] and "bbbbbbbbbbbb on there" in warning[0]
    assert "cccccccccccc" not in warning[0]            # not live: listed, not compared

    report = cli_env.cli("status", "--json").json()
    assert report["store"]["backend"] == backend
    replicas = report["replicas"]
    assert replicas["this"] == "here"
    assert {r["replica"]: r["live"] for r in replicas["seen"]} == {
        "here": True, "there": True, "old": False}
    assert replicas["warning"] == warning[0].removeprefix("warning: ")


def test_no_warning_while_the_live_replicas_agree(cli_env: Env, backend: str):
    from engine.config import load_config

    store = open_store(load_config(cli_env.config).state_url)
    store.record_replica(ReplicaSeen("there", "a" * 64, time.time(), time.time()))
    store.close()
    r = cli_env.cli("status")
    assert r.code == 0 and "warning:" not in r.out
    assert cli_env.cli("status", "--json").json()["replicas"]["warning"] is None


def test_the_url_shown_never_holds_its_password(cli_env: Env):
    cli_env.write_config('state_url: "redis://user:s3cret-pw@127.0.0.1:1/0"\n')
    r = cli_env.cli("status")
    assert r.code != 0 and "s3cret-pw" not in r.out + r.err
    assert "redis://" in r.out + r.err


def test_a_command_run_without_the_services_name_acts_on_the_replica_serve_recorded(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch):
    """`recovery serve` started with RECOVERY_REPLICA=db-7 records it in its home; a
    `recovery reload` or `status` run there without it acts on db-7, not on a
    default-named replica no service runs."""
    import stat

    from engine.config import load_config
    from engine.context import EngineContext
    from engine.replica import REPLICA_FILE, default_replica, record_serving_replica
    from engine.runbooks.loaded_set import recorded_set

    monkeypatch.setenv("RECOVERY_REPLICA", "db-7")
    assert record_serving_replica(load_config(cli_env.config)) == "db-7"   # as serve does
    monkeypatch.delenv("RECOVERY_REPLICA")
    written = cli_env.home / REPLICA_FILE
    assert written.read_text().strip() == "db-7"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600

    ctx = EngineContext(load_config(cli_env.config))
    try:
        assert ctx.replica == "db-7"
    finally:
        ctx.store.close()
    assert cli_env.cli("status", "--json").json()["replicas"]["this"] == "db-7"
    r = cli_env.cli("reload")
    assert r.code == 0 and "reloaded" in r.out, (r.out, r.err)
    store = cli_env.store()
    try:
        assert recorded_set(store, "db-7") is not None
        assert recorded_set(store, default_replica(cli_env.home)) is None
    finally:
        store.close()
