"""Several processes share one store: locks between processes, a lock left by a killed
process, an application embedding the engine in a process of its own, and metrics read
by another process that say what this one says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.config import load_config
from engine.context import EngineContext
from engine.lifecycle import IncidentState, RunStatus
from engine.reporting.metrics import render_json
from engine.service.worker import Worker
from tests.support.metrics_scenario import drive_scenario, write_config
from tests.support.paths import ROOT

RUN_ONE = textwrap.dedent("""
    import sys
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident
    ctx = EngineContext(load_config())
    opened = open_incident(ctx, TriggerRequest(runbook=sys.argv[1], target=sys.argv[2]))
    print(advance(ctx, opened.incident.id).state.value, flush=True)
""")


def start(env, *args):
    return subprocess.Popen([sys.executable, "-c", RUN_ONE, *args], env=env.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def slow_runbooks(env, seconds):
    env.runbook("slow", f"""
        strategies: [{{name: wait, action: test.sleep,
                       with: {{seconds: {seconds}, trace: "{env.trace}"}}}}]
    """)
    env.runbook("quick", f"""
        strategies: [{{name: now, action: test.ok, with: {{trace: "{env.trace}"}}}}]
    """)


@pytest.mark.slow
def test_a_second_process_is_deferred_while_the_first_holds_the_target(engine_env,
                                                                        run_incident):
    slow_runbooks(engine_env, 2)
    ctx = engine_env.context()
    first = start(engine_env, "slow", "cache-1")
    try:
        assert wait_for(lambda: any(t.startswith("sleep-start") for t in engine_env.traced()))
        held = ctx.store.get_lock("cache-1")
        assert held is not None and held.holder != ctx.holder
        other = run_incident(ctx, "quick", target="cache-1").incident
        assert other.state == IncidentState.OPEN
        assert f"locked by {held.holder}" in other.reason
        assert not any(t.startswith("ok") for t in engine_env.traced())
        # a different target is not blocked
        assert run_incident(ctx, "quick", target="cache-2").incident.state == \
            IncidentState.RECOVERED
        out, err = first.communicate(timeout=30)
        assert out.strip() == "recovered", err
    finally:
        first.kill()
    assert ctx.store.get_lock("cache-1") is None        # released when done
    assert wait_for(lambda: (Worker(ctx).run_once() or True) and
                    ctx.store.get_incident(other.id).state == IncidentState.RECOVERED, 10)


@pytest.mark.slow
def test_a_killed_process_holds_the_lock_only_until_its_lease_lapses(engine_env,
                                                                     run_incident):
    engine_env.write_config(lease="1s")
    slow_runbooks(engine_env, 60)
    ctx = engine_env.context()
    victim = start(engine_env, "slow", "cache-1")
    try:
        assert wait_for(lambda: any(t.startswith("sleep-start") for t in engine_env.traced()))
        [running] = ctx.store.query_runs(status="running")
        assert ctx.store.get_lock("cache-1") is not None
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        victim.kill()
    # the dead holder's lease lapses within its ttl; then the target is free
    assert wait_for(lambda: ctx.store.get_lock("cache-1") is None, timeout=5)
    assert run_incident(ctx, "quick", target="cache-1").incident.state == \
        IncidentState.RECOVERED
    # a worker marks the dead run interrupted once its heartbeat is 3 leases old
    assert wait_for(lambda: Worker(ctx).mark_interrupted(time.time()) > 0 or
                    ctx.store.get_run(running.id).status == RunStatus.INTERRUPTED, 10)
    assert ctx.store.get_run(running.id).status == RunStatus.INTERRUPTED
    incident = ctx.store.get_incident(running.incident_id)
    assert incident.state == IncidentState.OPEN and "interrupted" in incident.reason


APP = textwrap.dedent("""
    import json, sys
    from engine import Recovery
    recovery = Recovery.from_config()
    counter = {"n": 0}
    recovery.resources.register("counter", counter, target="app-cache")
    handle = recovery.trigger("embedded", failure_type="stale", target="app-cache")
    incident = handle.wait(timeout=20)
    print(json.dumps({"state": incident.state.value, "target": incident.target,
                      "counter": counter["n"], "pid": __import__("os").getpid(),
                      "degraded": recovery.degraded("test_down"),
                      "can_approve": hasattr(recovery, "approve")}), flush=True)
    recovery.close()
""")


def test_an_application_embeds_the_engine_in_its_own_process(engine_env, run_incident):
    engine_env.runbook("embedded", """
        strategies: [{name: bump, action: test.bump}]
        cooldown: {max_attempts: 1, window: 1h}
        degraded_mode: {name: test_down}
    """)
    done = subprocess.run([sys.executable, "-c", APP], env=engine_env.env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # the application's own resource was acted on, under the name it registered
    assert seen == {"state": "recovered", "target": "app-cache", "counter": 1,
                    "pid": seen["pid"], "degraded": False, "can_approve": False}
    # ... and the record is shared: this process reads it from the same store
    ctx = engine_env.context()
    [run] = ctx.store.query_runs(component="embedded")
    assert run.requested_by == f"app:{seen['pid']}" and run.status == RunStatus.SUCCEEDED
    # the cooldown is shared too: a trigger from here is deferred
    ctx.resources.register("counter", {"n": 0}, target="app-cache")
    assert run_incident(ctx, "embedded", target="app-cache").incident.state == \
        IncidentState.OPEN
    # the embedded action is not applicable where nothing is registered
    fresh = engine_env.context()
    assert os.getpid() != seen["pid"]
    opened = run_incident(fresh, "embedded", target="cache-2")
    [skipped] = fresh.store.query_runs(incident_id=opened.incident.id)
    assert skipped.status == RunStatus.SKIPPED


# -- metrics: several processes, one truth -----------------------------------------------

def test_two_processes_report_the_same_counters(tmp_path: Path) -> None:
    """Metrics read by another process from the same store say what this one says."""
    config_file = write_config(tmp_path)
    ctx = EngineContext(load_config(config_file, environ={}))
    try:
        drive_scenario(ctx)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RECOVERY_")} | {"PYTHONPATH": str(ROOT)}
        script = ("import json, sys\n"
                  "from engine.config import load_config\n"
                  "from engine.context import EngineContext\n"
                  "from engine.reporting.metrics import render_json\n"
                  "print(json.dumps(render_json(EngineContext(load_config(sys.argv[1])))))\n")
        proc = subprocess.run([sys.executable, "-c", script, str(config_file)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        theirs = json.loads(proc.stdout)
        ours = render_json(ctx)
        moving = {"infra_recovery_intake_oldest_age_seconds",
                  "infra_recovery_pending_approval_oldest_age_seconds"}
        assert set(theirs) == set(ours)
        for name in set(ours) - moving:
            assert theirs[name] == ours[name], name
        assert theirs["infra_recovery_attempts_total"]  # not vacuous
    finally:
        ctx.store.close()
