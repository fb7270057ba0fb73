"""What a worker takes over as abandoned, and only that: an incident orphaned between
steps is handed back to the workers; a live check-mode run is not taken for dead; an
attempt queued in an application's own pool is never taken by a service's worker."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.service.worker import Worker

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


def test_an_incident_orphaned_between_steps_is_handed_back_to_the_workers(engine_env):
    from engine.records import Incident, new_id

    engine_env.write_config(lease="0.2s")
    engine_env.runbook("quick", "strategies: [{name: now, action: test.ok}]\n")
    ctx = engine_env.context()
    long_ago = time.time() - 60
    orphan, _ = ctx.store.open_incident(Incident(
        id=new_id("inc"), runbook="quick", component="quick", target="cache-1",
        state=IncidentState.REMEDIATING, opened_at=long_ago, updated_at=long_ago))
    ctx.store.update_incident(orphan.id, updated_at=long_ago)
    Worker(ctx).run_once()
    assert ctx.store.get_incident(orphan.id).state == IncidentState.RECOVERED


def test_a_live_check_mode_run_is_not_taken_for_dead(engine_env):
    import threading

    from engine.orchestration.planner import check_runs

    engine_env.write_config(lease="0.3s")
    engine_env.runbook("slow", "strategies: [{name: nap, action: test.sleep, "
                                "with: {seconds: 2}}]\n")
    ctx = engine_env.context()
    done = []
    t = threading.Thread(target=lambda: done.extend(
        check_runs(ctx, ctx.runbook("slow"), "cache-1")))
    t.start()
    time.sleep(1.5)                                    # five leases without a word from it?
    assert Worker(ctx).mark_interrupted(time.time()) == 0
    t.join(10)
    assert [r.status for r in done] == [RunStatus.SUCCEEDED]
    assert ctx.store.get_run(done[0].id).status == RunStatus.SUCCEEDED


def test_a_worker_never_takes_an_attempt_queued_in_an_application(engine_env):
    from engine import Recovery
    from engine.config import load_config

    engine_env.write_config(lease="0.3s", threads=1)
    engine_env.runbook("slow", "strategies: [{name: nap, action: test.sleep, "
                                "with: {seconds: 1.5}}]\n")
    engine_env.runbook("bumper", "strategies: [{name: bump, action: test.bump}]\n")
    app = Recovery.from_config(load_config(engine_env.config_path))
    counter = {"n": 0}
    app.resources.register("counter", counter, target="cache-2")
    try:
        first = app.trigger("slow", target="cache-1")
        queued = app.trigger("bumper", target="cache-2")        # waits for the one thread
        service = engine_env.context()                           # another process's worker
        deadline = time.time() + 1.2                             # four leases
        while time.time() < deadline:
            Worker(service).run_once()
            time.sleep(0.1)
        assert service.store.query_runs(component="bumper") == []   # not taken
        assert queued.wait(10).state == IncidentState.RECOVERED
        assert counter["n"] == 1 and first.wait(10).state == IncidentState.RECOVERED
    finally:
        app.close()
