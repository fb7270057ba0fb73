"""The system runbook's python actions and process_restart, against real processes:
an application that embeds the engine and collects its own garbage; a child process
with a low open-file limit that holds many files; a real supervisord (PyPI
``supervisor``) whose program process_restart restarts after an approval. Steps run
as an operator runs them (`recovery recover` in a subprocess) or in the application.
disk_cleanup has its own module (tests/integration/test_disk_cleanup.py: it mounts a
tmpfs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import psutil
import pytest

from engine.actions.base import ActionContext
from engine.actions.registry import default_registry
from tests.support.service import wait_for
from tests.support.supervisor import Program, Supervisor
from tests.support.system_env import (
    MIB,
    artifacts_text,
    home_of,
    install_system_runbook,
    recovery,
    runs_of,
)

# A child that names itself (its comm, what psutil calls its name), then holds memory or
# files until killed.
HOG = textwrap.dedent("""
    import os, resource, sys, time
    open('/proc/self/comm', 'w').write(sys.argv[1])
    if sys.argv[2] == 'memory':
        held = b'x' * (64 << 20)
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))
        held = [open(os.devnull) for _ in range(56)]
    print('ready', flush=True)
    time.sleep(120)
""")


@pytest.fixture
def hog():
    started: list[subprocess.Popen] = []

    def start(name: str, kind: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOG, name, kind], text=True,
                                stdout=subprocess.PIPE)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def step(run: dict) -> dict:
    """What the action returned, from its run's artifacts (the action_result event)."""
    home_events = run["_home"] / "artifacts" / run["id"] / "job_events"
    for path in sorted(home_events.glob("*.json")):
        event = json.loads(path.read_text())
        if event.get("event") == "action_result":
            return event["event_data"]
    raise AssertionError(f"no action_result in {home_events}")


def only_run(env: dict[str, str], strategy: str) -> dict:
    (run,) = runs_of(env, strategy)
    run["_home"] = home_of(env)
    return run


# -- memory_gc ---------------------------------------------------------------------------
APP = textwrap.dedent("""
    import gc, json, sys
    from engine import Recovery

    gc.disable()                       # garbage piles up until memory_gc collects it
    recovery = Recovery.from_config(sys.argv[1])
    recovery.resources.register("system", "this process")

    class Node:
        pass

    for _ in range(100):               # 100 MiB held by reference cycles only
        a, b = Node(), Node()
        a.peer, b.peer, a.payload = b, a, b"x" * (1 << 20)
    del a, b
    incident = recovery.trigger("system", failure_type="memory_pressure").wait(60)
    print(json.dumps({"state": incident.state.value}))
    recovery.close()
""")


