"""Changing runbooks and the inventory under a running ``recovery serve``: SIGHUP,
``recovery reload`` and ``POST /api/v1/reload`` validate the whole set and put it in force
in every process of the service, or refuse it whole; status says which set is loaded and
when the files on disk differ; an approval is bound to the runbook it was asked under.

Each service test plays an operator's steps against a real service (tests/service.py):
the files edited on disk, the alerts posted to its webhook, the commands run as
``python -m engine``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.orchestration import approvals
from engine.orchestration.lifecycle import IncidentState, RunStatus
from engine.service.worker import Worker
from tests.service import Served, history, wait_for, webhook_token
from tests.test_serve import alert_payload, touch_runbook

NEW_HOST = """\
    cache-3:
      ansible_host: 192.0.2.12
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


def add_host(env) -> None:
    inventory = env.root / "inventory" / "hosts.yml"
    inventory.write_text(inventory.read_text() + NEW_HOST)


def recovery(served: Served, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], env=served.environ(),
                          capture_output=True, text=True, timeout=timeout)


def operator(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {(served.home / 'operator.token').read_text().strip()}"}


def api(served: Served, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, served.url + path, headers=operator(served), timeout=60,
                         **kw)


def post_alerts(served: Served, payload: dict) -> dict:
    answer = httpx.post(served.url + "/api/v1/alerts", json=payload, timeout=5,
                        headers={"Authorization": f"Bearer {webhook_token(served.home)}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def loaded(served: Served) -> dict:
    answer = api(served, "GET", "/api/v1/status")
    assert answer.status_code == 200, answer.text
    return answer.json()["loaded_set"]


def runs(served: Served, runbook: str, target: str | None = None) -> list[dict]:
    return [r for r in history(served) if r["runbook"] == runbook
            and (target is None or r["target"] == target)]


def started(served: Served) -> Served:
    served.start()
    served.wait_ready(30)
    return served


def touchy(serve, env, tmp_path: Path) -> tuple[Served, Path]:
    """A service whose runbook touches ``markers/<instance>.marker`` for each test alert."""
    markers = tmp_path / "markers"
    markers.mkdir()
    touch_runbook(env, markers)
    return started(serve()), markers


# -- SIGHUP, `recovery reload`: a new host ------------------------------------------------

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

def guarded(env, marker: Path, *, match: bool = False) -> Path:
    return env.runbook("guarded", ("""
        match:
          - alertname="test-alert"
        target: "{{ labels.instance }}"
    """ if match else "\n") + f"""
        strategies:
          - name: touch
            action: test.touch
            with: {{path: "{marker}"}}
            approval: required
    """)


def pending(served: Served) -> list[dict]:
    answer = api(served, "GET", "/api/v1/approvals")
    assert answer.status_code == 200, answer.text
    return answer.json()["approvals"]


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
    marker = engine_env.root / "touched"
    guarded(engine_env, marker)
    ctx = engine_env.context()
    incident = run_incident(ctx, "guarded", target="cache-1", requested_by="pager").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.PENDING_APPROVAL
    return ctx, incident, run, marker


def test_an_approval_queued_before_a_reload_is_planned_again_by_the_worker(engine_env,
                                                                          parked):
    ctx, incident, run, marker = parked
    approvals.approve(ctx, run.id, by="alice")               # queued under the old text
    guarded(engine_env, engine_env.root / "other")           # the new text ...
    worker_ctx = engine_env.context()                        # ... is what the worker has
    Worker(worker_ctx).run_once()
    old = worker_ctx.store.get_run(run.id)
    assert old.status == RunStatus.CANCELED and "runbook_changed" in old.reason
    assert worker_ctx.store.get_approval(run.id).status == "canceled"
    Worker(worker_ctx).run_once()                            # it comes due: parked again
    [again] = worker_ctx.store.list_approvals("pending")
    assert again.incident_id == incident.id and again.run_id != run.id
    assert again.plan["params"]["path"] == str(engine_env.root / "other")
    assert worker_ctx.store.get_incident(incident.id).approved_by is None
    assert not marker.exists()


def test_a_step_whose_strategy_is_gone_ends_its_incident_with_the_reason(engine_env, parked):
    ctx, incident, run, marker = parked
    engine_env.runbook("guarded", """
        strategies:
          - {name: something_else, action: test.ok}
    """)
    with pytest.raises(approvals.RunbookChanged) as refused:
        approvals.approve(engine_env.context(), run.id, by="alice")
    assert "no step touch any more" in str(refused.value)
    closed = ctx.store.get_incident(incident.id)
    assert closed.state == IncidentState.CANCELED and "runbook_changed" in closed.reason
    assert ctx.store.get_run(run.id).status == RunStatus.CANCELED
    assert not marker.exists()


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

    record = recorded_set(ctx.store)
    assert record.sha256 == answer["loaded_set"]["sha256"]
    assert (Path(record.path) / "runbooks").is_dir()


def test_approve_now_after_the_runbook_changed_parks_the_step_again_here(engine_env, parked,
                                                                        capsys):
    from engine.cli import main

    ctx, incident, run, marker = parked
    guarded(engine_env, engine_env.root / "other")
    code = main(["--config", str(engine_env.config_path), "approve", run.id, "--now"])
    said = capsys.readouterr()
    assert code == 3, said                                    # parked again, here
    assert "runbook_changed" in said.err
    [again] = ctx.store.list_approvals("pending")
    assert again.incident_id == incident.id and again.run_id in said.out
    assert ctx.store.get_run(run.id).status == RunStatus.CANCELED
    assert not marker.exists()


def test_approve_now_of_a_step_the_runbook_dropped_says_so_and_nothing_else(engine_env,
                                                                           parked, capsys):
    from engine.cli import main

    ctx, incident, run, marker = parked
    engine_env.runbook("guarded", "strategies: [{name: something_else, action: test.ok}]\n")
    code = main(["--config", str(engine_env.config_path), "approve", run.id, "--now"])
    said = capsys.readouterr()
    assert code == 4, said
    assert "no step touch any more" in said.err and "taken up by a worker" not in said.err
    assert ctx.store.get_incident(incident.id).state == IncidentState.CANCELED


def test_recover_and_approve_now_say_when_the_files_differ_from_the_set_in_force(
        engine_env, parked, capsys):
    from engine.cli import main

    ctx, incident, run, marker = parked
    config = str(engine_env.config_path)
    assert main(["--config", config, "reload"]) == 0
    add_host(engine_env)                                       # edited, not reloaded
    capsys.readouterr()
    note = "note: the files on disk differ from the set in force in the service"
    assert main(["--config", config, "recover", "-c", "guarded", "-t", "cache-3",
                 "--check"]) == 0
    assert note in capsys.readouterr().err
    assert main(["--config", config, "approve", run.id, "--now"]) == 0
    said = capsys.readouterr()
    assert note in said.err and marker.exists(), said


# -- a step planned again after an edit is still the operator's request ----------------------

def two_steps(env) -> Path:
    """``first`` then ``second`` (approval required); each leaves a line in the trace."""
    return env.runbook("two", f"""
        strategies:
          - {{name: first, action: test.ok, with: {{trace: "{env.trace}"}}}}
          - name: second
            action: test.touch
            with: {{path: "{env.root / 'second'}", trace: "{env.trace}"}}
            approval: required
    """)


@pytest.fixture
def forced_second(engine_env, capsys):
    """Under a kill switch, ``recover -c two --strategy second --force``: parked (exit 3).
    Returns (context, its approval, the runbook's path, cli)."""
    from engine.cli import main

    path = two_steps(engine_env)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(["--config", str(engine_env.config_path), *args])
        said = capsys.readouterr()
        return code, said.out, said.err

    assert cli("disable", "--for", "1h", "--as", "alice")[0] == 0
    code, out, err = cli("recover", "-c", "two", "-t", "localhost", "--strategy", "second",
                         "--force", "--as", "oncall")
    assert code == 3, (out, err)
    ctx = engine_env.context()
    [parked] = ctx.store.list_approvals("pending")
    assert parked.strategy == "second"
    return ctx, parked, path, cli


def _asked_again_as_the_operator_did(ctx, parked) -> str:
    """The step parked again is ``second`` of the same incident, still the operator's
    forced request; returns its run id."""
    [again] = ctx.store.list_approvals("pending")
    assert (again.strategy, again.incident_id) == ("second", parked.incident_id)
    assert again.run_id != parked.run_id
    assert ctx.store.get_run(parked.run_id).status == RunStatus.CANCELED
    run = ctx.store.get_run(again.run_id)
    assert (run.forced, run.trigger, run.requested_by) == (True, "manual", "oncall")
    incident = ctx.store.get_incident(parked.incident_id)
    assert (incident.state, incident.forced, incident.only_strategy) == \
        (IncidentState.REMEDIATING, True, "second")
    return again.run_id


def test_approve_now_after_an_edit_parks_the_operators_forced_step_again(engine_env,
                                                                        forced_second):
    ctx, parked, path, cli = forced_second
    path.write_text(path.read_text() + "# a comment\n")
    code, out, err = cli("approve", parked.run_id, "--now", "--as", "boss")
    assert code == 3, (out, err)                               # parked again: not run
    assert "runbook_changed" in err
    again = _asked_again_as_the_operator_did(ctx, parked)
    assert again in out
    assert engine_env.traced() == []                           # `first` never ran
    # Approved now, the step runs: its --force passes the kill switch, as it was asked.
    code, out, err = cli("approve", again, "--now", "--as", "boss")
    assert code == 0, (out, err)
    assert [line.split()[0] for line in engine_env.traced()] == ["touch"]


def test_a_worker_plans_the_operators_forced_step_again_after_an_edit(engine_env,
                                                                     forced_second):
    ctx, parked, path, _cli = forced_second
    approvals.approve(ctx, parked.run_id, by="boss")           # queued under the old text
    path.write_text(path.read_text() + "# a comment\n")
    worker = Worker(engine_env.context())
    worker.run_once()                                          # the text changed: planned again
    assert ctx.store.get_run(parked.run_id).status == RunStatus.CANCELED
    worker.run_once()                                          # ... and parked again
    _asked_again_as_the_operator_did(ctx, parked)
    assert engine_env.traced() == []


def test_a_queued_approval_is_bound_to_the_set_in_force_not_to_the_files(engine_env, parked,
                                                                         capsys):
    from engine.cli import main

    ctx, incident, run, marker = parked
    config = str(engine_env.config_path)
    assert main(["--config", config, "reload"]) == 0          # the set a service would run
    guarded(engine_env, engine_env.root / "other")            # edited, not reloaded
    assert main(["--config", config, "approve", run.id]) == 0, capsys.readouterr()
    assert ctx.store.get_run(run.id).status == RunStatus.QUEUED
    capsys.readouterr()
    assert main(["--config", config, "reload"]) == 0          # now the edit is in force
    Worker(engine_env.context()).run_once()    # a worker on the files = the set in force
    assert ctx.store.get_run(run.id).status == RunStatus.CANCELED
    assert not marker.exists()


# -- an application embedding the engine acts on the set in force ----------------------------

def test_an_application_triggers_on_the_set_in_force_not_on_edited_files(engine_env):
    from engine import Recovery
    from engine.cli import main

    old, new = engine_env.root / "old", engine_env.root / "new"
    engine_env.runbook("plain", f"strategies: [{{name: touch, action: test.touch, "
                                f"with: {{path: '{old}'}}}}]\n")
    assert main(["--config", str(engine_env.config_path), "reload"]) == 0
    engine_env.runbook("plain", f"strategies: [{{name: touch, action: test.touch, "
                                f"with: {{path: '{new}'}}}}]\n")   # edited, not reloaded
    app = Recovery.from_config(engine_env.config_path)
    try:
        assert app.trigger("plain", target="cache-1").wait(15).state == \
            IncidentState.RECOVERED
    finally:
        app.close()
    assert old.exists() and not new.exists()


def test_an_application_worker_runs_a_queued_step_on_the_set_in_force(engine_env, parked):
    """The service queued an approved step; an application's worker (``worker=True``)
    takes it: it runs the text in force, not the files edited on disk meanwhile."""
    from engine import Recovery
    from engine.cli import main

    ctx, incident, run, marker = parked
    assert main(["--config", str(engine_env.config_path), "reload"]) == 0
    approvals.approve(ctx, run.id, by="alice")                 # queued under that text
    guarded(engine_env, engine_env.root / "other")             # edited, not reloaded
    app = Recovery.from_config(engine_env.config_path, worker=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not ctx.store.get_run(run.id).status.is_final:
            time.sleep(0.1)
    finally:
        app.close()
    done = ctx.store.get_run(run.id)
    assert done.status == RunStatus.SUCCEEDED, done.reason
    assert marker.exists() and not (engine_env.root / "other").exists()


# -- the copies of a set: private, and not kept once replaced ---------------------------------

def _sets(env) -> set[str]:
    root = env.root / "var" / "sets"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def _reload(env) -> str:
    from engine.cli import main
    from engine.runbooks.loaded_set import recorded_set

    assert main(["--config", str(env.config_path), "reload"]) == 0
    return recorded_set(env.context().store).sha256


def test_a_set_copy_is_private_to_its_owner(engine_env):
    """The copy holds the whole inventory folder: keys, vault files."""
    import os
    import stat

    secrets = engine_env.root / "inventory" / "host_vars" / "cache-1.yml"
    secrets.parent.mkdir()
    secrets.write_text("ansible_become_password: hunter2\n")
    secrets.chmod(0o644)
    script = engine_env.root / "playbooks" / "files" / "probe.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    copy = engine_env.root / "var" / "sets" / _reload(engine_env)
    modes = {p.relative_to(copy).as_posix(): stat.S_IMODE(os.lstat(p).st_mode)
             for p in [copy, *copy.rglob("*")]}
    assert modes["inventory/host_vars/cache-1.yml"] == 0o600
    assert modes["playbooks/files/probe.sh"] == 0o700           # still runnable, by its owner
    assert all(mode == 0o700 for name, mode in modes.items()
               if (copy / name).is_dir()), modes
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    assert stat.S_IMODE(os.stat(copy.parent).st_mode) == 0o700


def test_a_replaced_set_is_removed_once_no_step_can_use_it(engine_env):
    from engine.orchestration.lifecycle import RunStatus as Status
    from engine.records import RunRecord, new_id
    from engine.runbooks.reload import reload_set

    first = _reload(engine_env)
    add_host(engine_env)
    second = _reload(engine_env)
    assert _sets(engine_env) == {first, second}   # a step begun on the first may still run
    ctx = engine_env.context()
    running = RunRecord(id=new_id("run"), component="c", runbook="c", strategy="s",
                        target="cache-1", status=Status.RUNNING, started_at=time.time())
    ctx.store.add_run(running)
    later = time.time() + 3600
    Worker(ctx).run_duties(later)
    assert _sets(engine_env) == {first, second}   # a step runs: it may be on the first
    ctx.store.update_run(running.id, status=Status.SUCCEEDED, finished_at=time.time())
    Worker(ctx).run_duties(later)
    assert _sets(engine_env) == {second}          # nothing runs: nothing can use it
    (engine_env.root / "inventory" / "more.yml").write_text("all: {}\n")
    third = _reload(engine_env)
    (engine_env.root / "inventory" / "more.yml").write_text("all: {hosts: {x: {}}}\n")
    fourth = _reload(engine_env)
    assert _sets(engine_env) == {third, fourth}   # at most the one it replaced stays
    assert reload_set(ctx, "recovery serve (start)", start=True).unchanged
    assert _sets(engine_env) == {fourth}          # a start: no step of the service runs


def test_the_set_hash_covers_what_the_engine_reads_and_nothing_else(tmp_path):
    from engine.runbooks.loaded_set import SetPaths

    for folder in ("runbooks", "playbooks/roles/x/tasks", "inventory/group_vars"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "runbooks" / "a.yml").write_text("name: a\n")
    (tmp_path / "playbooks" / "roles" / "x" / "tasks" / "main.yml").write_text("- ping:\n")
    (tmp_path / "inventory" / "hosts.yml").write_text("all: {}\n")
    paths = SetPaths(tmp_path / "runbooks", tmp_path / "playbooks",
                     tmp_path / "inventory" / "hosts.yml")       # a file: its vars beside it
    first = paths.sha256()
    (tmp_path / "runbooks" / "README.md").write_text("notes")  # not a runbook
    (tmp_path / "playbooks" / ".main.yml.swp").write_text("x")  # an editor's
    assert paths.sha256() == first
    (tmp_path / "inventory" / "group_vars" / "all.yml").write_text("x: 1\n")
    second = paths.sha256()
    assert second != first
    (tmp_path / "playbooks" / "roles" / "x" / "tasks" / "main.yml").write_text("- debug:\n")
    assert paths.sha256() not in (first, second)
    copy = paths.copy_into(tmp_path / "copy")                 # the copy hashes the same
    assert copy.sha256() == paths.sha256()
    assert copy.inventory_path == tmp_path / "copy" / "inventory" / "hosts.yml"
