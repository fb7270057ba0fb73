"""Several replicas on one store: a replica's start and its reload are its own. Replica B
starting (with other files) neither switches replica A to B's set nor interrupts the
step A is running; each replica's line in the roster names the set it runs. On SQLite and
on a real redis-server alike."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from engine.lifecycle import RunStatus
from tests.support.engine_env import EngineEnv

SLOW = "strategies: [{name: nap, action: test.sleep, with: {seconds: 2}}]\n"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.requires(
    "redis-server"))])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    server = request.getfixturevalue("redis_store_server")
    return f"{server.url}?prefix=replicas-{uuid.uuid4().hex}:"


def _replica(root: Path, name: str, url: str) -> EngineEnv:
    root.mkdir()
    env = EngineEnv(root)
    env.write_config(state_url=f'"{url}"', replica=name)
    env.runbook("slow", SLOW)
    return env


def _started(env: EngineEnv):
    """A replica as ``recovery serve`` starts it: its set put in force, then a context
    that follows it."""
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.runbooks.reload import reload_set

    config = load_config(env.config_path)
    assert reload_set(EngineContext(config), "test start", start=True).ok
    return EngineContext(config, follow_loaded_set=True)


def _running_step(ctx) -> tuple[threading.Thread, str]:
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    opened = open_incident(ctx, TriggerRequest(runbook="slow", target="cache-1"))
    assert opened.claimed
    step = threading.Thread(target=advance, args=(ctx, opened.incident.id), daemon=True)
    step.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = ctx.store.query_runs(incident_id=opened.incident.id, limit=None)
        if runs and runs[0].status == RunStatus.RUNNING:
            return step, runs[0].id
        time.sleep(0.05)
    raise AssertionError("the step never started")


def test_a_replica_starting_leaves_another_replicas_set_and_running_step_alone(
        tmp_path: Path, shared_url: str):
    from engine.runbooks.loaded_set import recorded_set
    from engine.service.worker import Worker

    a = _started(_replica(tmp_path / "a", "replica-a", shared_url))
    set_a = a.held_set.sha256
    step, run_id = _running_step(a)

    env_b = _replica(tmp_path / "b", "replica-b", shared_url)
    env_b.runbook("other", "strategies: [{name: ok, action: test.ok}]\n")   # another set
    b = _started(env_b)
    worker_b = Worker(b)
    worker_b.start()                         # its start-up clean-up, then its passes
    try:
        worker_b.run_once()
        assert b.held_set.sha256 != set_a
        assert a.refresh() is False and a.held_set.sha256 == set_a
        assert recorded_set(a.store, "replica-a").sha256 == set_a
        assert a.store.get_run(run_id).status == RunStatus.RUNNING
        Worker(a).run_once(wait=False)       # A's worker writes its line too
        roster = {r.replica: r.set_sha256 for r in a.store.replicas()}
        assert roster == {"replica-a": set_a, "replica-b": b.held_set.sha256}
    finally:
        worker_b.stop()
    step.join(30)
    assert a.store.get_run(run_id).status == RunStatus.SUCCEEDED


def test_the_default_replica_name_is_per_host_and_home(tmp_path: Path):
    from engine.replica import default_replica

    assert default_replica(tmp_path / "one", "box.example") == default_replica(
        tmp_path / "one", "box")
    assert default_replica(tmp_path / "one", "box") != default_replica(tmp_path / "two", "box")
    assert default_replica(tmp_path / "one", "box").startswith("box-")


def _counted(text: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "infra_recovery_attempts_total"}


def test_the_store_counters_are_exported_by_one_replica_at_a_time(
        tmp_path: Path, shared_url: str):
    """Scraped side by side, the replicas' /metrics add up to each run once: the one
    holding the exporter lease carries the counters, the other says it does not; when
    the lease lapses (its replica no longer scraped) the other takes them over."""
    from engine.reporting.metrics import StoreCollector, render_text
    from engine.reporting.outcome_exporter import LEASE

    a = _replica(tmp_path / "a", "replica-a", shared_url).context()
    b = _replica(tmp_path / "b", "replica-b", shared_url).context()
    a.store.record_outcome("slow", "nap", "succeeded", 1.0)
    b.store.record_outcome("slow", "nap", "succeeded", 2.0)
    series = ("infra_recovery_attempts_total",
              (("component", "slow"), ("outcome", "succeeded"), ("strategy", "nap")))

    scraped_a = render_text(a, one_replica=True)
    scraped_b = render_text(b, one_replica=True)
    assert _counted(scraped_a) == {series: 2.0} and _counted(scraped_b) == {}
    assert 'infra_recovery_outcome_exporter{replica="replica-a"} 1.0' in scraped_a
    assert 'infra_recovery_outcome_exporter{replica="replica-b"} 0.0' in scraped_b
    assert "infra_recovery_duration_seconds" not in scraped_b
    assert _counted(render_text(b)) == {series: 2.0}     # `recovery metrics`: everything

    later = time.time() + LEASE + 1                       # replica-a no longer scraped
    from prometheus_client import CollectorRegistry, generate_latest

    def scrape(ctx) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(ctx, clock=lambda: later, one_replica=True))
        return generate_latest(registry).decode()

    assert _counted(scrape(b)) == {series: 2.0}
    assert _counted(scrape(a)) == {}


def test_a_start_keeps_the_copy_of_a_set_another_live_replica_runs(tmp_path: Path):
    """Two replicas given one home (named apart) share its copies: the second one's start
    removes the copies no live replica runs, never the first one's."""
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.runbooks.reload import reload_set
    from engine.service.worker import Worker

    env = _replica(tmp_path / "home", "replica-a", f"sqlite:///{tmp_path / 'shared.db'}")
    a = _started(env)
    Worker(a).run_once()                                  # A's line: its set, now
    copy_a = a.held_set.paths.runbooks_dir.parent
    env.runbook("other", "strategies: [{name: ok, action: test.ok}]\n")
    b = EngineContext(load_config(env.config_path, environ={"RECOVERY_REPLICA": "replica-b"}))
    assert reload_set(b, "test start", start=True).ok
    assert copy_a.is_dir() and a.refresh() is False
