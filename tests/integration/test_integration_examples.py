"""The code docs/integration.md quotes runs, as an application would run it: each file of
docs/examples/integration/ as a process of its own, on an engine home in the test's
folder, against real components: ``redis-server`` on free ports (never the machine's own
on 6379), ``recovery serve``, the shipped Redis runbook and the degraded modes of the
shipped recovery.yml. (That the doc quotes each file verbatim: tests/unit/test_operator_docs.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.lifecycle import IncidentState, RunStatus
from tests.support.paths import EXAMPLES, ROOT
from tests.support.redis_servers import RedisServer
from tests.support.service import GRACE, started

INTEGRATION = EXAMPLES / "integration"
BOUND = 180          # seconds: one example, start to end


def shipped_modes_config(env, **extra: str) -> None:
    """The engine home's recovery.yml with the shipped degraded modes (and ``extra``)."""
    modes = yaml.safe_load((ROOT / "recovery.yml").read_text())["degraded_modes"]
    block = "".join(f"\n  {name}: {json.dumps(spec)}" for name, spec in modes.items())
    env.write_config(degraded_modes=block, **extra)


def run_example(name: str, environ: dict[str, str], *args: str
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(INTEGRATION / name), *args], env=environ,
                          capture_output=True, text=True, timeout=BOUND)


def cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A ``recovery`` command; ``approve --now`` plays the step's playbook itself, which
    took over 60 s on a loaded 2-core machine: the same bound as an example's."""
    return subprocess.run([sys.executable, "-m", "engine", *args], env=environ,
                          capture_output=True, text=True, timeout=BOUND)


@pytest.fixture
def redis_pair(tmp_path):
    """A primary and its synced replica; both killed at the end."""
    primary = RedisServer(tmp_path / "primary").start()
    replica = None
    try:
        replica = RedisServer(tmp_path / "replica", replica_of=primary).start()
        replica.wait_synced()
        yield primary, replica
    finally:
        for server in (primary, replica):
            if server is not None:
                server.kill()


@pytest.mark.requires("redis-server")
def test_the_health_check_example_recovers_the_applications_pool(engine_env, redis_pair):
    primary, replica = redis_pair
    # The shipped runbook as it is, with every playbook it may name.
    (engine_env.root / "runbooks" / "redis.yml").write_text(
        (ROOT / "runbooks" / "redis.yml").read_text())
    shutil.copytree(ROOT / "playbooks", engine_env.root / "playbooks", dirs_exist_ok=True)
    (engine_env.root / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {
        "cache-1": {"ansible_host": "192.0.2.10", "ansible_connection": "local",
                    "redis_url": primary.url, "redis_failover_urls": [replica.url]}}}}))
    shipped_modes_config(engine_env)
    environ = {**engine_env.env(), "REDIS_URL": primary.url}

    healthy = run_example("health_check.py", environ)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert f"redis on cache-1: healthy ({primary.address})" in healthy.stdout

    primary.kill()
    replica.promote()
    recovered = run_example("health_check.py", environ)

    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert f"redis on cache-1: healthy ({replica.address})" in recovered.stdout
    ctx = engine_env.context()
    try:
        [incident] = ctx.store.list_incidents(limit=10)
        assert incident.state == IncidentState.RECOVERED, incident.reason
        assert f"incident {incident.id}: recovered" in recovered.stdout
        [run] = [r for r in ctx.store.query_runs(limit=None) if r.strategy == "reconnect"]
        assert run.status == RunStatus.SUCCEEDED and run.trigger == "probe"
        assert not ctx.store.degraded_reasons("redis_unavailable")
    finally:
        ctx.store.close()


