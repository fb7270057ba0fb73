"""``concurrency:`` per runbook (engine/gates/lock.py): ``per_target`` (the default) runs
two targets' remediations at once; ``per_component`` takes a ``component:<name>`` lock
with the target's, so a second target waits (deferred, the lock named) until the first
ends, then a worker runs it. ``recovery status`` shows the lock and what it serializes;
``recovery test`` says the runbook is serialized."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path

import pytest

from engine.__main__ import main
from engine.lifecycle import IncidentState, RunStatus
from engine.runbooks.loader import RunbookError, load_runbook
from engine.runbooks.model import Concurrency
from engine.service.worker import Worker

WAIT = 10.0   # seconds: every wait below is bounded by this


def _runbook(env, concurrency: str | None, release: Path) -> None:
    line = f"concurrency: {concurrency}\n" if concurrency else ""
    env.runbook("cache", line + f"""\
component: cache
strategies:
  - {{name: hold, action: test.wait_for_file,
     with: {{release: "{release}", seconds: 20,
             trace: "{env.trace}"}}}}
""")


def _until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _cli(env, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(env.config_path), *args]) == 0
    return out.getvalue()


def _start(ctx, run_incident, target: str) -> threading.Thread:
    thread = threading.Thread(target=run_incident, args=(ctx, "cache", target), daemon=True)
    thread.start()
    return thread


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return tmp_path / "release"


def _running_on(ctx, target: str) -> bool:
    return any(r.status == RunStatus.RUNNING for r in ctx.store.query_runs(target=target))


@pytest.mark.both_backends
def test_per_component_defers_the_second_target_until_the_first_ends(
        engine_env, run_incident, release) -> None:
    _runbook(engine_env, "per_component", release)
    ctx = engine_env.context()
    first = _start(ctx, run_incident, "cache-1")
    _until(lambda: _running_on(ctx, "cache-1"), "the first remediation to run")

    second = run_incident(ctx, "cache", "cache-2").incident
    assert second.state == IncidentState.OPEN
    [deferred] = ctx.store.query_runs(incident_id=second.id)
    assert deferred.status == RunStatus.DEFERRED and deferred.gate == "lock"
    assert "component lock component:cache" in deferred.reason
    assert "per_component" in deferred.reason
    assert ctx.store.get_lock("cache-2") is None      # given back: nothing held while waiting

    status = _cli(engine_env, "status")
    locks = status[status.index("\nlocks:"):]
    assert "component:cache" in locks and "every remediation of component cache" in locks
    assert "remediations of target cache-1" in locks

    release.write_text("go")
    first.join(WAIT)
    assert not first.is_alive()
    worker = Worker(ctx)
    _until(lambda: worker.run_once() is not None and ctx.store.get_incident(
        second.id).state == IncidentState.RECOVERED, "the deferred remediation to run")
    first_run = next(r for r in ctx.store.query_runs(target="cache-1")
                     if r.status == RunStatus.SUCCEEDED)
    second_run = next(r for r in ctx.store.query_runs(incident_id=second.id)
                      if r.status == RunStatus.SUCCEEDED)
    assert second_run.started_at >= first_run.finished_at
    assert ctx.store.get_lock("component:cache") is None


@pytest.mark.both_backends
def test_per_target_runs_two_targets_at_once(engine_env, run_incident, release) -> None:
    _runbook(engine_env, None, release)
    ctx = engine_env.context()
    threads = [_start(ctx, run_incident, t) for t in ("cache-1", "cache-2")]
    _until(lambda: _running_on(ctx, "cache-1") and _running_on(ctx, "cache-2"),
           "both remediations to run at once")
    assert ctx.store.get_lock("component:cache") is None
    release.write_text("go")
    for thread in threads:
        thread.join(WAIT)
    states = {i.target: i.state for i in ctx.store.list_incidents()}
    assert states == {"cache-1": IncidentState.RECOVERED, "cache-2": IncidentState.RECOVERED}


@pytest.mark.both_backends
def test_the_plan_says_a_per_component_runbook_serializes(engine_env, release) -> None:
    _runbook(engine_env, "per_component", release)
    text = _cli(engine_env, "test", "--component", "cache", "--target", "cache-1")
    assert "concurrency:  per_component: one remediation of cache at a time" in text
    assert "free: cache-1, component:cache" in text
    group = _cli(engine_env, "test", "--component", "cache", "--target", "cache-*")
    rows = {line.split()[0]: line for line in group.splitlines()
            if line.strip().startswith("cache-")}
    assert " allow " in rows["cache-1"]
    assert " defer " in rows["cache-2"] and "component lock component:cache held by cache-1" \
        in rows["cache-2"]


@pytest.mark.parametrize(("line", "value"), [("", Concurrency.PER_TARGET),
                                             ("concurrency: per_component\n",
                                              Concurrency.PER_COMPONENT)])
def test_the_loader_reads_concurrency_with_per_target_the_default(tmp_path: Path, line: str,
                                                                  value: Concurrency) -> None:
    path = tmp_path / "x.yml"
    path.write_text(f"name: x\n{line}strategies: [{{name: a, action: x.a}}]\n"
                    "verify: {action: x.ok}\n")
    assert load_runbook(path).concurrency == value


def test_the_loader_refuses_an_unknown_concurrency_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text("name: x\nconcurrency: per_host\nstrategies: [{name: a, action: x.a}]\n"
                    "verify: {action: x.ok}\n")
    with pytest.raises(RunbookError) as caught:
        load_runbook(path)
    assert caught.value.line == 2
    assert "'per_host' is not one of ['per_target', 'per_component']" in caught.value.reason


def test_a_store_failure_on_the_component_lock_gives_the_target_lock_back(
        engine_env, release) -> None:
    """The target's lock is taken first; when taking the component's then fails (a real
    SQLite trigger refuses it), the gate raises and nothing it took may stay held (the
    chain gives back only the leases of the gates before it)."""
    import sqlite3

    from engine.gates import GateContext

    _runbook(engine_env, "per_component", release)
    ctx = engine_env.context()
    ctx.store.set_value("warm", 1)                   # the database file exists
    with sqlite3.connect(ctx.store.path) as db:
        db.execute("CREATE TRIGGER refuse_component BEFORE INSERT ON locks WHEN "
                   "NEW.target LIKE 'component:%' BEGIN "
                   "SELECT RAISE(ABORT, 'injected: write refused'); END")
    runbook = ctx.runbook("cache")
    gate_ctx = GateContext(runbook=runbook, strategy=runbook.strategies[0], target="cache-1",
                           store=ctx.store, trigger="manual", holder=ctx.holder,
                           run_id="run-x", lock_ttl=60.0, now=time.time())
    with pytest.raises(sqlite3.IntegrityError):
        ctx.gates.decide(gate_ctx)
    assert ctx.store.get_lock("cache-1") is None, "the target's lock was given back"
