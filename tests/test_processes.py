"""Several processes share one store: locks between processes, a lock left by a killed
process, and an application embedding the engine in a process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from engine.orchestration.lifecycle import IncidentState, RunStatus
from engine.service.worker import Worker

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