def test_memory_gc_collects_the_garbage_of_the_application_that_embeds_the_engine(
        engine_env, hog):
    other = hog("mem-hog", "memory")
    install_system_runbook(engine_env.root, {"memory_report_processes": ["mem-hog"]})
    env = engine_env.env()
    done = subprocess.run([sys.executable, "-c", APP, str(engine_env.config_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"state": "recovered"}
    run = only_run(env, "memory_gc")
    assert run["status"] == "succeeded" and run["trigger"] == "probe"
    data = step(run)["data"]
    assert data["collected"] >= 200
    assert data["rss_before"] - data["rss_after"] > 50 * MIB      # the cycles' 100 MiB
    assert data["pid"] != other.pid
    # the other process is only reported, with its RSS
    assert [(r["pid"], r["name"]) for r in data["report"]] == [(other.pid, "mem-hog")]
    assert data["report"][0]["rss"] > 60 * MIB
    assert psutil.Process(other.pid).memory_info().rss > 60 * MIB


def test_memory_gc_from_the_cli_reports_other_processes_and_is_skipped(engine_env, hog):
    other = hog("mem-hog", "memory")
    install_system_runbook(engine_env.root, {"memory_report_processes": ["mem-hog"]})
    env = engine_env.env()
    r = recovery(env, "recover", "-c", "system", "-s", "memory_gc", "-t", "localhost")
    assert r.code == 1, r.out + r.err        # nothing fixed: the attempt is exhausted
    run = only_run(env, "memory_gc")
    assert run["status"] == "skipped"
    assert "nothing registered as 'system'" in run["reason"]
    reported = re.search(rf"other processes \(report only\): mem-hog \(pid {other.pid}\) "
                         r"(\d+) MiB", run["reason"])
    assert reported and int(reported.group(1)) >= 64, run["reason"]


# -- file_handle_cleanup -----------------------------------------------------------------
@pytest.mark.slow
def test_file_handles_are_reported_and_the_soft_limit_raised_only_where_allowed(
        engine_env, hog):
    child = hog("fd-hog", "files")
    proc = psutil.Process(child.pid)
    assert proc.rlimit(psutil.RLIMIT_NOFILE) == (64, 4096)
    watched = {"fd_watch_processes": ["fd-hog"]}

    # not allowed: reported, failed, limit untouched
    install_system_runbook(engine_env.root, watched)
    env = engine_env.env()
    r = recovery(env, "recover", "-c", "system", "-s", "file_handle_cleanup", "-t", "localhost")
    assert r.code == 1, r.out + r.err
    run = only_run(env, "file_handle_cleanup")
    assert run["status"] == "failed"
    assert f"fd-hog (pid {child.pid}) " in run["reason"]
    assert "not in fd_raise_processes, report only" in run["reason"]
    assert proc.rlimit(psutil.RLIMIT_NOFILE) == (64, 4096)

    # allowed, check mode: says what it would raise, raises nothing
    install_system_runbook(engine_env.root, {**watched, "fd_raise_processes": ["fd-hog"]})
    r = recovery(env, "recover", "-c", "system", "-s", "file_handle_cleanup", "-t", "localhost",
                 "--check")
    assert r.code == 0, r.out + r.err
    checked = runs_of(env, "file_handle_cleanup")[-1]
    assert checked["check_mode"]
    assert f"would raise fd-hog (pid {child.pid}) soft limit 64 -> 4096" in checked["reason"]
    assert proc.rlimit(psutil.RLIMIT_NOFILE) == (64, 4096)

    # allowed: raised to the hard limit, and the verify sees it under the threshold
    r = recovery(env, "recover", "-c", "system", "-s", "file_handle_cleanup", "-t", "localhost")
    assert r.code == 0, r.out + r.err
    raised = runs_of(env, "file_handle_cleanup")[-1]
    assert raised["status"] == "succeeded"
    assert f"raised fd-hog (pid {child.pid}) soft limit 64 -> 4096" in raised["reason"]
    assert "verified by system.file_handles" in raised["reason"]
    assert proc.rlimit(psutil.RLIMIT_NOFILE) == (4096, 4096)
    assert proc.num_fds() >= 56                       # nothing was closed behind its back


# -- process_restart ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def supervisor(tmp_path_factory):
    sup = Supervisor(tmp_path_factory.mktemp("supervisor"), {
        "worker": Program([sys.executable, "-c", "import time; time.sleep(600)"])})
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


@pytest.mark.slow
@pytest.mark.requires("supervisord")
def test_process_restart_waits_for_approval_then_runs_the_program_with_a_new_pid(
        engine_env, supervisor):
    install_system_runbook(engine_env.root, {"program": "worker",
                                             "supervisor_config": str(supervisor.conf)})
    env = engine_env.env()
    old = supervisor.wait_running("worker")

    r = recovery(env, "recover", "-c", "system", "-s", "process_restart", "-t", "localhost",
                 "--check")
    assert r.code == 0, r.out + r.err
    assert supervisor.pid("worker") == old               # check mode restarts nothing

    r = recovery(env, "recover", "-c", "system", "-s", "process_restart", "-t", "localhost")
    assert r.code == 3, r.out + r.err                     # parked: approval required
    assert supervisor.pid("worker") == old
    parked = [x for x in runs_of(env, "process_restart") if not x["check_mode"]]
    assert [x["status"] for x in parked] == ["pending_approval"]

    r = recovery(env, "approve", parked[0]["id"], "--now", "--as", "alice")
    assert r.code == 0, r.out + r.err
    new = supervisor.wait_running("worker")
    assert new != old and not psutil.pid_exists(old)
    done = [x for x in runs_of(env, "process_restart") if not x["check_mode"]][-1]
    assert done["status"] == "succeeded" and done["approved_by"] == "alice"
    assert "verified by system.process_running" in done["reason"]
    assert f"(pid {new})" in done["reason"]
    text = artifacts_text(home_of(env), done["id"])
    assert f"worker restarted: pid {old} -> {new}" in text


@pytest.mark.slow
@pytest.mark.requires("supervisord")
def test_process_restart_starts_a_program_that_died(engine_env, supervisor):
    """The usual case: the process crashed (EXITED). `supervisorctl restart` would answer
    "ERROR (not running)" before starting it; the playbook starts it instead."""
    install_system_runbook(engine_env.root, {"program": "worker",
                                             "supervisor_config": str(supervisor.conf)})
    env = engine_env.env()
    old = supervisor.wait_running("worker")
    psutil.Process(old).kill()
    assert wait_for(lambda: "EXITED" in supervisor.ctl("status", "worker").stdout, 10)

    r = recovery(env, "recover", "-c", "system", "-s", "process_restart", "-t", "localhost")
    assert r.code == 3, r.out + r.err
    parked = [x for x in runs_of(env, "process_restart") if not x["check_mode"]]
    r = recovery(env, "approve", parked[-1]["id"], "--now", "--as", "alice")
    assert r.code == 0, r.out + r.err
    new = supervisor.wait_running("worker")
    assert new != old
    done = [x for x in runs_of(env, "process_restart") if not x["check_mode"]][-1]
    assert done["status"] == "succeeded", done


@pytest.mark.requires("supervisord")
def test_process_running_fails_while_the_program_is_stopped(supervisor):
    action = default_registry().get("system.process_running")
    ctx = ActionContext(component="system", target="localhost",
                        host_vars={"program": "worker",
                                   "supervisor_config": str(supervisor.conf)})
    assert supervisor.ctl("stop", "worker").returncode == 0
    try:
        result = action.run(ctx)
        assert not result.ok and "worker is not running" in result.summary
        assert "STOPPED" in result.summary
    finally:
        supervisor.ctl("start", "worker")
    pid = supervisor.wait_running("worker")
    result = action.run(ctx)
    assert result.ok and result.data["pid"] == pid
