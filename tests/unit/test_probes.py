"""Health probes: a failing check opens an incident (trigger probe), a passing one clears
the automatic degraded reasons for its host, each host at most once per interval."""

from __future__ import annotations

import time

from engine.lifecycle import IncidentState
from engine.records import DegradedReason
from engine.service import probes


def probed(env, health, **probe):
    extra = "".join(f", {k}: {v}" for k, v in probe.items())
    env.runbook("demo", f"""
        probe: {{targets: "cache-*", interval: 60s{extra}}}
        strategies: [{{name: fix, action: test.touch, with: {{path: "{health}"}}}}]
        verify: {{action: test.file_exists, with: {{path: "{health}"}}, interval: 0.05s,
                  deadline: 1s}}
        degraded_mode: {{name: test_down}}
    """)


def test_a_failing_probe_opens_an_incident_that_recovers(engine_env):
    health = engine_env.root / "healthy"
    probed(engine_env, health, failure_type="connection_refused")
    ctx = engine_env.context()
    assert probes.run_due(ctx) == 2                       # cache-1 and cache-2
    incidents = ctx.store.list_incidents()
    # the first probe's fix made the file, so the second host's check passed
    assert [(i.target, i.trigger, i.failure_type, i.state) for i in incidents] == [
        ("cache-1", "probe", "connection_refused", IncidentState.RECOVERED)]
    [run] = ctx.store.query_runs(incident_id=incidents[0].id)
    assert run.trigger == "probe" and run.requested_by == "probe:test.file_exists"


def test_a_passing_probe_clears_automatic_degraded_reasons_only(engine_env):
    health = engine_env.root / "healthy"
    health.touch()
    probed(engine_env, health)
    ctx = engine_env.context()
    for key, manual, target in (("incident:x", False, "cache-1"), ("manual", True, None)):
        ctx.store.add_degraded(DegradedReason(mode="test_down", key=key, target=target,
                                              manual=manual))
    probes.run_due(ctx)
    assert [r.key for r in ctx.store.degraded_reasons("test_down")] == ["manual"]
    assert ctx.store.list_incidents() == []


def test_each_host_is_probed_at_most_once_per_interval(engine_env):
    health = engine_env.root / "healthy"
    health.touch()
    probed(engine_env, health)
    ctx = engine_env.context()
    now = time.time()
    assert probes.run_due(ctx, now) == 2
    assert probes.run_due(ctx, now + 30) == 0
    assert probes.run_due(ctx, now + 61) == 2


def test_workers_run_the_probes(engine_env):
    from engine.service.worker import Worker

    health = engine_env.root / "healthy"
    probed(engine_env, health)
    ctx = engine_env.context()
    worker = Worker(ctx)
    worker.run_once()
    assert worker.wait_idle(10)
    incidents = ctx.store.list_incidents()        # attempts run on the worker's pool,
    assert sorted(i.target for i in incidents) == ["cache-1", "cache-2"]   # so both failed
    assert {(i.trigger, i.state) for i in incidents} == {("probe", IncidentState.RECOVERED)}