def test_the_feature_switches_example_follows_the_modes_matrices(engine_env):
    shipped_modes_config(engine_env)
    environ = engine_env.env()

    before = run_example("feature_switches.py", environ)
    assert before.returncode == 0, before.stderr
    assert "cache_reads: on" in before.stdout and "direct_model_api: on" in before.stdout
    assert ": off" not in before.stdout

    switched = cli(environ, "degraded", "--on", "openwebui_unavailable", "--reason", "test")
    assert switched.returncode == 0, switched.stderr
    switched = cli(environ, "degraded", "--on", "redis_unavailable", "--reason", "test")
    assert switched.returncode == 0, switched.stderr
    after = run_example("feature_switches.py", environ)

    assert after.returncode == 0, after.stderr
    lines = set(after.stdout.splitlines())
    assert {"cache_reads: off", "sessions: off", "chat_ui: off", "direct_model_api: on",
            "semantic_search: on", "reading from the database: the cache is off"} <= lines
    [why] = [line for line in lines if line.startswith("redis_unavailable is on since")]
    matrix = yaml.safe_load((ROOT / "recovery.yml").read_text())["degraded_modes"][
        "redis_unavailable"]["capabilities"]
    off = ", ".join(name for name, stays_on in matrix.items() if not stays_on)
    assert why.endswith(f"): test; off: {off}"), why            # why, and what goes off


def test_the_http_example_reads_what_the_service_says_is_off(engine_env, serve):
    shipped_modes_config(engine_env, webhook=f"{{workers: 1, http_workers: 1, "
                         f"shutdown_grace: {GRACE}s, graceful_timeout: 2s}}")
    served = started(serve())
    environ = {**engine_env.env(), "RECOVERY_URL": served.url,
               "RECOVERY_TOKEN_FILE": str(served.home / "operator.token")}

    none = run_example("degraded_over_http.py", environ)
    assert none.returncode == 0, none.stdout + none.stderr
    assert none.stdout.strip() == "no degraded mode is on"

    switched = cli(served.environ(), "degraded", "--on", "chromadb_unavailable")
    assert switched.returncode == 0, switched.stderr
    on = run_example("degraded_over_http.py", environ)

    assert on.returncode == 0, on.stdout + on.stderr
    assert on.stdout.strip() == ("chromadb_unavailable is on: switch off semantic_search, "
                                 "rag_answers, document_upload")
    unreachable = run_example("degraded_over_http.py",
                              {**environ, "RECOVERY_URL": "http://127.0.0.1:1"})
    assert unreachable.returncode == 1
    assert "keeping the last answer" in unreachable.stdout


def test_the_snapshots_example_rolls_the_data_back_once_approved(engine_env, tmp_path,
                                                                 monkeypatch):
    """A good snapshot taken as cron would, the data corrupted, the application's check
    triggers its runbook, the rollback parks, a person approves it: the data is back."""
    root = tmp_path / "srv"
    data = root / "notes"
    data.mkdir(parents=True)
    (data / "notes.json").write_text('["buy milk"]')
    (engine_env.root / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {
        "localhost": {"ansible_connection": "local",
                      "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                      "notes_persist_dir": str(data),
                      "notes_snapshot_dir": str(root / "snapshots"),
                      "snapshot_roots": [str(root)]}}}}))
    (engine_env.root / "runbooks" / "notes.yml").write_text((INTEGRATION / "notes.yml").read_text())
    for playbook in ("snapshot_take.yml", "snapshot_rollback.yml"):
        (engine_env.root / "playbooks" / playbook).write_text(
            (ROOT / "playbooks" / playbook).read_text())
    engine_env.write_config(action_modules="[notes_actions]")
    environ = {**engine_env.env(), "PYTHONPATH": f"{INTEGRATION}:{ROOT}",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}

    taken = run_example("snapshots.py", environ, "take")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert len(list((root / "snapshots").glob("notes-*.tar.gz.good"))) == 1
    healthy = run_example("snapshots.py", environ, "check")
    assert healthy.stdout.strip() == "notes data: healthy", healthy.stdout + healthy.stderr

    (data / "notes.json").write_text('["buy milk", "call')       # torn by a crash
    parked = run_example("snapshots.py", environ, "check")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    [run_id] = re.findall(r"recovery approve (\S+)", parked.stdout)
    approved = cli(environ, "approve", run_id, "--now", "--as", "alice")

    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert (data / "notes.json").read_text() == '["buy milk"]'
    again = run_example("snapshots.py", environ, "check")
    assert again.stdout.strip() == "notes data: healthy", again.stdout + again.stderr
    monkeypatch.syspath_prepend(str(INTEGRATION))      # its action module, as the CLI's
    ctx = engine_env.context()
    try:
        [incident] = ctx.store.list_incidents(limit=10)
        assert incident.state == IncidentState.RECOVERED, incident.reason
        assert ctx.store.get_run(run_id).approved_by == "alice"
    finally:
        ctx.store.close()
