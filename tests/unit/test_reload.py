"""Changing runbooks and the inventory, in one process: an approval is bound to the set of
runbooks it was asked under (a step approved after an edit is planned again, a step
whose strategy is gone ends its incident with the reason), a worker and an application
run on the set in force, not on the edited files, and a set's copy is private and
removed once no step can use it. Under a running ``recovery serve``:
tests/integration/test_reload_service.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import approvals
from engine.service.worker import Worker
from tests.support.reload_env import add_host, guarded, parked_step

# -- approvals and the runbook they were asked under ---------------------------------------

# -- in one process: the binding, the worker's side, show --follow --------------------------

@pytest.fixture
def parked(engine_env, run_incident):
    return parked_step(engine_env, run_incident)


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
    ctx = env.context()
    return recorded_set(ctx.store, ctx.replica).sha256


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
    from engine.lifecycle import RunStatus as Status
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
