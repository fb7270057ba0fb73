"""Changing runbooks and the inventory under a running ``recovery serve``: SIGHUP,
``recovery reload`` and ``POST /api/v1/reload`` validate the whole set and put it in force
in every process of the service, or refuse it whole; status says which set is loaded and
when the files on disk differ; an approval is bound to the runbook it was asked under.

Each service test plays an operator's steps against a real service (tests/support/
service.py): the files edited on disk, the alerts posted to its webhook, the commands
run as ``python -m engine``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.lifecycle import IncidentState
from tests.support.alerts import alert_payload, touch_runbook
from tests.support.reload_env import add_host, guarded, parked_step
from tests.support.service import (
    Served,
    history,
    post_alerts,
    started,
    touchy,
    wait_for,
)


def recovery(served: Served, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], env=served.environ(),
                          capture_output=True, text=True, timeout=timeout)


def operator(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {(served.home / 'operator.token').read_text().strip()}"}


def api(served: Served, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, served.url + path, headers=operator(served), timeout=60,
                         **kw)


def loaded(served: Served) -> dict:
    answer = api(served, "GET", "/api/v1/status")
    assert answer.status_code == 200, answer.text
    return answer.json()["loaded_set"]


def runs(served: Served, runbook: str, target: str | None = None) -> list[dict]:
    return [r for r in history(served) if r["runbook"] == runbook
            and (target is None or r["target"] == target)]


# -- SIGHUP, `recovery reload`: a new host ------------------------------------------------

@pytest.mark.slow
def test_sighup_reloads_the_inventory_and_never_stops_the_service(serve, engine_env,
                                                                  tmp_path):
    served, markers = touchy(serve, engine_env, tmp_path)
    workers = {p.pid for p in served.engine_workers()}
    first = loaded(served)
    assert first["sha256"] and not first["files_differ"]

    add_host(engine_env)
    assert loaded(served)["files_differ"]      # status tells the truth before any reload
    served.proc.send_signal(signal.SIGHUP)
    now_loaded = wait_for(lambda: (s := loaded(served))["sha256"] != first["sha256"] and s, 60)
    assert now_loaded, served.stderr()
    assert served.proc.poll() is None, served.stderr()    # SIGHUP never stops the service
    assert {p.pid for p in served.engine_workers()} == workers   # nor its engine workers
    assert "SIGHUP" in now_loaded["loaded_by"] and not now_loaded["files_differ"]

    post_alerts(served, alert_payload(markers, "cache-3"))
    assert wait_for((markers / "cache-3.marker").exists, 30), served.stderr()
    rc, _ = served.stop()
    assert rc == 0
    assert [r["status"] for r in runs(served, "touchy", "cache-3")] == ["succeeded"]


@pytest.mark.slow
def test_a_host_added_to_the_inventory_is_known_after_recovery_reload(serve, engine_env,
                                                                      tmp_path):
    served, markers = touchy(serve, engine_env, tmp_path)
    add_host(engine_env)
    assert "cache-3" in recovery(served, "test", "--component", "touchy", "--target",
                                 "cache-3").stdout           # the CLI reads the files afresh
    status = recovery(served, "status")
    assert "loaded set" in status.stdout
    assert "differ" in status.stdout and "recovery reload" in status.stdout, status.stdout

    post_alerts(served, alert_payload(markers, "cache-3"))   # the service: not yet
    assert wait_for(lambda: runs(served, "touchy", "-"), 30), served.stderr()
    [refused] = runs(served, "touchy", "-")                   # no inventory host: target -
    assert refused["status"] == "refused" and "unknown target" in refused["reason"]
    assert "cache-3" in refused["reason"]

    done = recovery(served, "reload")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reloaded" in done.stdout
    sha = loaded(served)["sha256"]
    assert sha[:12] in done.stdout
    assert "differ" not in recovery(served, "status").stdout
    # Alertmanager sends the alert again (a new episode here): now the host is known.
    post_alerts(served, alert_payload(markers, "cache-3",
                                      starts_at="2024-05-01T03:00:00.000Z"))
    assert wait_for((markers / "cache-3.marker").exists, 30), served.stderr()
    assert served.stop()[0] == 0


# -- a set that fails validation -----------------------------------------------------------

@pytest.mark.slow
def test_an_invalid_set_is_refused_whole_and_the_old_one_stays_in_force(serve, engine_env,
                                                                        tmp_path):
    served, markers = touchy(serve, engine_env, tmp_path)
    before = loaded(served)
    add_host(engine_env)                                      # valid on its own ...
    broken = engine_env.root / "runbooks" / "broken.yml"
    broken.write_text("name: broken\nstrategies: [\n")        # ... but not with this

    done = recovery(served, "reload")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{broken}:" in done.stdout and "refused" in done.stdout
    answer = api(served, "POST", "/api/v1/reload")
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error"] == "invalid_set"
    assert any(str(broken) in p for p in body["problems"])
    after = loaded(served)
    assert after["sha256"] == before["sha256"] and after["files_differ"]

    # The old set stays in force, also in an engine worker that restarts meanwhile.
    [worker] = served.engine_workers()
    worker.kill()
    assert wait_for(lambda: [w for w in served.engine_workers() if w.pid != worker.pid], 20)
    post_alerts(served, alert_payload(markers, "cache-1", "cache-3"))
    assert wait_for((markers / "cache-1.marker").exists, 30), served.stderr()
    assert wait_for(lambda: runs(served, "touchy", "-"), 30)    # cache-3: no host yet
    assert [r["status"] for r in runs(served, "touchy", "-")] == ["refused"]

    broken.unlink()
    answer = api(served, "POST", "/api/v1/reload")
    assert answer.status_code == 200, answer.text
    assert answer.json()["loaded_set"]["sha256"] != before["sha256"]
    assert served.stop()[0] == 0


# -- an edited runbook ---------------------------------------------------------------------

def test_an_edited_runbook_runs_in_the_service_once_reloaded(serve, engine_env, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()

    touch_runbook(engine_env, markers, "edited", "v1")
    served = started(serve())
    touch_runbook(engine_env, markers, "edited", "v2")
    plan = recovery(served, "test", "--component", "edited", "--json")
    assert plan.returncode == 0
    assert "differ" in plan.stderr and "recovery reload" in plan.stderr   # says so
    post_alerts(served, alert_payload(markers, "cache-1"))
    assert wait_for((markers / "v1").exists, 30), served.stderr()      # the set in force
    assert not (markers / "v2").exists()

    answer = api(served, "POST", "/api/v1/reload")
    assert answer.status_code == 200, answer.text
    post_alerts(served, alert_payload(markers, "cache-2"))
    assert wait_for((markers / "v2").exists, 30), served.stderr()
    assert served.stop()[0] == 0


@pytest.mark.slow
def test_a_step_already_started_finishes_on_the_set_it_started_with(serve, engine_env,
                                                                     tmp_path):
    began, release = tmp_path / "began", tmp_path / "release"
    healthy, missing = tmp_path / "healthy", tmp_path / "missing"
    healthy.touch()

    def write(proof: Path) -> Path:
        return engine_env.runbook("slow", f"""
            match:
              - alertname="test-alert"
            target: "{{{{ labels.instance }}}}"
            strategies:
              - {{name: wait, action: test.wait_for_file, with: {{release: "{release}",
                  seconds: 60, started: "{began}"}}}}
            verify: {{action: test.file_exists, with: {{path: "{proof}"}}, interval: 0.05s,
                     deadline: 1s}}
        """)

    write(healthy)
    served = started(serve())
    post_alerts(served, alert_payload(tmp_path, "cache-1"))
    assert wait_for(began.exists, 30), served.stderr()
    write(missing)                      # the new text verifies a file that is not there
    answer = api(served, "POST", "/api/v1/reload")
    assert answer.status_code == 200, answer.text
    release.touch()                     # only now may the running step finish
    post_alerts(served, alert_payload(tmp_path, "cache-2"))
    assert wait_for(lambda: len([r for r in runs(served, "slow")
                                 if r["status"] in ("succeeded", "failed")]) == 2, 30), \
        served.stderr()
    by_target = {r["target"]: r for r in runs(served, "slow")}
    # The step that was running finished on the old text (its verify passed) ...
    assert by_target["cache-1"]["status"] == "succeeded", by_target["cache-1"]
    # ... and the next one ran on the new text (its verify looked for the other file).
    assert by_target["cache-2"]["status"] == "failed"
    assert "verify failed" in by_target["cache-2"]["reason"]
    assert by_target["cache-1"]["runbook_sha256"] != by_target["cache-2"]["runbook_sha256"]
    assert served.stop()[0] == 0


# -- approvals and the runbook they were asked under ---------------------------------------

def pending(served: Served) -> list[dict]:
    answer = api(served, "GET", "/api/v1/approvals")
    assert answer.status_code == 200, answer.text
    return answer.json()["approvals"]


@pytest.mark.slow
def test_approving_a_step_of_a_runbook_the_service_has_not_loaded(serve, engine_env,
                                                                 tmp_path):
    marker = tmp_path / "touched"
    served = started(serve())
    loaded(served)                             # the HTTP worker has read the runbooks
    guarded(engine_env, marker)                               # added after the start
    parked = recovery(served, "recover", "--component", "guarded", "--target", "cache-1")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    [waiting] = pending(served)
    run_id = waiting["run_id"]

    answer = api(served, "POST", f"/api/v1/approvals/{run_id}", json={"decision": "approve"})
    assert answer.status_code == 409, answer.text            # never a 500
    assert answer.json()["error"] == "runbook_not_loaded"
    assert "recovery reload" in answer.json()["reason"]
    assert [a["run_id"] for a in pending(served)] == [run_id]   # nothing recorded
    time.sleep(1.0)                                           # several worker passes
    assert (served.get("/readyz") or httpx.Response(0)).status_code == 200
    assert [a["run_id"] for a in pending(served)] == [run_id]   # still waiting, still open

    assert recovery(served, "reload").returncode == 0
    answer = api(served, "POST", f"/api/v1/approvals/{run_id}", json={"decision": "approve"})
    assert answer.status_code == 200, answer.text
    follow = recovery(served, "show", run_id, "--follow", timeout=60)
    assert follow.returncode == 0 and "ended: succeeded" in follow.stdout, follow.stdout
    assert marker.exists()
    assert served.stop()[0] == 0


@pytest.mark.slow
def test_approving_after_the_runbook_changed_plans_the_step_again(serve, engine_env,
                                                                 tmp_path):
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    guarded(engine_env, v1, match=True)
    served = started(serve())
    post_alerts(served, alert_payload(tmp_path, "cache-1"))
    assert wait_for(lambda: pending(served), 30), served.stderr()
    [first] = pending(served)

    guarded(engine_env, v2, match=True)
    assert api(served, "POST", "/api/v1/reload").status_code == 200
    answer = api(served, "POST", f"/api/v1/approvals/{first['run_id']}",
                 json={"decision": "approve"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "runbook_changed"
    # The run asked under the old text ends canceled with that reason, and `show
    # --follow` of it ends too.
    follow = recovery(served, "show", first["run_id"], "--follow", timeout=60)
    assert "ended: canceled" in follow.stdout and "runbook_changed" in follow.stdout, \
        follow.stdout
    # The step is planned again under the new text, and parked again.
    again = wait_for(lambda: [a for a in pending(served)
                              if a["run_id"] != first["run_id"]], 30)
    assert again, served.stderr()
    [second] = again
    assert second["incident_id"] == first["incident_id"]
    assert second["plan"]["params"]["path"] == str(v2)
    assert second["plan"]["runbook_sha256"] != first["plan"]["runbook_sha256"]

    answer = api(served, "POST", f"/api/v1/approvals/{second['run_id']}",
                 json={"decision": "approve"})
    assert answer.status_code == 200, answer.text
    follow = recovery(served, "show", second["run_id"], "--follow", timeout=60)
    assert "ended: succeeded" in follow.stdout, follow.stdout
    assert v2.exists() and not v1.exists()
    assert served.stop()[0] == 0


# -- in one process: the binding, the worker's side, show --follow --------------------------

@pytest.fixture
def parked(engine_env, run_incident):
    return parked_step(engine_env, run_incident)


def test_show_follow_ends_for_a_run_that_can_no_longer_progress(engine_env, parked):
    ctx, incident, run, marker = parked
    # As the old worker left it: the incident closed, its parked run never updated.
    ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                              state=IncidentState.CANCELED, closed_at=time.time(),
                              reason="runbook no longer loaded")
    done = subprocess.run([sys.executable, "-m", "engine", "show", run.id, "--follow"],
                          env=engine_env.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "ended: pending_approval" in done.stdout and incident.id in done.stdout
    assert "runbook no longer loaded" in done.stdout


def test_reload_without_a_service_records_the_set_for_the_next_start(engine_env):
    env = engine_env.env()
    done = subprocess.run([sys.executable, "-m", "engine", "reload", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reloaded"] and answer["loaded_set"]["loaded_by"].startswith("cli:")
    again = subprocess.run([sys.executable, "-m", "engine", "reload", "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["unchanged"] is True
    ctx = engine_env.context()
    from engine.runbooks.loaded_set import recorded_set

    record = recorded_set(ctx.store, ctx.replica)
    assert record.sha256 == answer["loaded_set"]["sha256"]
    assert (Path(record.path) / "runbooks").is_dir()
